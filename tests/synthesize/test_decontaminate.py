"""Decontamination (tasks/synthesize/decontaminate, reason `decontaminated`): each overlap rule on
hand-made candidates with a near miss beside it, the normalization, and where the filter sits among
the others. Every expectation is written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.decontaminate import (
    NONE, PASSAGE_CONTAINS_QUERY, QUERY_OVERLAPS_QUERY, QUERY_QUOTES_RELEVANT_PASSAGE, RULES, EvaluationIndex,
    normalize,
)
from refinery.tasks.synthesize.filters import (
    DECONTAMINATED, FILTER_CONSISTENCY, FILTER_PER_PASSAGE_CAP, FILTER_TOO_SHORT, candidate_filters, run_filters,
)

# Twelve words; its first eight and its last eight are 8-grams.
LONG_EVAL = "Why did the central bank raise interest rates again in early March"
UNRELATED = "Weather forecasts for the coming weekend look mild and dry across the country."


def rules(index: EvaluationIndex, candidates: list[tuple[str, str]]) -> list[str | None]:
    found = index.matches([q for q, _ in candidates], [p for _, p in candidates])
    return [RULES[r] if r != NONE else None for r in found.rule]


@pytest.mark.parametrize("text, expected", [
    ("Oil-Price RISE!", ["oil", "price", "rise"]),                         # case, punctuation
    ("  oil\tprice \n rise ", ["oil", "price", "rise"]),                    # whitespace
    ("ＯＩＬ　Ｐｒｉｃｅ", ["oil", "price"]),                                   # full-width letters and space (NFKC)
    ("ﬁnance", ["finance"]),                                                # ligature (NFKC)
    ("Straße", ["strasse"]),                                                # case-folded, not just lower-cased
    ("cafe\u0301 culture", ["café", "culture"]),                            # combining accent composed (NFKC)
    ("Prime Minister’s questions", ["prime", "ministers", "questions"]),  # an apostrophe inside a word joins it
    ("rates 'rise' again", ["rates", "rise", "again"]),                     # quotes are punctuation
    ("£2.5bn deal", ["2", "5bn", "deal"]),
])
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_accents_are_kept():
    assert normalize("café") != normalize("cafe")


def test_rule_a_same_query_after_normalization():
    index = EvaluationIndex.build(["What is the Bank of England's rate?"])  # 7 words: exact match only
    assert rules(index, [
        ("what is the bank of englands RATE", UNRELATED),         # the same words
        ("What is the Bank of England rate?", UNRELATED),         # near miss: one word differs
        ("What is the Bank of England's rate today?", UNRELATED),  # near miss: a word more
    ]) == [QUERY_OVERLAPS_QUERY, None, None]


def test_rule_a_shared_8_gram_with_a_long_query_and_exact_only_for_short_ones():
    index = EvaluationIndex.build([LONG_EVAL, "Oil prices rise sharply"])
    assert rules(index, [
        ("analysts ask why did the central bank raise interest rates again", UNRELATED),  # 8 shared words
        ("analysts ask why did the central bank raise interest costs again", UNRELATED),  # 7: near miss
        ("Oil prices rise sharply", UNRELATED),                                            # short: exact
        ("oil prices rise sharply as winter demand grows in europe", UNRELATED),           # short: no 8-gram
    ]) == [QUERY_OVERLAPS_QUERY, None, QUERY_OVERLAPS_QUERY, None]


def test_rule_b_query_quotes_a_relevant_passage_only_where_one_is_given():
    passage = ("The committee voted seven to two in favour of the increase. "
               "Markets had expected a smaller move after weak retail figures.")
    quoting = "Markets had expected a smaller move after weak retail figures"   # 10 words of the passage
    near = "Markets had expected a smaller move after poor retail figures"     # its longest shared run: 7
    held = EvaluationIndex.build(["interest rate decision"], passages=[passage])
    assert rules(held, [(quoting, UNRELATED), (near, UNRELATED)]) == [QUERY_QUOTES_RELEVANT_PASSAGE, None]
    # without a passage (a headline's document is corpus that training may use) the rule has nothing to match
    assert rules(EvaluationIndex.build(["interest rate decision"]), [(quoting, UNRELATED)]) == [None]


def test_rule_c_passage_contains_an_evaluation_query_of_four_words_or_more():
    index = EvaluationIndex.build(["Blair backs new Iraq inquiry", "Oil prices rise", LONG_EVAL])
    assert rules(index, [
        ("who leads the inquiry", "On Monday Blair backs new Iraq inquiry, aides said."),  # 5 words inside
        ("who leads the inquiry", "Blair backs a new Iraq inquiry, aides said."),          # a word between
        ("winter fuel", "Oil prices rise, and households feel it."),                       # 3 words: too short
        ("rates", "Traders asked why did the central bank raise interest rates so soon."),  # 8 words of LONG_EVAL
        ("rates", "Traders asked why did the central bank raise interest costs so soon."),  # 7: near miss
    ]) == [PASSAGE_CONTAINS_QUERY, None, None, PASSAGE_CONTAINS_QUERY, None]


def test_the_minimum_contained_length_is_a_parameter():
    index = EvaluationIndex.build(["Oil prices rise"], min_contained_words=3)
    assert rules(index, [("winter fuel", "Oil prices rise, and households feel it.")]) == [PASSAGE_CONTAINS_QUERY]


def test_matches_name_the_evaluation_query_and_skip_candidates_not_alive():
    index = EvaluationIndex.build(["Blair backs new Iraq inquiry", "Oil prices rise sharply"], sets=["mine", "headline"])
    found = index.matches(["oil prices rise sharply", "oil prices rise sharply"], [UNRELATED, UNRELATED],
                          alive=np.array([True, False]))
    assert found.contaminated.tolist() == [True, False]
    assert index.queries[found.query[0]] == "Oil prices rise sharply" and index.sets[found.query[0]] == "headline"


def test_an_empty_index_matches_nothing():
    assert rules(EvaluationIndex.build([]), [("Oil prices rise sharply", UNRELATED)]) == [None]


def test_decontaminated_comes_after_the_text_checks_and_before_consistency_and_the_cap():
    cfg = SynthesizeConfig(max_pairs_per_passage=1, near_duplicate_jaccard=None)
    queries = ["oil", "what moved oil prices this week", "who sets the interest rate", "why did sterling fall today",
               "how did the pound trade on monday"]
    positives = [UNRELATED] * 5
    gens = ["smollm2"] * 5
    keys = [("d1", "smollm2"), ("d1", "smollm2"), ("d2", "smollm2"), ("d3", "smollm2"), ("d3", "smollm2")]
    rank = np.array([1, 1, 9, 1, 2])
    consistent = np.array([True, True, False, True, True])
    contaminated = np.array([True, True, True, True, False])
    kept, reason, counts = run_filters(5, candidate_filters(cfg, queries, positives, gens, keys, rank, consistent,
                                                            contaminated=contaminated))
    # a too-short sample keeps its own reason; an inconsistent contaminated one is counted as decontaminated;
    # d3's best-ranked candidate is contaminated, so its second one takes the passage's place under the cap
    assert reason.tolist() == [FILTER_TOO_SHORT, DECONTAMINATED, DECONTAMINATED, DECONTAMINATED, None]
    assert kept.tolist() == [False, False, False, False, True]
    assert counts[DECONTAMINATED] == 3 and counts[FILTER_CONSISTENCY] == 0 and counts[FILTER_PER_PASSAGE_CAP] == 0


def test_decontaminate_is_on_by_default():
    assert SynthesizeConfig().decontaminate is True
