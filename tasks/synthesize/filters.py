"""Decide which synthesized queries to keep, and mine hard negatives, from base-model rankings.

Both functions take L2-normalised embeddings (as :func:`tasks.embedding.encode` returns), so a
dot product is a cosine similarity, and score every query against the documents they are given
(the synthesize stage gives the filter pool: the passages' documents and seeded distractors).
Queries are scored in chunks of at most :data:`SCORE_CHUNK_BYTES` of scores.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from refinery.tasks.evaluate.retrieval import SCORE_CHUNK_BYTES, rows_per_chunk
from refinery.tasks.synthesize.config import DEFAULT_HARD_NEGATIVE_RANK_WINDOW


def positive_ranks(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    positive_index: Sequence[int] | np.ndarray,
    *,
    same_as_positive: Sequence[set[int]] | None = None,
) -> np.ndarray:
    """1-based rank of each query's positive document among the documents of ``corpus_emb``.

    Rank is one plus the number of documents scoring strictly higher than the positive, not
    counting documents in ``same_as_positive[q]`` (members of the positive's dedup cluster:
    ranking a duplicate first is not a failure).
    """
    query_emb = np.asarray(query_emb, dtype=np.float32)
    corpus_emb = np.asarray(corpus_emb, dtype=np.float32)
    positive_index = np.asarray(positive_index, dtype=np.int64)
    if query_emb.shape[0] != positive_index.shape[0]:
        raise ValueError(f"{query_emb.shape[0]} queries but {positive_index.shape[0]} positive indices")
    if same_as_positive is not None and len(same_as_positive) != len(positive_index):
        raise ValueError("same_as_positive needs one set per query")
    ranks = np.empty(len(positive_index), dtype=np.int64)
    step = rows_per_chunk(corpus_emb.shape[0], SCORE_CHUNK_BYTES)
    for start in range(0, len(positive_index), step):
        stop = start + step
        scores = query_emb[start:stop] @ corpus_emb.T
        rows = np.arange(scores.shape[0])
        pos = positive_index[start:stop]
        pos_score = scores[rows, pos]
        if same_as_positive is not None:
            for r, q in enumerate(range(start, min(stop, len(positive_index)))):
                others = [d for d in same_as_positive[q] if d != pos[r]]
                if others:
                    scores[r, others] = -np.inf
        ranks[start:stop] = 1 + (scores > pos_score[:, None]).sum(axis=1)
    return ranks


def consistency_filter(
    query_emb: np.ndarray,
    passage_emb_of_corpus: np.ndarray,
    positive_index: Sequence[int] | np.ndarray,
    top_k: int,
    *,
    same_as_positive: Sequence[set[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep a synthesized query only if its own passage ranks in the top ``top_k`` of the documents.

    Returns ``(kept, rank)``: a boolean mask and the 1-based rank of the positive per query
    (see :func:`positive_ranks` for ``same_as_positive``). A query that the base model cannot
    connect to its passage is usually off topic or too generic to teach anything.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    rank = positive_ranks(query_emb, passage_emb_of_corpus, positive_index, same_as_positive=same_as_positive)
    return rank <= top_k, rank


def mine_hard_negatives(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    positive_index: Sequence[int] | np.ndarray,
    *,
    exclude: Sequence[set[int]] | None = None,
    rank_window: tuple[int, int] = DEFAULT_HARD_NEGATIVE_RANK_WINDOW,
    seed: int | None = None,
) -> np.ndarray:
    """One hard negative per query from the base model's ranking, or -1 where none qualifies.

    The corpus is ranked for each query and the positive and the documents in ``exclude[q]``
    (its dedup cluster) are removed. With ``seed=None`` the negative is the document at 0-based
    position ``rank_window[0]`` of what remains (the hardest one allowed); with a seed it is
    drawn uniformly from positions ``rank_window[0] .. rank_window[1] - 1``. Skipping the
    closest documents avoids training against unlabelled duplicates and follow-ups of the same
    story. -1 means fewer than ``rank_window[0] + 1`` documents remained.
    """
    start, stop = rank_window
    if not 0 <= start < stop:
        raise ValueError(f"rank_window must satisfy 0 <= start < stop, got {rank_window}")
    query_emb = np.asarray(query_emb, dtype=np.float32)
    corpus_emb = np.asarray(corpus_emb, dtype=np.float32)
    positive_index = np.asarray(positive_index, dtype=np.int64)
    if exclude is not None and len(exclude) != len(positive_index):
        raise ValueError("exclude needs one set per query")
    rng = np.random.default_rng(seed) if seed is not None else None
    negatives = np.full(len(positive_index), -1, dtype=np.int64)
    step = rows_per_chunk(corpus_emb.shape[0], SCORE_CHUNK_BYTES)
    for begin in range(0, len(positive_index), step):
        scores = query_emb[begin : begin + step] @ corpus_emb.T
        for r in range(scores.shape[0]):
            q = begin + r
            row = scores[r]
            row[positive_index[q]] = -np.inf
            if exclude is not None and exclude[q]:
                row[list(exclude[q])] = -np.inf
            allowed = int(np.isfinite(row).sum())
            if start >= allowed:
                continue
            depth = min(stop, allowed) if rng is not None else start + 1
            # Partial sort: only the first `depth` positions are needed; ties go to the lower index.
            top = np.argpartition(-row, depth - 1)[:depth]
            top = top[np.lexsort((top, -row[top]))]
            pick = start if rng is None else int(rng.integers(start, depth))
            negatives[q] = int(top[pick])
    return negatives


def keep_best_per_passage(
    rank: Sequence[int] | np.ndarray,
    passage_of: Sequence[Hashable],
    *,
    top_k: int,
    max_per_passage: int,
) -> np.ndarray:
    """Mask of candidates to turn into training pairs.

    A candidate qualifies when its positive's rank is at most ``top_k`` (see
    :func:`consistency_filter`); of the qualifying candidates sharing a key in ``passage_of``
    (a passage id, or a (passage, generator) tuple to cap each generator separately) the
    ``max_per_passage`` best ranked are kept, the earlier candidate winning a tie. Several
    queries for one passage add little but near-duplicate positives, which in-batch negatives
    handle badly.
    """
    rank = np.asarray(rank, dtype=np.int64)
    if rank.shape[0] != len(passage_of):
        raise ValueError("rank and passage_of must have one entry per candidate")
    if top_k < 1 or max_per_passage < 1:
        raise ValueError("top_k and max_per_passage must be >= 1")
    keep = np.zeros(rank.shape[0], dtype=bool)
    taken: dict[Hashable, int] = {}
    for c in np.lexsort((np.arange(rank.shape[0]), rank)):
        if rank[c] > top_k:
            break
        key = passage_of[c]
        if taken.get(key, 0) < max_per_passage:
            taken[key] = taken.get(key, 0) + 1
            keep[c] = True
    return keep
