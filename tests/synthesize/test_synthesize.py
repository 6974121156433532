"""Inverse cloze, query tidying, consistency filter and hard negatives on real embeddings (tasks/synthesize;
the other filters, hard-negative margins and diversity: test_filters, test_hard_negatives, test_diversity)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from refinery.tasks.embedding import encode
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.filters import (
    consistency_filter,
    mine_hard_negatives,
    positive_ranks,
)
from refinery.tasks.synthesize.generators import (
    INVERSE_CLOZE_PROMPT_ID,
    InverseClozeGenerator,
    build_generator,
    clean_query,
    first_complete_sentence,
    split_sentences,
    truncate_passage,
)
from refinery.tasks.synthesize.generators.clean import clean_samples
from refinery.tasks.synthesize.generators.prompts import BUILTIN_SHOTS

# ----------------------------------------------------------------------------- inverse cloze


def test_inverse_cloze_is_deterministic_given_seed(bbc_articles):
    bodies = [body for _, body in bbc_articles]
    first = InverseClozeGenerator(SynthesizeConfig(seed=3)).generate(bodies)
    again = InverseClozeGenerator(SynthesizeConfig(seed=3)).generate(list(reversed(bodies)))
    assert first == list(reversed(again))  # same passage, same query, whatever its position
    other = InverseClozeGenerator(SynthesizeConfig(seed=4)).generate(bodies)
    assert [c[0].query for c in first] != [c[0].query for c in other]


def test_inverse_cloze_query_is_a_sentence_removed_from_the_positive(bbc_articles):
    for _, body in bbc_articles:
        (cand,) = InverseClozeGenerator(SynthesizeConfig(seed=0, min_sentence_words=6)).generate([body])[0]
        assert cand.prompt_id == INVERSE_CLOZE_PROMPT_ID
        assert cand.query in " ".join(body.split())
        assert len(cand.query.split()) >= 6
        assert cand.query not in cand.positive
        # Everything else of the passage is still there.
        assert len(cand.positive) > 0.5 * len(body)


def test_inverse_cloze_several_candidates_are_distinct(bbc_articles):
    body = bbc_articles[0][1]
    cands = InverseClozeGenerator(SynthesizeConfig(seed=0), candidates_per_passage=3).generate([body])[0]
    assert len({c.query for c in cands}) == 3


def test_inverse_cloze_never_asks_a_sentence_other_passages_share():
    notice = "This docstring was copied from the upstream library and may differ here."
    passages = [f"{notice} The function {name} returns the {what} of its input array. It accepts any shape."
                for name, what in (("amax", "largest element"), ("amin", "smallest element"), ("ptp", "range"))]
    for seed in range(20):  # whichever sentence the seed would draw
        for (cand,) in InverseClozeGenerator(SynthesizeConfig(seed=seed, min_sentence_words=4)).generate(passages):
            assert cand.query != notice and "It accepts any shape." != cand.query
    # in one passage, or in a passage and its copy (dedup's business), the notice is a sentence like any other
    for few in (passages[:1], passages[:2]):
        asked = {c.query for seed in range(20)
                 for cands in InverseClozeGenerator(SynthesizeConfig(seed=seed, min_sentence_words=4)).generate(few)
                 for c in cands}
        assert notice in asked


def test_inverse_cloze_skips_passages_too_short_to_split():
    gen = InverseClozeGenerator(SynthesizeConfig(seed=0))
    assert gen.generate(["Only one sentence in this passage here.", ""]) == [[], []]


def test_split_sentences_keeps_paragraphs_and_quotes():
    text = 'Shares rose 5%. Mr Brown said "it is fine." The U.S. firm grew.\n\nIs it? Yes.'
    assert split_sentences(text) == [
        ["Shares rose 5%.", 'Mr Brown said "it is fine."', "The U.S. firm grew."],
        ["Is it?", "Yes."],
    ]


# ----------------------------------------------------------------------------- tidying


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"Nokia phone sales jump in Asia"', "Nokia phone sales jump in Asia"),
        ("Query: Nokia profit warning.", "Nokia profit warning"),
        ("1. Why did Nokia shares fall?", "Why did Nokia shares fall?"),
        ("Here is a search query:\n**Steel costs hit carmakers**", "Steel costs hit carmakers"),
        ("Title - England call up winger\nArticle: more text", "England call up winger"),
    ],
)
def test_clean_query_strips_decoration(raw, expected):
    assert clean_query(raw) == expected


def test_clean_query_only_tidies_and_leaves_the_judging_to_the_filters():
    # too short, a loop, a copy of the passage, a parroted example: tidied, not rejected here
    for raw in ("Volvo", "jobs job jobs job jobs job", "the carmaker fell sharply on Tuesday after",
                BUILTIN_SHOTS["title"][0].query):
        assert clean_query(f"Query: {raw}.") == raw
    assert clean_query("") is None
    assert clean_query("Here is a search query:\n  \n") is None  # only a preamble


def test_clean_samples_keeps_every_sample_and_marks_the_unfinished_ones():
    samples = [("Query: carmaker profit warning", True), ("carmaker profit warning", True),  # a repeat stays
               ("Japan nears recession. Japan is in", False),  # cut at its first complete sentence
               ("the shares of the carmaker fell and", False),  # no complete sentence: unfinished
               ("Here is a query:", True)]  # nothing left: an empty candidate
    assert clean_samples(samples) == [("carmaker profit warning", False), ("carmaker profit warning", False),
                                      ("Japan nears recession", False), ("the shares of the carmaker fell and", True),
                                      ("", False)]


def test_first_complete_sentence_cuts_run_on_output():
    assert first_complete_sentence("Japan nears recession. Japan is in") == "Japan nears recession."
    assert first_complete_sentence("The U.S. economy grows. More") == "The U.S. economy grows."
    assert first_complete_sentence("Title line\nmore") == "Title line"
    assert first_complete_sentence("never ends and") is None


def test_truncate_passage_cuts_at_a_word_boundary():
    text = "alpha beta gamma delta " * 20
    cut = truncate_passage(text, 50)
    assert len(cut) <= 50 and text.startswith(cut) and not cut.endswith(" ")
    assert text.split()[len(cut.split()) - 1] == cut.split()[-1]


def test_build_generator_rejects_unknown_names():
    cfg = SynthesizeConfig()
    assert build_generator("inverse_cloze", cfg).name == "inverse_cloze"
    with pytest.raises(ValueError, match="valid"):
        build_generator("gpt", cfg)


def test_config_validates_ranges():
    with pytest.raises(ValidationError):
        SynthesizeConfig(generators=["gpt"])
    with pytest.raises(ValidationError):
        SynthesizeConfig(min_query_words=10, max_query_words=5)
    with pytest.raises(ValidationError):
        SynthesizeConfig(hard_negative_rank_window=(5, 5))
    with pytest.raises(ValidationError):
        SynthesizeConfig(unknown_option=1)


# ----------------------------------------------------------------------------- filters on real embeddings


@pytest.fixture(scope="module")
def corpus(bbc_articles, encoder):
    headlines = [h for h, _ in bbc_articles]
    bodies = [b for _, b in bbc_articles]
    return headlines, bodies, encode(encoder, headlines, show_progress=False), encode(encoder, bodies, show_progress=False)


def test_consistency_filter_keeps_on_topic_and_drops_off_topic_queries(corpus, encoder):
    headlines, _, head_emb, body_emb = corpus
    n = len(headlines)
    # Headlines point to their own article; the same headlines claimed for the wrong article do not.
    shifted = [(i + 1) % n for i in range(n)]
    kept, rank = consistency_filter(head_emb, body_emb, list(range(n)), 1)
    kept_wrong, rank_wrong = consistency_filter(head_emb, body_emb, shifted, 1)
    assert kept.mean() >= 0.9
    assert kept_wrong.mean() <= 0.1
    assert rank.min() >= 1 and rank_wrong.max() <= n
    assert np.median(rank_wrong) > np.median(rank)
    # A larger k never keeps fewer.
    assert consistency_filter(head_emb, body_emb, shifted, n)[0].all()
    generic = encode(encoder, ["what happened today"], show_progress=False)
    assert positive_ranks(generic, body_emb, [0])[0] >= 1


def test_consistency_rank_ignores_members_of_the_positive_cluster(corpus):
    _, _, head_emb, body_emb = corpus
    dup_emb = np.vstack([body_emb, body_emb[:1]])  # doc 12 duplicates doc 0
    q = head_emb[:1]
    plain = positive_ranks(q, dup_emb, [12])
    clustered = positive_ranks(q, dup_emb, [12], same_as_positive=[{0, 12}])
    assert clustered[0] == 1
    assert plain[0] >= clustered[0]


def test_hard_negatives_skip_positive_cluster_and_window(corpus):
    _, _, head_emb, body_emb = corpus
    n = body_emb.shape[0]
    positives = list(range(n))
    exclude = [{(i + 1) % n} for i in range(n)]
    hardest = mine_hard_negatives(head_emb, body_emb, positives, exclude=exclude, rank_window=(0, 5))
    for q, neg in enumerate(hardest):
        assert neg not in (q, (q + 1) % n)
        # It is the closest document that is neither the positive nor excluded.
        scores = body_emb @ head_emb[q]
        allowed = [d for d in range(n) if d not in (q, (q + 1) % n)]
        assert neg == max(allowed, key=lambda d: scores[d])
    second = mine_hard_negatives(head_emb, body_emb, positives, exclude=exclude, rank_window=(1, 5))
    assert not np.array_equal(second, hardest)
    # Too few documents left for the window start: -1.
    assert (mine_hard_negatives(head_emb, body_emb, positives, rank_window=(n, n + 5)) == -1).all()
    sampled = mine_hard_negatives(head_emb, body_emb, positives, rank_window=(0, 3), seed=1)
    assert sampled.tolist() == mine_hard_negatives(head_emb, body_emb, positives, rank_window=(0, 3), seed=1).tolist()
    assert all(neg != q for q, neg in enumerate(sampled))
