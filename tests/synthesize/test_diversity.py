"""Diversity metrics of synthesized queries (tasks/synthesize/diversity) on hand-made sets: a set
that collapses onto one phrasing scores low on every measure."""

from __future__ import annotations

import numpy as np
import pytest

from refinery.tasks.embedding import encode
from refinery.tasks.synthesize.diversity import mean_pairwise_jaccard, query_diversity

COLLAPSED = ["oil price rise", "oil price rise", "oil price rises", "Oil price rise!", "the oil price rise"]
VARIED = ["oil price rise", "england rugby squad named", "new mobile phone launched", "film wins top award",
          "election date called early"]


def test_collapsed_queries_score_low_on_every_measure(encoder):
    collapsed = query_diversity(COLLAPSED, encode(encoder, COLLAPSED, show_progress=False))
    varied = query_diversity(VARIED, encode(encoder, VARIED, show_progress=False))
    assert collapsed["distinct_1"] < varied["distinct_1"] and collapsed["distinct_2"] < varied["distinct_2"]
    assert collapsed["self_jaccard"] > 0.5 > 0.05 > varied["self_jaccard"]
    assert collapsed["embedding_dispersion"] < 0.2 < 0.6 < varied["embedding_dispersion"]
    assert collapsed["unique_fraction"] == pytest.approx(4 / 5)  # "Oil price rise!" is not the same string


def test_exact_values_on_a_small_set():
    stats = query_diversity(["oil price rise", "oil price rise", "oil price rises"])
    assert stats["distinct_1"] == pytest.approx(4 / 9)
    assert stats["distinct_2"] == pytest.approx(3 / 6)  # oil-price, price-rise, price-rises
    # pairs: (1, 2) share all 3 words; (1, 3) and (2, 3) share 2 of 4
    assert stats["self_jaccard"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert stats["mean_query_words"] == pytest.approx(3.0)
    assert "embedding_dispersion" not in stats
    assert query_diversity(VARIED)["distinct_1"] == 1.0


def test_embedding_dispersion_matches_all_pairs(encoder):
    emb = encode(encoder, VARIED, show_progress=False)
    sims = emb @ emb.T
    brute = 1 - (sims.sum() - np.trace(sims)) / (len(VARIED) * (len(VARIED) - 1))
    assert query_diversity(VARIED, emb)["embedding_dispersion"] == pytest.approx(brute, abs=1e-5)
    with pytest.raises(ValueError):
        query_diversity(VARIED, emb[:2])


def test_empty_and_single_sets_are_zero():
    empty = query_diversity([], np.zeros((0, 4)))
    assert set(empty.values()) == {0.0}
    one = query_diversity(["oil price rise"], np.eye(1, 4))
    assert one["self_jaccard"] == 0.0 and one["embedding_dispersion"] == 0.0 and one["distinct_1"] == 1.0


def test_self_jaccard_sample_is_seeded_and_close_to_all_pairs():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    sets = [set(rng.choice(vocab, size=4, replace=False)) for _ in range(400)]
    exact = mean_pairwise_jaccard(sets, sample=400)
    sampled = mean_pairwise_jaccard(sets, sample=100, seed=1)
    assert sampled == mean_pairwise_jaccard(sets, sample=100, seed=1)
    assert sampled != mean_pairwise_jaccard(sets, sample=100, seed=2)
    assert abs(sampled - exact) < 0.02
    brute = np.mean([len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1:]])
    assert exact == pytest.approx(brute)
