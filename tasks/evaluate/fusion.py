"""Hybrid retrieval: BM25 and the tuned model fused by a convex combination of normalized scores.

A document's hybrid score for a query is ``w * norm(dense) + (1 - w) * norm(bm25)``, each system's
scores min-max normalized per query over the documents ranked (the best document 1, the worst
0). The convex combination of min-max normalized scores is the fusion that Bruch, Gai and
Ingber (2023, "An Analysis of Fusion Functions for Hybrid Retrieval", ACM TOIS) found better
than reciprocal rank fusion in and out of domain, and tunable from a few queries; the
normalization mattered little there, and min-max needs no assumption about a score's
distribution (BM25's is unbounded and skewed, cosine's bounded). A query whose scores are all
equal on one side (BM25 of a query with no indexed token: every score 0) gets 0 everywhere on
that side: it orders nothing, and the other side alone ranks.

The weight ``w`` is fitted on the train stage's dev split (:func:`fit_weight`), never on an
evaluation set: the grid's weight with the best mean dev nDCG@10 (ties: the weight nearest 0.5,
then the lower). Rankings break ties in the fused score by document index, as every ranking in
:mod:`tasks.evaluate.retrieval` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from refinery.storage.location import location
from refinery.tasks.evaluate.retrieval import (
    NDCG_K, SCORE_CHUNK_BYTES, ndcg_scores, relevance_hits, rows_per_chunk, top_k_indices,
)

HYBRID = "hybrid"
# Weights of the dense side tried on the dev split: 0, 0.05, ..., 1 (0: BM25 alone, 1: tuned alone).
WEIGHT_GRID: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(21))
FIT_METRIC = f"ndcg@{NDCG_K}"
NORMALIZATION = "min-max per query"
# Score arrays one fused step holds at once (dense, BM25, their normalized forms, the sum): the
# chunk of queries is sized so that all of them together stay within SCORE_CHUNK_BYTES.
_ARRAYS_PER_STEP = 6

LexicalScores = Callable[[int, int], np.ndarray]  # (start, stop) -> BM25 scores of those queries' rows


def normalize(scores: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalize each row to [0, 1] (float64); a row whose scores are all equal is all 0.

    ``exclude`` (bool, the shape of ``scores``) marks entries that neither set a row's min or max
    nor get a meaningful value (they come back 0; callers rank them last).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is None:
        low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    else:
        low = np.where(exclude, np.inf, scores).min(axis=1, keepdims=True)
        high = np.where(exclude, -np.inf, scores).max(axis=1, keepdims=True)
    span = high - low
    flat = ~(span > 0)  # all equal, or nothing left to normalize over
    out = (scores - np.where(flat, 0.0, low)) / np.where(flat, 1.0, span)
    out[np.broadcast_to(flat, out.shape)] = 0.0
    if exclude is not None:
        out[exclude] = 0.0
    return out


def fuse(dense: np.ndarray, lexical: np.ndarray, weight: float, exclude: np.ndarray | None = None) -> np.ndarray:
    """``weight * normalize(dense) + (1 - weight) * normalize(lexical)`` per row; excluded entries -inf."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be in [0, 1], got {weight}")
    if np.shape(dense) != np.shape(lexical):
        raise ValueError(f"dense scores of shape {np.shape(dense)} but BM25 scores of shape {np.shape(lexical)}")
    fused = weight * normalize(dense, exclude) + (1.0 - weight) * normalize(lexical, exclude)
    if exclude is not None:
        fused[exclude] = -np.inf
    return fused


def chunk_rows(n_docs: int, budget_bytes: int = SCORE_CHUNK_BYTES) -> int:
    """Queries one fused step scores at once: their float64 score arrays fit ``budget_bytes``."""
    return rows_per_chunk(2 * n_docs * _ARRAYS_PER_STEP, budget_bytes)  # float64: twice float32's bytes


def _own_mask(own: np.ndarray | None, start: int, stop: int, n_docs: int) -> np.ndarray | None:
    if own is None:
        return None
    mask = np.zeros((stop - start, n_docs), dtype=bool)
    mask[np.arange(stop - start), np.asarray(own[start:stop], dtype=np.int64)] = True
    return mask


def hybrid_rankings(query_emb: np.ndarray, doc_emb: np.ndarray, lexical: LexicalScores, k: int, weight: float, *,
                    own: np.ndarray | None = None, budget_bytes: int = SCORE_CHUNK_BYTES) -> np.ndarray:
    """Top-``k`` document indices per query by the fused score, best first, ties to the lower index.

    Dense scores are ``query_emb @ doc_emb.T``; ``lexical(start, stop)`` gives the BM25 scores of
    queries ``start:stop`` against every document. ``own[q]`` (query by example) is query ``q``'s
    own document: it sets neither side's min or max and ranks last. Queries go in chunks whose
    score arrays together fit ``budget_bytes``, so no queries x documents matrix is ever held.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    query_emb = np.asarray(query_emb, dtype=np.float32)
    doc_emb = np.asarray(doc_emb, dtype=np.float32)
    n_docs = doc_emb.shape[0]
    out = np.empty((query_emb.shape[0], min(k, n_docs)), dtype=np.int64)
    step = chunk_rows(n_docs, budget_bytes)
    for start in range(0, query_emb.shape[0], step):
        stop = min(start + step, query_emb.shape[0])
        fused = fuse(query_emb[start:stop] @ doc_emb.T, lexical(start, stop), weight,
                     _own_mask(own, start, stop, n_docs))
        out[start:stop] = top_k_indices(fused, k)
    return out


def grid_ndcg(dense: np.ndarray, lexical: np.ndarray, relevant: Sequence[set[int]], grid: Sequence[float] = WEIGHT_GRID,
              *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per-query nDCG@10 of the fused ranking at each weight of ``grid``: ``(n_queries, len(grid))``."""
    out = np.empty((len(relevant), len(grid)), dtype=np.float64)
    dense_n, lexical_n = normalize(dense, exclude), normalize(lexical, exclude)
    for j, weight in enumerate(grid):
        fused = weight * dense_n + (1.0 - weight) * lexical_n
        if exclude is not None:
            fused[exclude] = -np.inf
        out[:, j] = ndcg_scores(*relevance_hits(top_k_indices(fused, NDCG_K), relevant, NDCG_K), NDCG_K)
    return out


def choose_weight(per_query: np.ndarray, grid: Sequence[float] = WEIGHT_GRID) -> float:
    """The weight of ``grid`` whose column of ``per_query`` has the best mean; ties go to the
    weight nearest 0.5 (the least one-sided of equally good mixes), then to the lower one."""
    means = np.asarray(per_query, dtype=np.float64).mean(axis=0)
    best = means.max()
    tied = [w for w, m in zip(grid, means) if m >= best - 1e-12]
    return float(min(tied, key=lambda w: (abs(w - 0.5), w)))


@dataclass(frozen=True)
class FusionFit:
    """The fitted weight and the dev figures behind it (mean dev nDCG@10 per weight of the grid)."""

    weight: float
    dev: dict[float, float]
    dev_queries: int

    def as_stats(self) -> dict[str, Any]:
        return {"weight": self.weight, "metric": FIT_METRIC, "normalization": NORMALIZATION,
                "dev_queries": self.dev_queries, f"dev_{FIT_METRIC}": self.dev[self.weight],
                f"dev_{FIT_METRIC}_tuned": self.dev.get(1.0), f"dev_{FIT_METRIC}_bm25": self.dev.get(0.0),
                "dev_by_weight": {f"{w:.2f}": v for w, v in self.dev.items()}}


def fit_from_grid(per_query: np.ndarray, grid: Sequence[float] = WEIGHT_GRID) -> FusionFit:
    """:class:`FusionFit` of per-query dev scores at each weight of ``grid`` (see :func:`grid_ndcg`)."""
    per_query = np.asarray(per_query, dtype=np.float64)
    if per_query.ndim != 2 or per_query.shape[1] != len(grid) or not per_query.shape[0]:
        raise ValueError(f"per-query scores of shape {per_query.shape} do not fit a grid of {len(grid)} weights")
    means = per_query.mean(axis=0)
    return FusionFit(choose_weight(per_query, grid), {float(w): float(m) for w, m in zip(grid, means)},
                     per_query.shape[0])


def fit_weight(dense: np.ndarray, lexical: np.ndarray, relevant: Sequence[set[int]],
               grid: Sequence[float] = WEIGHT_GRID, *, exclude: np.ndarray | None = None) -> FusionFit:
    """The weight with the best mean dev nDCG@10 of the fused rankings (ties: :func:`choose_weight`).

    ``dense`` and ``lexical`` are the dev queries' scores against the dev candidates,
    ``relevant[q]`` the candidates that answer query ``q``, ``exclude`` candidates left out of
    query ``q``'s ranking.
    """
    return fit_from_grid(grid_ndcg(dense, lexical, relevant, grid, exclude=exclude), grid)


def dev_split_missing(train: dict[str, Any]) -> str | None:
    """Why the train stage's stats offer no dev split to fit the weight on (None: they do)."""
    if train.get("skipped"):
        return f"the train stage was skipped ({train['skipped']}), so there is no dev split to fit its weight on"
    if not train.get("model_path"):
        return "the train stage saved no model"
    if train.get("dev_skipped"):
        return f"the train stage had no dev split to fit its weight on ({train['dev_skipped']})"
    path = train.get("dev_pairs_path")
    if not path or not location(path).exists():
        return "the train stage wrote no dev pairs to fit its weight on (a model trained before they were written)"
    if not train.get("dev_pairs", 1):
        return "the train stage's dev split is empty"
    return None
