"""Rank documents for queries (dense and BM25) and score rankings with nDCG, MRR and recall.

A ranking is a row of document indices, best first. Relevance is binary: ``relevant[q]`` is the
set of document indices that answer query ``q`` (for Refinery, every member of the dedup cluster
of the article the headline came from).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

NDCG_K = 10
MRR_K = 10
RECALL_K = 100
# Largest cutoff evaluate_rankings needs, so callers know how deep to rank.
RANKING_DEPTH = max(NDCG_K, MRR_K, RECALL_K)
# Bytes of float32 scores one dense step may hold (query rows x documents): 64 MiB is 1,600 query
# rows against 10,000 documents, or 16 against a million, so memory stays flat whatever the sizes.
SCORE_CHUNK_BYTES = 64 << 20

Rankings = np.ndarray | Sequence[Sequence[int]]


def rows_per_chunk(n_docs: int, budget_bytes: int = SCORE_CHUNK_BYTES) -> int:
    """Query rows whose float32 scores against ``n_docs`` documents fit in ``budget_bytes`` (at least 1)."""
    return max(1, budget_bytes // (4 * max(n_docs, 1)))


def dense_rankings(
    query_emb: np.ndarray, doc_emb: np.ndarray, k: int, *, budget_bytes: int = SCORE_CHUNK_BYTES
) -> np.ndarray:
    """Top-``k`` document indices per query by dot product, best first.

    With L2-normalised embeddings (as :func:`tasks.embedding.encode` returns) this is cosine
    similarity. Returns an int64 array of shape ``(n_queries, min(k, n_docs))``; ties go to the
    lower document index. Queries are scored in chunks of at most ``budget_bytes`` of scores, so
    no queries x documents matrix is ever held.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    query_emb = np.asarray(query_emb, dtype=np.float32)
    doc_emb = np.asarray(doc_emb, dtype=np.float32)
    depth = min(k, doc_emb.shape[0])
    out = np.empty((query_emb.shape[0], depth), dtype=np.int64)
    step = rows_per_chunk(doc_emb.shape[0], budget_bytes)
    for start in range(0, query_emb.shape[0], step):
        scores = query_emb[start : start + step] @ doc_emb.T
        out[start : start + step] = top_k_indices(scores, depth)
    return out


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row, best first, ties to the lower index.

    Also at the cut: of documents tied with the ``k``-th score, the lowest-indexed ones are kept.
    """
    n = scores.shape[1]
    k = min(k, n)
    if k < n:
        # argpartition keeps this O(n) per row; it finds the k-th score, then the kept set is every
        # score above it plus the lowest-indexed ones equal to it (argpartition alone picks any).
        kth = np.take_along_axis(scores, np.argpartition(-scores, k - 1, axis=1)[:, k - 1 : k], axis=1)
        above = scores > kth
        tied = scores == kth
        keep = above | (tied & (np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)))
        part = np.nonzero(keep)[1].reshape(scores.shape[0], k)  # row-major: index order per row
    else:
        part = np.tile(np.arange(n), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


class Bm25Index:
    """BM25 (Lucene variant, via ``bm25s``) over a fixed list of documents; top-k per query.

    Text is lower-cased and split into word tokens of two or more characters; English stopwords
    are dropped (``stopwords="none"`` keeps them). No stemming: no stemmer ships offline with the
    project. Rankings are exactly those of scoring every document and sorting (ties to the lower
    document index), but bm25s's ``retrieve`` does the top-k, one query's scores at a time.
    ``k1``, ``b`` and ``stopwords`` are ``evaluate.bm25_k1``, ``bm25_b`` and ``bm25_stopwords``.
    """

    def __init__(self, docs: Sequence[str], *, k1: float, b: float, stopwords: Literal["english", "none"]):
        import bm25s

        self._stopwords = "en" if stopwords == "english" else None
        self._index = bm25s.BM25(k1=k1, b=b)
        self._index.index(self._tokenize(docs), show_progress=False)
        self.n_docs = len(docs)

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(list(texts), stopwords=self._stopwords, return_ids=False, show_progress=False)

    def top_k(self, queries: Sequence[str], k: int) -> np.ndarray:
        """``(n_queries, min(k, n_docs))`` document indices, best first.

        A query with no indexable token scores every document 0 and gets documents in index order.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        depth = min(k, self.n_docs)
        tokens = self._tokenize(queries)
        out = np.empty((len(queries), depth), dtype=np.int64)
        if not len(queries):
            return out
        # One more than needed: when the extra score is below the last kept one, the top `depth`
        # is exactly the set of documents scoring at least that much, whatever bm25s's tie order.
        wide = min(depth + 1, self.n_docs)
        docs, scores = self._index.retrieve(tokens, k=wide, sorted=True, show_progress=False, n_threads=0,
                                            backend_selection="numpy")
        for q in range(len(queries)):
            out[q] = self._exact_top(tokens[q], docs[q], scores[q], depth)
        return out

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Every document's BM25 score for each query: ``(n_queries, n_docs)`` float32 (what the
        hybrid fuses; callers pass a chunk of queries at a time). A query with no indexed token scores 0."""
        out = np.zeros((len(queries), self.n_docs), dtype=np.float32)
        for q, tokens in enumerate(self._tokenize(queries) if len(queries) else []):
            if self._index.get_tokens_ids(tokens):
                out[q] = self._index.get_scores(tokens)
        return out

    def _exact_top(self, tokens: list[str], docs: np.ndarray, scores: np.ndarray, depth: int) -> np.ndarray:
        order = np.lexsort((docs, -scores))  # score descending, then document index
        docs, scores = docs[order], scores[order]
        if len(docs) == depth or scores[depth] < scores[depth - 1]:
            return docs[:depth]
        last = scores[depth - 1]
        above = docs[scores > last]
        need = depth - len(above)
        if last == 0:
            # BM25's idf is positive, so a score of 0 means the document has none of the query's
            # tokens: the tied documents are the lowest-indexed ones without any of them.
            tied = np.setdiff1d(np.arange(self.n_docs), self._matching(tokens), assume_unique=True)[:need]
        else:  # a positive tie across the cut (equal documents): score this one query in full
            full = self._index.get_scores(tokens) if tokens else np.zeros(self.n_docs, dtype=np.float32)
            tied = np.flatnonzero(full == last)[:need]
        return np.concatenate([above, tied]).astype(np.int64)

    def _matching(self, tokens: list[str]) -> np.ndarray:
        """Indices of the documents holding at least one of ``tokens``."""
        ids = self._index.get_tokens_ids(tokens)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        indptr, indices = self._index.scores["indptr"], self._index.scores["indices"]
        return np.unique(np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in ids]).astype(np.int64))


def _check(rankings: Rankings, relevant: Sequence[set[int]], k: int) -> None:
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevance sets")
    if len(rankings) == 0:
        raise ValueError("no queries to score")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if any(len(rel) == 0 for rel in relevant):
        raise ValueError("every query needs at least one relevant document")


def relevance_hits(rankings: Rankings, relevant: Sequence[set[int]], depth: int = RANKING_DEPTH
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, n_relevant)``: ``hits[q, i]`` says whether the ``i``-th document ranked for query
    ``q`` is relevant (a ranking shorter than ``depth`` is padded with misses), ``n_relevant[q]``
    how many documents are relevant to it. What every metric below is computed from."""
    _check(rankings, relevant, depth)
    hits = np.zeros((len(relevant), depth), dtype=bool)
    for q, (ranking, rel) in enumerate(zip(rankings, relevant)):
        row = [int(doc) in rel for doc in list(ranking)[:depth]]
        hits[q, : len(row)] = row
    return hits, np.array([len(rel) for rel in relevant], dtype=np.int64)


def _check_hits(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if hits.ndim != 2 or hits.shape[0] != len(n_relevant) or not len(n_relevant):
        raise ValueError(f"hits of shape {hits.shape} do not match {len(n_relevant)} queries")
    if (np.asarray(n_relevant) < 1).any():
        raise ValueError("every query needs at least one relevant document")
    return hits[:, :k]


def ndcg_scores(hits: np.ndarray, n_relevant: np.ndarray, k: int = NDCG_K) -> np.ndarray:
    """Per-query binary nDCG@k: gains ``1/log2(rank+1)`` over the ideal ranking of all relevant docs."""
    top = _check_hits(hits, n_relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return (top * discounts[: top.shape[1]]).sum(axis=1) / ideal


def mrr_scores(hits: np.ndarray, n_relevant: np.ndarray, k: int = MRR_K) -> np.ndarray:
    """Per-query reciprocal rank of the first relevant document within the top ``k`` (0 if none)."""
    top = _check_hits(hits, n_relevant, k)
    return np.where(top.any(axis=1), 1.0 / (top.argmax(axis=1) + 1), 0.0)


def recall_scores(hits: np.ndarray, n_relevant: np.ndarray, k: int = RECALL_K) -> np.ndarray:
    """Per-query fraction of the relevant documents found in the top ``k``."""
    top = _check_hits(hits, n_relevant, k)
    return top.sum(axis=1) / np.asarray(n_relevant, dtype=np.float64)


def per_query_metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """The three headline metrics per query, keyed as the ``metrics`` table names them; their
    means are the figures, and the per-query values what the bootstrap resamples."""
    return {
        f"ndcg@{NDCG_K}": ndcg_scores(hits, n_relevant, NDCG_K),
        f"mrr@{MRR_K}": mrr_scores(hits, n_relevant, MRR_K),
        f"recall@{RECALL_K}": recall_scores(hits, n_relevant, RECALL_K),
    }


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """The figures of :func:`per_query_metrics`: each metric's mean over the queries."""
    return {name: float(values.mean()) for name, values in per_query.items()}


def evaluate_rankings(rankings: Rankings, relevant: Sequence[set[int]]) -> dict[str, float]:
    """The three headline metrics, keyed as the ``metrics`` table names them.

    Rankings should be at least :data:`RANKING_DEPTH` (100) deep; shorter ones are scored as if
    every missing position were irrelevant.
    """
    return mean_metrics(per_query_metrics(*relevance_hits(rankings, relevant)))


def without_self(rankings: np.ndarray, own: np.ndarray, depth: int) -> np.ndarray:
    """Rankings of query-by-example: row ``q`` without document ``own[q]`` (the query itself),
    one column narrower, at most ``depth``. Rank ``depth + 1`` documents (or all of them) so that
    ``depth`` (all the others) remain."""
    rankings = np.asarray(rankings, dtype=np.int64)
    keep = rankings != np.asarray(own, dtype=np.int64)[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")  # the kept documents first, in rank order
    return np.take_along_axis(rankings, order, axis=1)[:, : min(depth, rankings.shape[1] - 1)]
