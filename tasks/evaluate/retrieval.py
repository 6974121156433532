"""Rank documents for queries (dense and BM25) and score rankings with nDCG, MRR and recall.

A ranking is a row of document indices, best first. Relevance is binary: ``relevant[q]`` is the
set of document indices that answer query ``q`` (for Refinery, every member of the dedup cluster
of the article the headline came from).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np

NDCG_K = 10
MRR_K = 10
RECALL_K = 100
# Largest cutoff evaluate_rankings needs, so callers know how deep to rank.
RANKING_DEPTH = max(NDCG_K, MRR_K, RECALL_K)
# Query rows scored per matrix product: bounds memory at (chunk x n_docs) floats.
DENSE_QUERY_CHUNK = 1024

Rankings = np.ndarray | Sequence[Sequence[int]]


def dense_rankings(
    query_emb: np.ndarray, doc_emb: np.ndarray, k: int, *, chunk_size: int = DENSE_QUERY_CHUNK
) -> np.ndarray:
    """Top-``k`` document indices per query by dot product, best first.

    With L2-normalised embeddings (as :func:`tasks.embedding.encode` returns) this is cosine
    similarity. Returns an int64 array of shape ``(n_queries, min(k, n_docs))``; ties go to the
    lower document index.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    query_emb = np.asarray(query_emb, dtype=np.float32)
    doc_emb = np.asarray(doc_emb, dtype=np.float32)
    depth = min(k, doc_emb.shape[0])
    out = np.empty((query_emb.shape[0], depth), dtype=np.int64)
    for start in range(0, query_emb.shape[0], chunk_size):
        scores = query_emb[start : start + chunk_size] @ doc_emb.T
        out[start : start + chunk_size] = top_k_indices(scores, depth)
    return out


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row, best first, ties to the lower index."""
    n = scores.shape[1]
    k = min(k, n)
    if k < n:
        # argpartition keeps this O(n) per row; only the k survivors are fully sorted.
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # index order first, so the stable sort below breaks ties by index
    else:
        part = np.tile(np.arange(n), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def bm25_rankings(
    queries: Sequence[str],
    docs: Sequence[str],
    k: int,
    *,
    k1: float = 1.5,
    b: float = 0.75,
    stopwords: Literal["english", "none"] = "english",
) -> np.ndarray:
    """Top-``k`` document indices per query by BM25 (Lucene variant, via ``bm25s``), best first.

    Text is lower-cased and split into word tokens of two or more characters; English stopwords
    are dropped. No stemming: no stemmer ships offline with the project. A query with no
    indexable token scores every document 0 and gets documents in index order.
    """
    import bm25s

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sw = "en" if stopwords == "english" else None
    doc_tokens = bm25s.tokenize(list(docs), stopwords=sw, return_ids=False, show_progress=False)
    query_tokens = bm25s.tokenize(list(queries), stopwords=sw, return_ids=False, show_progress=False)
    index = bm25s.BM25(k1=k1, b=b)
    index.index(doc_tokens, show_progress=False)
    vocab = index.vocab_dict
    scores = np.zeros((len(queries), len(docs)), dtype=np.float32)
    for qi, tokens in enumerate(query_tokens):
        known = [t for t in tokens if t in vocab]
        if known:
            scores[qi] = index.get_scores(known)
    return top_k_indices(scores, k)


def cluster_relevance(
    positive_index: Sequence[int], cluster_of: Sequence[Hashable]
) -> list[set[int]]:
    """Relevant-document sets where every document in a positive's dedup cluster counts.

    ``positive_index[q]`` is the document query ``q`` was taken from; ``cluster_of[d]`` is the
    dedup cluster id of document ``d`` (a document alone in its cluster has a unique id).
    """
    members: dict[Hashable, set[int]] = {}
    for doc, cluster in enumerate(cluster_of):
        members.setdefault(cluster, set()).add(doc)
    return [set(members[cluster_of[p]]) for p in positive_index]


def _check(rankings: Rankings, relevant: Sequence[set[int]], k: int) -> None:
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevance sets")
    if len(rankings) == 0:
        raise ValueError("no queries to score")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if any(len(rel) == 0 for rel in relevant):
        raise ValueError("every query needs at least one relevant document")


def ndcg_at_k(rankings: Rankings, relevant: Sequence[set[int]], k: int = NDCG_K) -> float:
    """Mean binary nDCG@k: gains ``1/log2(rank+1)`` over the ideal ranking of all relevant docs."""
    _check(rankings, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for ranking, rel in zip(rankings, relevant):
        hits = [i for i, doc in enumerate(list(ranking)[:k]) if int(doc) in rel]
        dcg = float(discounts[hits].sum()) if hits else 0.0
        idcg = float(discounts[: min(len(rel), k)].sum())
        total += dcg / idcg
    return total / len(relevant)


def mrr_at_k(rankings: Rankings, relevant: Sequence[set[int]], k: int = MRR_K) -> float:
    """Mean reciprocal rank of the first relevant document within the top ``k`` (0 if none)."""
    _check(rankings, relevant, k)
    total = 0.0
    for ranking, rel in zip(rankings, relevant):
        for i, doc in enumerate(list(ranking)[:k]):
            if int(doc) in rel:
                total += 1.0 / (i + 1)
                break
    return total / len(relevant)


def recall_at_k(rankings: Rankings, relevant: Sequence[set[int]], k: int = RECALL_K) -> float:
    """Mean fraction of each query's relevant documents found in its top ``k``."""
    _check(rankings, relevant, k)
    total = 0.0
    for ranking, rel in zip(rankings, relevant):
        found = {int(doc) for doc in list(ranking)[:k]} & rel
        total += len(found) / len(rel)
    return total / len(relevant)


def evaluate_rankings(rankings: Rankings, relevant: Sequence[set[int]]) -> dict[str, float]:
    """The three headline metrics, keyed as the ``metrics`` table names them.

    Rankings should be at least :data:`RANKING_DEPTH` (100) deep; shorter ones are scored as if
    every missing position were irrelevant.
    """
    return {
        f"ndcg@{NDCG_K}": ndcg_at_k(rankings, relevant, NDCG_K),
        f"mrr@{MRR_K}": mrr_at_k(rankings, relevant, MRR_K),
        f"recall@{RECALL_K}": recall_at_k(rankings, relevant, RECALL_K),
    }
