"""The hybrid (tasks/evaluate/fusion.py): the weight fitted on dev, per-query min-max normalization,
and rankings equal to sorting every document's fused score (computed here with numpy, BM25 by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refinery.tasks.evaluate.fusion import (
    WEIGHT_GRID, choose_weight, dev_split_missing, fit_weight, fuse, hybrid_rankings, normalize,
)
from refinery.tasks.evaluate.retrieval import Bm25Index, dense_rankings

RANK2 = 1 / math.log2(3)  # nDCG@10 of one relevant document ranked second


def _raw(normalized: list[float], low: float, span: float) -> list[float]:
    """Scores on a system's own scale that min-max normalize to ``normalized`` (which spans 0..1)."""
    return [low + span * v for v in normalized]


# Three dev queries over three candidates, each with one relevant candidate. On the normalized
# scale, query 0 (relevant: 0) needs w < 0.55 / 1.25 = 0.44 (dense puts candidate 1 first), query 1
# (relevant: 1) needs w > 1/3 (BM25 puts candidate 0 first); query 2 has no BM25 match at all (every
# BM25 score 0) and needs w > 0. So BM25 alone (w = 0) misses queries 1 and 2, the tuned model alone
# (w = 1) misses query 0, and exactly w in {0.35, 0.40} of the grid answers all three first.
DENSE = np.array([_raw([0.3, 1.0, 0.0], 0.12, 0.5),    # query 0
                  _raw([0.0, 1.0, 0.2], -0.3, 0.9),    # query 1
                  _raw([0.1, 0.0, 1.0], 0.4, 0.25)])   # query 2
BM25 = np.array([_raw([1.0, 0.45, 0.0], 0.0, 17.0),
                 _raw([1.0, 0.5, 0.0], 1.5, 6.0),
                 [0.0, 0.0, 0.0]])
RELEVANT = [{0}, {1}, {2}]


def test_the_fit_picks_the_mix_that_answers_every_dev_query():
    fit = fit_weight(DENSE, BM25, RELEVANT)
    assert fit.dev_queries == 3 and set(fit.dev) == set(WEIGHT_GRID)
    # BM25 alone: query 1 second, query 2 (all BM25 scores 0: index order) third
    assert fit.dev[0.0] == pytest.approx((1 + RANK2 + 1 / math.log2(4)) / 3)
    assert fit.dev[1.0] == pytest.approx((RANK2 + 1 + 1) / 3)      # tuned alone: query 0 second
    winners = {w for w, v in fit.dev.items() if v == pytest.approx(1.0)}
    assert winners == {0.35, 0.4}
    # ties go to the weight nearest 0.5
    assert fit.weight == 0.4
    assert fit.as_stats()["weight"] == 0.4 and fit.as_stats()["dev_ndcg@10"] == pytest.approx(1.0)


def test_ties_go_to_the_weight_nearest_an_even_mix_then_the_lower():
    grid = (0.0, 0.25, 0.5, 0.75, 1.0)
    assert choose_weight(np.array([[1, 0, 0, 0, 1]]), grid) == 0.0  # 0 and 1 are as far from 0.5
    assert choose_weight(np.array([[1, 1, 0, 1, 1]]), grid) == 0.25
    assert choose_weight(np.array([[0, 1, 1, 1, 0]]), grid) == 0.5
    assert choose_weight(np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0.5]]), grid) == 1.0


def test_the_fit_does_not_move_with_anything_but_the_dev_scores():
    # the same dev split scored on other scales (as another pool's BM25 statistics or a shifted
    # cosine would put it) gives the same weight: only each query's normalized scores count
    again = fit_weight(DENSE * 3.0 - 1.0, BM25 * 0.1 + 4.0, RELEVANT)
    assert again.weight == fit_weight(DENSE, BM25, RELEVANT).weight == 0.4


def test_normalization_of_an_all_zero_row_and_of_ties():
    scores = np.array([[0.0, 0.0, 0.0], [2.0, 4.0, 4.0], [5.0, 5.0, 5.0]])
    with np.errstate(all="raise"):  # no division by zero, no NaN
        out = normalize(scores)
    assert out.tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    # an all-zero BM25 row leaves the dense side alone to rank; ties go to the lower document index
    dense = np.array([[0.2, 0.9, 0.9, 0.1]], dtype=np.float32)
    with np.errstate(all="raise"):
        ranked = hybrid_rankings(dense, np.eye(4, dtype=np.float32), lambda a, b: np.zeros((b - a, 4)), 4, 0.3)
    assert ranked.tolist() == [[1, 2, 0, 3]]
    # excluded entries set neither end and rank last
    exclude = np.array([[False, True, False]])
    assert normalize(np.array([[1.0, 100.0, 3.0]]), exclude).tolist() == [[0.0, 0.0, 1.0]]
    assert fuse(np.array([[1.0, 9.0, 3.0]]), np.array([[1.0, 9.0, 3.0]]), 0.5, exclude)[0, 1] == -np.inf
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        fuse(np.zeros((1, 2)), np.zeros((1, 2)), 1.5)


# -- rankings against brute force ---------------------------------------------------------------------

WORDS = ["amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "inlet", "juniper", "kelp", "larch"]
K1, B = 1.2, 0.75


def _bm25_by_hand(docs: list[list[str]], query: list[str]) -> np.ndarray:
    """Lucene BM25 (idf = ln(1 + (N - df + 0.5) / (df + 0.5))) of every document; any positive factor
    of the term-frequency part ranks alike after min-max normalization."""
    n = len(docs)
    lengths = np.array([len(d) for d in docs], dtype=np.float64)
    out = np.zeros(n)
    for term in query:
        tf = np.array([d.count(term) for d in docs], dtype=np.float64)
        df = (tf > 0).sum()
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        out += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths / lengths.mean()))
    return out


def _brute_force(dense: np.ndarray, lexical: np.ndarray, weight: float, k: int, own: np.ndarray | None = None):
    rows = []
    for q in range(dense.shape[0]):
        keep = np.ones(dense.shape[1], dtype=bool)
        if own is not None:
            keep[own[q]] = False
        fused = np.zeros(dense.shape[1])
        for side, w in ((dense[q].astype(np.float64), weight), (lexical[q], 1 - weight)):
            lo, hi = side[keep].min(), side[keep].max()
            fused += w * ((side - lo) / (hi - lo) if hi > lo else np.zeros_like(side))
        fused[~keep] = -np.inf
        rows.append(np.lexsort((np.arange(len(fused)), -fused))[:k])  # score descending, then index
    return np.array(rows)


@pytest.fixture(scope="module")
def random_pool():
    rng = np.random.default_rng(7)
    docs = [list(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(60)]
    queries = [list(dict.fromkeys(rng.choice(WORDS, size=rng.integers(1, 4)))) for _ in range(25)]
    queries.append(["zebra"])  # no indexed token: every BM25 score 0
    doc_emb = rng.normal(size=(len(docs), 16)).astype(np.float32)
    query_emb = rng.normal(size=(len(queries), 16)).astype(np.float32)
    return docs, queries, doc_emb, query_emb


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.65, 1.0])
def test_hybrid_rankings_equal_sorting_every_fused_score(random_pool, weight):
    docs, queries, doc_emb, query_emb = random_pool
    index = Bm25Index([" ".join(d) for d in docs], k1=K1, b=B, stopwords="none")
    texts = [" ".join(q) for q in queries]
    lexical = np.array([_bm25_by_hand(docs, q) for q in queries])
    expected = _brute_force(query_emb @ doc_emb.T, lexical, weight, 15)
    # a budget of a few rows per step: the chunks are what is checked too
    got = hybrid_rankings(query_emb, doc_emb, lambda a, b: index.scores(texts[a:b]), 15, weight, budget_bytes=4000)
    assert got.tolist() == expected.tolist()
    if weight == 1.0:  # tuned alone
        assert got.tolist() == dense_rankings(query_emb, doc_emb, 15).tolist()
    if weight == 0.0:  # BM25 alone, including the query that matches nothing (documents in index order)
        assert got.tolist() == index.top_k(texts, 15).tolist()


def test_query_by_example_leaves_its_own_document_out_of_the_normalization(random_pool):
    docs, _, doc_emb, _ = random_pool
    own = np.array([3, 10, 41, 59])
    index = Bm25Index([" ".join(d) for d in docs], k1=K1, b=B, stopwords="none")
    texts = [" ".join(docs[i]) for i in own]
    lexical = np.array([_bm25_by_hand(docs, docs[i]) for i in own])
    expected = _brute_force(doc_emb[own] @ doc_emb.T, lexical, 0.5, len(docs), own)
    got = hybrid_rankings(doc_emb[own], doc_emb, lambda a, b: index.scores(texts[a:b]), len(docs), 0.5, own=own,
                          budget_bytes=2000)
    assert got.tolist() == expected.tolist()
    assert got[:, -1].tolist() == own.tolist()  # the query's own document last


def test_why_there_is_no_dev_split(tmp_path):
    dev = tmp_path / "dev_pairs.parquet"
    assert "skipped (no corpus)" in dev_split_missing({"skipped": "no corpus"})
    assert "no model" in dev_split_missing({"dev_skipped": None})
    assert "3 dev pairs < 16" in dev_split_missing({"model_path": "m", "dev_skipped": "3 dev pairs < 16"})
    assert "no dev pairs" in dev_split_missing({"model_path": "m", "dev_pairs_path": str(dev)})
    dev.write_bytes(b"")
    assert "empty" in dev_split_missing({"model_path": "m", "dev_pairs_path": str(dev), "dev_pairs": 0})
    assert dev_split_missing({"model_path": "m", "dev_pairs_path": str(dev), "dev_pairs": 20}) is None
