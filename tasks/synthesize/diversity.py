"""How varied a set of synthesized queries is: a few numbers to compare generators and prompts."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def query_diversity(queries: Sequence[str], query_emb: np.ndarray | None = None) -> dict[str, float]:
    """Diversity statistics of ``queries`` (lower-cased word tokens).

    Keys:
    - ``distinct_1`` / ``distinct_2``: distinct word unigrams / bigrams over all of them
      (1.0: no n-gram repeats anywhere; a generator stuck on one phrasing scores low);
    - ``unique_fraction``: share of distinct queries after lower-casing and collapsing spaces;
    - ``mean_query_words``: mean number of words per query;
    - ``mean_pairwise_cosine``: mean cosine similarity over all pairs of different queries, only
      when ``query_emb`` (L2-normalised rows, one per query) is given; high means the queries
      all say much the same thing.

    Every value is 0.0 for an empty list (and the cosine also for a single query).
    """
    tokenized = [_WORD.findall(q.lower()) for q in queries]
    stats: dict[str, float] = {}
    for n in (1, 2):
        grams = [g for words in tokenized for g in _ngrams(words, n)]
        stats[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    normalized = {" ".join(q.lower().split()) for q in queries}
    stats["unique_fraction"] = len(normalized) / len(queries) if queries else 0.0
    stats["mean_query_words"] = float(np.mean([len(w) for w in tokenized])) if tokenized else 0.0
    if query_emb is not None:
        emb = np.asarray(query_emb, dtype=np.float64)
        if emb.shape[0] != len(queries):
            raise ValueError(f"{emb.shape[0]} embeddings for {len(queries)} queries")
        n = emb.shape[0]
        if n < 2:
            stats["mean_pairwise_cosine"] = 0.0
        else:
            # For unit rows, sum over i != j of e_i.e_j = |sum e|^2 - sum |e_i|^2: O(n), not O(n^2).
            total = emb.sum(axis=0)
            self_sim = float((emb * emb).sum())
            stats["mean_pairwise_cosine"] = float((total @ total - self_sim) / (n * (n - 1)))
    return stats
