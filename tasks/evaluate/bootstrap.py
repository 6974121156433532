"""Paired bootstrap intervals of the difference between two retrievers on the same queries.

Two models scored on the same queries give one difference per query. Resampling the queries with
replacement (the same resamples for every comparison of a task: the draws depend only on the seed
and the number of queries) and taking the mean difference of each resample gives its bootstrap
distribution; the interval is that distribution's 2.5th and 97.5th percentiles (the percentile
interval, Efron & Tibshirani 1993, ch. 13; linear interpolation between order statistics). It is
paired: a query that is hard for both models moves both scores, not their difference, so the
interval is much narrower than one from two independent samples (Sakai 2006, "Evaluating
evaluation metrics based on the bootstrap").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

CONFIDENCE = 0.95
# Resampled indices one step holds (samples x queries): 4M int64 is 32 MiB, whatever the sizes.
DRAW_CHUNK = 1 << 22
# The differences reported, per model: metric name part -> the model it is compared with. Each
# comparison becomes rows of its model (``ndcg@10_<name>`` and ``_ci_low``/``_ci_high``); another
# system is added here the same way.
TUNED = "tuned"
HYBRID = "hybrid"
COMPARISONS: dict[str, dict[str, str]] = {
    TUNED: {"delta": "base", "vs_bm25": "bm25", "vs_promoted": "promoted"},
    HYBRID: {"vs_tuned": TUNED, "vs_bm25": "bm25"},
}
INTERVAL_METRIC = "ndcg@10"


class Interval(NamedTuple):
    """The mean paired difference and its bootstrap percentile interval."""

    delta: float
    low: float
    high: float


def _generator(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed % (1 << 64))  # any int seed, negative ones too


def bootstrap_means(values: np.ndarray, *, samples: int, seed: int) -> np.ndarray:
    """Means of ``samples`` resamples (with replacement, ``len(values)`` each) of ``values``.

    Resample ``b`` is the ``b``-th row of ``rng.integers(0, n, size=(samples, n))`` for
    ``rng = default_rng(seed)``, drawn in chunks of at most :data:`DRAW_CHUNK` indices.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        raise ValueError("no values to resample")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = _generator(seed)
    step = max(1, DRAW_CHUNK // n)
    out = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, step):
        count = min(step, samples - start)
        out[start : start + count] = values[rng.integers(0, n, size=(count, n))].mean(axis=1)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, samples: int, seed: int,
                     confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``a - b`` (per-query scores of two models on the same queries) and its percentile
    interval at ``confidence`` over ``samples`` seeded resamples of the queries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two vectors of one length, got shapes {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    deltas = a - b
    means = bootstrap_means(deltas, samples=samples, seed=seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(deltas.mean()), float(low), float(high))


def interval_metrics(per_query: Mapping[str, np.ndarray], *, samples: int, seed: int,
                     comparisons: Mapping[str, Mapping[str, str]] = COMPARISONS) -> dict[str, dict[str, float]]:
    """The interval rows of one task, per model, from each model's per-query nDCG@10: for each
    comparison ``name -> other`` of a model, ``ndcg@10_<name>`` (model − other) with
    ``_ci_low``/``_ci_high``; e.g. model 'tuned' gets ``ndcg@10_delta`` (tuned − base) and
    ``ndcg@10_vs_bm25``, model 'hybrid' ``ndcg@10_vs_tuned`` and ``ndcg@10_vs_bm25``.

    Every comparison of a task draws the same resamples (same seed, same queries). A comparison
    whose models were not both scored is left out; so is everything with ``samples == 0``.
    """
    if not samples:
        return {}
    out: dict[str, dict[str, float]] = {}
    for model, against in comparisons.items():
        for name, other in against.items():
            if model in per_query and other in per_query:
                iv = paired_bootstrap(per_query[model], per_query[other], samples=samples, seed=seed)
                out.setdefault(model, {}).update({
                    f"{INTERVAL_METRIC}_{name}": iv.delta, f"{INTERVAL_METRIC}_{name}_ci_low": iv.low,
                    f"{INTERVAL_METRIC}_{name}_ci_high": iv.high})
    return out
