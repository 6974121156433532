"""How varied a set of synthesized queries is: a few numbers to compare generators and prompts.

A generator whose queries collapse onto a few phrasings (the "curious decline of linguistic
diversity" of text trained on model output) shows it here: low distinct-n, high self-similarity,
low embedding dispersion. Also home of the word-set helpers the near-duplicate filter shares.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")
# Queries compared pairwise for the self-similarity: a seeded sample bounds the cost (at most
# 1,000 x 999 / 2 pairs, one sparse product) whatever the number of pairs.
SELF_SIMILARITY_SAMPLE = 1000


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (runs of letters, digits and underscores)."""
    return _WORD.findall(text.lower())


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 1.0 for two empty sets."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def mean_pairwise_jaccard(word_sets: Sequence[set[str]], *, sample: int = SELF_SIMILARITY_SAMPLE,
                          seed: int = 0) -> float:
    """Mean Jaccard similarity of the word sets over all pairs of a seeded sample of ``sample`` of them
    (all when fewer); 0.0 with fewer than two. 1.0: every query uses the same words."""
    n = len(word_sets)
    if n < 2:
        return 0.0
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    sets = [word_sets[i] for i in chosen]
    vocab = {w: k for k, w in enumerate(sorted(set().union(*sets)))}
    if not vocab:
        return 1.0
    from scipy.sparse import csr_matrix

    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    cols = np.fromiter((vocab[w] for s in sets for w in s), dtype=np.int64, count=len(rows))
    x = csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(sets), len(vocab)))
    inter = (x @ x.T).toarray()
    size = np.diag(inter)
    union = size[:, None] + size[None, :] - inter
    sim = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # two empty sets are alike
    m = len(sets)
    return float((sim.sum() - np.trace(sim)) / (m * (m - 1)))


def query_diversity(queries: Sequence[str], query_emb: np.ndarray | None = None, *,
                    seed: int = 0) -> dict[str, float]:
    """Diversity statistics of ``queries`` (lower-cased word tokens).

    Keys:
    - ``distinct_1`` / ``distinct_2``: distinct word unigrams / bigrams over all n-grams of all
      queries (1.0: no n-gram repeats anywhere; a generator stuck on one phrasing scores low).
      It falls as a set grows, so compare sets of similar size;
    - ``self_jaccard``: mean word-set Jaccard similarity over pairs of different queries (a
      seeded sample of :data:`SELF_SIMILARITY_SAMPLE`; a cheap self-BLEU: high means the queries
      reuse each other's words);
    - ``unique_fraction``: share of distinct queries after lower-casing and collapsing spaces;
    - ``mean_query_words``: mean number of words per query;
    - ``embedding_dispersion``: mean cosine distance (1 - cosine) over all pairs of different
      queries, only when ``query_emb`` (L2-normalised rows, one per query) is given; low means
      the queries all say much the same thing.

    Every value is 0.0 for an empty list (the pairwise ones also for a single query).
    """
    tokenized = [words(q) for q in queries]
    stats: dict[str, float] = {}
    for n in (1, 2):
        grams = [g for tokens in tokenized for g in _ngrams(tokens, n)]
        stats[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
    stats["self_jaccard"] = mean_pairwise_jaccard([set(t) for t in tokenized], seed=seed)
    normalized = {" ".join(q.lower().split()) for q in queries}
    stats["unique_fraction"] = len(normalized) / len(queries) if queries else 0.0
    stats["mean_query_words"] = float(np.mean([len(t) for t in tokenized])) if tokenized else 0.0
    if query_emb is not None:
        emb = np.asarray(query_emb, dtype=np.float64)
        if emb.shape[0] != len(queries):
            raise ValueError(f"{emb.shape[0]} embeddings for {len(queries)} queries")
        n = emb.shape[0]
        if n < 2:
            stats["embedding_dispersion"] = 0.0
        else:
            # For unit rows, sum over i != j of e_i.e_j = |sum e|^2 - sum |e_i|^2: O(n), not O(n^2),
            # so every pair counts and nothing needs sampling.
            total = emb.sum(axis=0)
            self_sim = float((emb * emb).sum())
            stats["embedding_dispersion"] = 1.0 - float((total @ total - self_sim) / (n * (n - 1)))
    return stats


def text_diversity(texts: Sequence[str], *, seed: int = 0) -> dict[str, float]:
    """Diversity statistics of whole documents (rephrasings beside their originals: WRAP).

    Keys:
    - ``distinct_1`` / ``distinct_2`` and ``self_jaccard``: as :func:`query_diversity`'s, over
      the documents' lower-cased words;
    - ``mean_words``: mean number of words per document;
    - ``compression_ratio``: bytes of the documents (UTF-8, one per line) over bytes of their
      gzip (Shaib et al. 2024, "Standardizing the measurement of text diversity"): higher means
      more repeated text, within a document or across them.

    Every value is 0.0 for an empty list (``self_jaccard`` also for a single document).
    """
    stats = {k: v for k, v in query_diversity(texts, seed=seed).items()
             if k in ("distinct_1", "distinct_2", "self_jaccard")}
    stats["mean_words"] = float(np.mean([len(words(t)) for t in texts])) if texts else 0.0
    raw = "\n".join(texts).encode("utf-8")
    stats["compression_ratio"] = len(raw) / len(gzip.compress(raw, mtime=0)) if texts else 0.0
    return stats
