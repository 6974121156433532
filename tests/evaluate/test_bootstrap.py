"""Paired bootstrap intervals of tuned − base (tasks/evaluate/bootstrap.py) on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest

from refinery.tasks.evaluate import bootstrap
from refinery.tasks.evaluate.bootstrap import bootstrap_means, interval_metrics, paired_bootstrap


def reference_interval(a, b, *, samples: int, seed: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """The textbook loop: draw n query indices with replacement, take the mean difference, repeat;
    the interval is the percentiles of those means."""
    rng = np.random.default_rng(seed)
    deltas = [x - y for x, y in zip(a, b)]
    means = []
    for _ in range(samples):
        idx = rng.integers(0, len(deltas), size=len(deltas))
        means.append(sum(deltas[i] for i in idx) / len(deltas))
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return sum(deltas) / len(deltas), float(low), float(high)


def test_equal_deltas_give_a_zero_width_interval_at_that_delta():
    base = np.array([0.2, 0.5, 0.9, 0.0, 1.0, 0.3])
    iv = paired_bootstrap(base + 0.125, base, samples=500, seed=3)
    assert iv.delta == pytest.approx(0.125)
    assert iv.low == pytest.approx(0.125) and iv.high == pytest.approx(0.125)
    assert iv.high - iv.low == pytest.approx(0.0, abs=1e-12)


def test_identical_models_give_zero():
    a = np.random.default_rng(0).random(50)
    assert paired_bootstrap(a, a, samples=200, seed=1) == (0.0, 0.0, 0.0)


def test_one_query_is_its_own_interval():
    assert paired_bootstrap(np.array([0.7]), np.array([0.2]), samples=100, seed=0) == pytest.approx((0.5, 0.5, 0.5))


def test_two_queries_have_a_known_interval():
    # deltas 0 and 1: a resample's mean is 0, 1/2 or 1 (probabilities 1/4, 1/2, 1/4), so the
    # 2.5th percentile is 0 and the 97.5th is 1, and a 40% interval is the middle value alone
    a, b = np.array([1.0, 0.5]), np.array([1.0, -0.5])
    assert paired_bootstrap(a, b, samples=4000, seed=7) == (0.5, 0.0, 1.0)
    assert paired_bootstrap(a, b, samples=4000, seed=7, confidence=0.4) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("n, samples, seed", [(1, 50, 0), (9, 333, 5), (40, 1000, 11), (200, 257, -4)])
def test_equals_the_slow_reference_loop(n, samples, seed, monkeypatch):
    rng = np.random.default_rng(100 + n)
    a, b = rng.random(n), rng.random(n)
    if seed < 0:  # a negative seed is folded into numpy's range the way the module does it
        ref_seed = seed % (1 << 64)
    else:
        ref_seed = seed
    expected = reference_interval(a, b, samples=samples, seed=ref_seed)
    assert tuple(paired_bootstrap(a, b, samples=samples, seed=seed)) == pytest.approx(expected, abs=1e-12)
    # drawn in chunks of a few resamples: the same draws, so the same interval
    monkeypatch.setattr(bootstrap, "DRAW_CHUNK", 3 * n + 1)
    assert tuple(paired_bootstrap(a, b, samples=samples, seed=seed)) == pytest.approx(expected, abs=1e-12)


def test_swapping_the_models_mirrors_the_interval():
    rng = np.random.default_rng(4)
    a, b = rng.random(30), rng.random(30) ** 2  # skewed: the interval is not symmetric about the delta
    fwd = paired_bootstrap(a, b, samples=999, seed=2)
    back = paired_bootstrap(b, a, samples=999, seed=2)
    assert back == pytest.approx((-fwd.delta, -fwd.high, -fwd.low), abs=1e-12)


def test_shifting_every_delta_shifts_the_interval():
    rng = np.random.default_rng(8)
    a, b = rng.random(25), rng.random(25)
    iv, shifted = (paired_bootstrap(a + c, b, samples=700, seed=9) for c in (0.0, 0.25))
    assert tuple(shifted) == pytest.approx((iv.delta + 0.25, iv.low + 0.25, iv.high + 0.25), abs=1e-12)


def test_a_symmetric_sample_gives_an_interval_centred_on_its_mean():
    # deltas symmetric about 0.1: the bootstrap distribution of the mean is symmetric about it too
    half = np.array([0.05, 0.2, 0.35, 0.5, 0.8])
    deltas = np.concatenate([0.1 + half, 0.1 - half] * 20)
    iv = paired_bootstrap(deltas, np.zeros_like(deltas), samples=4000, seed=0)
    assert iv.delta == pytest.approx(0.1)
    assert (iv.high - iv.delta) == pytest.approx(iv.delta - iv.low, rel=0.1)


def test_width_matches_the_normal_approximation_for_many_queries():
    # 400 independent per-query differences with sd 0.2: the mean's 95% interval is about
    # +/- 1.96 * 0.2 / sqrt(400) = +/- 0.0196
    rng = np.random.default_rng(12)
    base = rng.random(400)
    tuned = base + rng.normal(0.03, 0.2, size=400)
    iv = paired_bootstrap(tuned, base, samples=2000, seed=0)
    sd = np.std(tuned - base, ddof=1)
    assert (iv.high - iv.low) / 2 == pytest.approx(1.96 * sd / np.sqrt(400), rel=0.1)
    assert iv.low < iv.delta < iv.high


def test_pairing_is_what_narrows_the_interval():
    # queries differ a lot in difficulty, the models differ little: the unpaired spread is large,
    # the paired one small
    rng = np.random.default_rng(5)
    difficulty = rng.random(300)
    base, tuned = difficulty, difficulty + 0.02 + rng.normal(0, 0.01, 300)
    iv = paired_bootstrap(tuned, base, samples=1000, seed=0)
    assert iv.high - iv.low < 0.01 and iv.low > 0
    unpaired = np.quantile(bootstrap_means(tuned, samples=1000, seed=1) - bootstrap_means(base, samples=1000, seed=2),
                           [0.025, 0.975])
    assert unpaired[1] - unpaired[0] > 5 * (iv.high - iv.low)


def test_interval_metrics_names_the_rows_of_model_tuned():
    per_query = {"tuned": np.array([1.0, 0.5, 0.0]), "base": np.array([0.5, 0.5, 0.0]),
                 "bm25": np.array([1.0, 1.0, 0.0])}
    by_model = interval_metrics(per_query, samples=4000, seed=0)
    assert set(by_model) == {"tuned"}
    rows = by_model["tuned"]
    assert set(rows) == {f"ndcg@10_{c}{s}" for c in ("delta", "vs_bm25") for s in ("", "_ci_low", "_ci_high")}
    # tuned − base is (0.5, 0, 0): a resample's mean is 0 with probability (2/3)^3 = 0.30 and 0.5
    # (the first query three times) with probability 1/27 = 0.037, so with 4000 resamples the 2.5th
    # percentile is 0 and the 97.5th is 0.5; tuned − bm25 is (0, -0.5, 0), the mirror image
    assert rows["ndcg@10_delta"] == pytest.approx(0.5 / 3)
    assert (rows["ndcg@10_delta_ci_low"], rows["ndcg@10_delta_ci_high"]) == (0.0, 0.5)
    assert rows["ndcg@10_vs_bm25"] == pytest.approx(-0.5 / 3)
    assert (rows["ndcg@10_vs_bm25_ci_low"], rows["ndcg@10_vs_bm25_ci_high"]) == (-0.5, 0.0)
    # only the comparisons whose models were scored; none without tuned or without resamples
    assert interval_metrics({"tuned": per_query["tuned"], "bm25": per_query["bm25"]}, samples=10, seed=0) == {
        "tuned": {k: v for k, v in interval_metrics(per_query, samples=10, seed=0)["tuned"].items() if "vs_bm25" in k}}
    assert interval_metrics({"base": per_query["base"], "bm25": per_query["bm25"]}, samples=10, seed=0) == {}
    assert interval_metrics(per_query, samples=0, seed=0) == {}


def test_hybrid_is_compared_with_tuned_and_bm25_on_the_same_resamples():
    per_query = {"tuned": np.array([1.0, 0.5, 0.0]), "base": np.array([0.5, 0.5, 0.0]),
                 "bm25": np.array([1.0, 1.0, 0.0]), "hybrid": np.array([1.0, 1.0, 0.5])}
    by_model = interval_metrics(per_query, samples=4000, seed=0)
    assert set(by_model) == {"tuned", "hybrid"}
    assert set(by_model["hybrid"]) == {f"ndcg@10_{c}{s}" for c in ("vs_tuned", "vs_bm25")
                                       for s in ("", "_ci_low", "_ci_high")}
    # hybrid − tuned is (0, 0.5, 0.5), hybrid − bm25 (0, 0, 0.5): the percentile ends follow by hand
    # as above (hybrid − tuned: a mean of 0 with probability 1/27, of 0.5 with probability 8/27)
    hybrid = by_model["hybrid"]
    assert hybrid["ndcg@10_vs_tuned"] == pytest.approx(1 / 3)
    assert (hybrid["ndcg@10_vs_tuned_ci_low"], hybrid["ndcg@10_vs_tuned_ci_high"]) == (0.0, 0.5)
    assert hybrid["ndcg@10_vs_bm25"] == pytest.approx(0.5 / 3)
    # seeded like every comparison of the task (evaluate.seed)
    iv = paired_bootstrap(per_query["hybrid"], per_query["bm25"], samples=4000, seed=0)
    assert (hybrid["ndcg@10_vs_bm25_ci_low"], hybrid["ndcg@10_vs_bm25_ci_high"]) == (iv.low, iv.high)
    # a comparison of a system not scored is left out, the others stay
    assert set(interval_metrics({k: v for k, v in per_query.items() if k != "tuned"}, samples=10, seed=0)) == {"hybrid"}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(np.zeros(3), np.zeros(4), samples=10, seed=0)
    with pytest.raises(ValueError, match="no values"):
        paired_bootstrap(np.zeros(0), np.zeros(0), samples=10, seed=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(np.zeros(2), np.zeros(2), samples=10, seed=0, confidence=1.0)
