"""The candidate filters of tasks/synthesize/filters: each one on hand-made candidates, its reason
string, and the runner that applies them in order and counts them."""

from __future__ import annotations

import numpy as np
import pytest

from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.generators.clean import clean_samples
from refinery.tasks.synthesize.generators.prompts import BUILTIN_SHOTS, shot_queries
from refinery.tasks.synthesize.filters import (
    FILTER_CONSISTENCY,
    FILTER_COPY,
    FILTER_NEAR_DUPLICATE,
    FILTER_PER_PASSAGE_CAP,
    FILTER_REPETITION,
    FILTER_TOO_LONG,
    FILTER_TOO_SHORT,
    FILTER_UNFINISHED,
    REASONS,
    candidate_filters,
    copied,
    near_duplicates,
    over_passage_cap,
    repetition_loop,
    run_filters,
    too_long,
    too_short,
)

PASSAGE = "Shares in the carmaker fell sharply on Tuesday after a profit warning from the board."


def test_reason_strings_are_stable_and_prefixed():
    # decontaminated (the name) is about the evaluation, not the candidate's quality: no filter_ prefix
    assert REASONS == ("filter_unfinished", "filter_too_short", "filter_too_long", "filter_repetition", "filter_copy",
                       "decontaminated", "filter_consistency", "filter_near_duplicate", "filter_per_passage_cap")


def test_length_filters_count_words_not_characters():
    queries = ["Volvo", "Volvo profit", "a b c d e", "U.S. job-growth slows"]
    assert too_short(queries, min_words=2).tolist() == [True, False, False, False]
    assert too_long(queries, max_words=4).tolist() == [False, False, True, True]  # U, S, job, growth, slows
    assert not too_short([], min_words=2).size


def test_repetition_loop():
    queries = ["jobs job jobs job jobs job", "jobs jobs", "oil oil price rise", "oil price rise again"]
    # "jobs jobs" is too short to call a loop; "oil oil price rise" has 3 of 4 words distinct
    assert repetition_loop(queries).tolist() == [True, False, False, False]


def test_copy_of_the_positive_or_of_an_example():
    queries = ["the carmaker fell sharply on Tuesday after", "The CARMAKER fell sharply, on Tuesday after!",
               "carmaker fell sharply", "carmaker shares fall on profit warning", "Steel costs hit Volvo profits"]
    positives = [PASSAGE] * len(queries)
    assert copied(queries, positives).tolist() == [True, True, False, False, False]  # 3 words: not extraction
    assert copied(queries, positives, examples=["steel costs hit volvo profits."]).tolist()[-1]
    # Inverse cloze: the sentence was cut from the positive, so it is not a copy of it.
    assert not copied(["Shares in the carmaker fell sharply on Tuesday"], ["The board said nothing."])[0]
    alive = np.array([False, True, True, True, True])
    assert copied(queries, positives, alive=alive).tolist() == [False, True, False, False, False]
    with pytest.raises(ValueError):
        copied(["a"], [])


def test_near_duplicates_keep_the_first_of_each_group():
    queries = ["Oil price rise", "oil price rise", "rise oil price!", "the oil price rise",
               "England rugby squad named", "Why did Volvo shares fall?"]
    assert near_duplicates(queries, threshold=1.0).tolist() == [False, True, True, False, False, False]
    # "the oil price rise" has 3/4 of its words in common with "oil price rise"
    assert near_duplicates(queries, threshold=0.75).tolist() == [False, True, True, True, False, False]
    # Order decides which one stays; queries outside `alive` neither count nor are judged.
    order = [3, 0, 1, 2, 4, 5]
    assert near_duplicates(queries, threshold=0.75, order=order).tolist() == [True, True, True, False, False, False]
    alive = np.array([False, True, True, True, True, True])
    assert near_duplicates(queries, threshold=1.0, alive=alive).tolist() == [False, False, True, False, False, False]
    with pytest.raises(ValueError):
        near_duplicates(queries, threshold=0)
    # With groups only a query of the same group counts.
    groups = ["a", "b", "a", "a", "a", "a"]
    assert near_duplicates(queries, threshold=1.0, groups=groups).tolist() == [False, False, True, False, False,
                                                                               False]
    with pytest.raises(ValueError):
        near_duplicates(queries, threshold=1.0, groups=groups[:2])


def test_near_duplicates_agree_with_all_pairs():
    """Prefix filtering compares only some pairs: it must find what comparing every pair finds."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(12)]
    queries = [" ".join(rng.choice(vocab, size=rng.integers(1, 7), replace=False)) for _ in range(300)]
    for threshold in (0.3, 0.5, 0.75, 1.0):
        expected, accepted = [], []
        for q in queries:
            s = set(q.split())
            dup = any(len(s & a) / len(s | a) >= threshold for a in accepted)
            expected.append(dup)
            if not dup:
                accepted.append(s)
        assert near_duplicates(queries, threshold=threshold).tolist() == expected, threshold


def test_passage_cap_keeps_the_best_ranked_per_key():
    rank = np.array([4, 1, 2, 9, 1, 3])
    passage = [0, 0, 0, 1, 2, 2]
    alive = np.ones(6, dtype=bool)
    assert over_passage_cap(rank, passage, alive=alive, max_per_passage=1).tolist() == [
        True, False, True, False, False, True]
    assert over_passage_cap(rank, passage, alive=alive, max_per_passage=2).tolist() == [
        True, False, False, False, False, False]
    # A rejected candidate takes no slot; a tie goes to the earlier candidate.
    alive[1] = False
    assert over_passage_cap(rank, passage, alive=alive, max_per_passage=1).tolist() == [
        True, False, False, False, False, True]
    assert over_passage_cap([2, 2], [5, 5], alive=np.ones(2, bool), max_per_passage=1).tolist() == [False, True]
    # (passage, generator) keys cap each generator separately.
    keys = [("d1", "smollm2"), ("d1", "inverse_cloze"), ("d1", "smollm2")]
    assert over_passage_cap([1, 1, 1], keys, alive=np.ones(3, bool), max_per_passage=1).tolist() == [
        False, False, True]


def test_runner_gives_each_rejected_candidate_its_first_reason_and_counts():
    steps = [("filter_a", lambda alive: np.array([True, True, False, False])),
             ("filter_b", lambda alive: np.array([False, True, True, False])),
             ("filter_c", lambda alive: alive)]  # rejects whatever is left, seeing only what is left
    kept, reason, counts = run_filters(4, steps[:2])
    assert kept.tolist() == [False, False, False, True]
    assert reason.tolist() == ["filter_a", "filter_a", "filter_b", None]
    assert counts == {"filter_a": 2, "filter_b": 1}
    kept, reason, counts = run_filters(4, steps)
    assert not kept.any() and reason.tolist()[-1] == "filter_c" and counts["filter_c"] == 1
    nothing = run_filters(0, [(name, lambda alive: alive) for name in ("filter_a", "filter_b")])
    assert nothing[0].size == 0 and nothing[2] == {"filter_a": 0, "filter_b": 0}


def test_stage_filters_end_to_end_on_hand_made_candidates():
    cfg = SynthesizeConfig(min_query_words=2, max_query_words=6, consistency_top_k=3, max_pairs_per_passage=1,
                           near_duplicate_jaccard=0.75)
    long_sentence = "The board of the carmaker said on Tuesday that profits would fall this year"
    rows = [  # (query, positive, generator, doc, rank)
        ("Volvo", PASSAGE, "smollm2", "d1", 1),                                    # too short
        ("carmaker profit warning hits shares hard today", PASSAGE, "smollm2", "d1", 1),  # 7 words: too long
        (long_sentence, "The rest of it.", "inverse_cloze", "d2", 1),              # a sentence: no length cap
        ("jobs job jobs job jobs job", PASSAGE, "smollm2", "d1", 1),              # too few distinct words
        ("the carmaker fell sharply on Tuesday", PASSAGE, "smollm2", "d1", 1),    # a verbatim copy
        ("why did shares fall", PASSAGE, "smollm2", "d1", 5),                     # passage ranked 5th
        ("carmaker profit warning", PASSAGE, "smollm2", "d1", 2),                 # 3/4 of d4's words
        ("carmaker shares fall", PASSAGE, "smollm2", "d1", 3),                    # so d1 keeps this one
        ("profit warning carmaker", "Another passage.", "smollm2", "d3", 3),      # the same, again
        ("profit warning at carmaker", "Another passage.", "smollm2", "d4", 1),   # best-ranked: it stays
        ("Volvo shares drop after warning", "Volvo passage.", "smollm2", "d5", 2),  # d5 has a better one
        ("steel prices hurt Volvo", "Volvo passage.", "smollm2", "d5", 1),
        ("steel prices hurt Volvo", "Volvo passage.", "inverse_cloze", "d5", 1),  # other generator, same words
    ]
    queries, positives, gens, docs, rank = (list(c) for c in zip(*rows))
    rank = np.array(rank)
    steps = candidate_filters(cfg, queries, positives, gens, list(zip(docs, gens)), rank, rank <= 3)
    kept, reason, counts = run_filters(len(rows), steps)
    assert reason.tolist() == [FILTER_TOO_SHORT, FILTER_TOO_LONG, None, FILTER_REPETITION, FILTER_COPY,
                               FILTER_CONSISTENCY, FILTER_NEAR_DUPLICATE, None, FILTER_NEAR_DUPLICATE, None,
                               FILTER_PER_PASSAGE_CAP, None, FILTER_NEAR_DUPLICATE]
    assert kept.tolist() == [r is None for r in reason]
    assert counts == {FILTER_UNFINISHED: 0, FILTER_TOO_SHORT: 1, FILTER_TOO_LONG: 1, FILTER_REPETITION: 1, FILTER_COPY: 1,
                      "decontaminated": 0, FILTER_CONSISTENCY: 1, FILTER_NEAR_DUPLICATE: 3, FILTER_PER_PASSAGE_CAP: 1}
    off = SynthesizeConfig(near_duplicate_jaccard=None, max_query_words=6)
    _, reason_off, counts_off = run_filters(len(rows), candidate_filters(
        off, queries, positives, gens, list(zip(docs, gens)), rank, rank <= 3))
    assert counts_off[FILTER_NEAR_DUPLICATE] == 0  # no query repeats one of its own passage
    # Without the near-duplicate filter d1 keeps its best-ranked query instead, and d3 its only one.
    assert reason_off[6] is None and reason_off[7] == FILTER_PER_PASSAGE_CAP and reason_off[8] is None


def test_every_llm_sample_ends_in_pairs_with_its_reason():
    """What an LLM generator returns for one passage (every sample, tidied by clean_samples) goes
    through the stage's filters: each rejected sample gets its reason, none is dropped silently."""
    samples = [  # (text, finished): what the model answered
        ("Query: carmaker shares fall on profit warning", True),     # kept
        ("carmaker shares fall on profit warning.", True),           # the same again
        ("Volvo", True),                                             # too short
        (" ".join(f"word{i}" for i in range(20)), True),             # too long
        ("jobs job jobs job jobs job", True),                        # a repetition loop
        ('"The carmaker fell sharply on Tuesday after"', True),      # a copy of the passage
        (BUILTIN_SHOTS["title"][0].query, True),                     # a copy of a few-shot example
        ("the shares of the carmaker fell sharply and", False),      # hit the token limit mid-sentence
        ("Here is a search query:", True),                           # nothing but a preamble
    ]
    expected = [None, FILTER_NEAR_DUPLICATE, FILTER_TOO_SHORT, FILTER_TOO_LONG, FILTER_REPETITION, FILTER_COPY,
                FILTER_COPY, FILTER_UNFINISHED, FILTER_TOO_SHORT]
    cleaned = clean_samples(samples)
    assert len(cleaned) == len(samples)
    queries = [q for q, _ in cleaned]
    unfinished = [u for _, u in cleaned]
    n = len(queries)
    rank = np.ones(n, dtype=np.int64)
    keys = [("d1", "smollm2")] * n
    for cfg in (SynthesizeConfig(), SynthesizeConfig(near_duplicate_jaccard=None, max_pairs_per_passage=3)):
        steps = candidate_filters(cfg, queries, [PASSAGE] * n, ["smollm2"] * n, keys, rank, np.ones(n, bool),
                                  examples=shot_queries(), unfinished=unfinished)
        assert steps[0][0] == FILTER_UNFINISHED
        kept, reason, counts = run_filters(n, steps)
        assert reason.tolist() == expected, cfg.near_duplicate_jaccard
        assert kept.tolist() == [r is None for r in expected]
        assert counts[FILTER_UNFINISHED] == 1 and counts[FILTER_COPY] == 2 and counts[FILTER_TOO_SHORT] == 2
    # Without the flags the unfinished sample is judged like a finished one: it passes the text
    # checks, and the passage's cap (one) is taken by the earlier kept query.
    _, reason, _ = run_filters(n, candidate_filters(SynthesizeConfig(), queries, [PASSAGE] * n, ["smollm2"] * n, keys,
                                                    rank, np.ones(n, bool), examples=shot_queries()))
    assert reason[7] == FILTER_PER_PASSAGE_CAP
