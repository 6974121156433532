"""Ranking metrics, dense and BM25 rankings (tasks/evaluate/retrieval.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refinery.tasks.evaluate.retrieval import (
    RANKING_DEPTH,
    bm25_rankings,
    cluster_relevance,
    dense_rankings,
    evaluate_rankings,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    top_k_indices,
)


def test_single_relevant_at_rank_3():
    rankings = [[7, 8, 5, 9]]
    relevant = [{5}]
    assert mrr_at_k(rankings, relevant, 10) == pytest.approx(1 / 3)
    # DCG = 1/log2(3+1), ideal DCG = 1/log2(2) = 1
    assert ndcg_at_k(rankings, relevant, 10) == pytest.approx(1 / math.log2(4))
    assert recall_at_k(rankings, relevant, 10) == 1.0
    # Outside the cutoff it counts for nothing.
    assert mrr_at_k(rankings, relevant, 2) == 0.0
    assert ndcg_at_k(rankings, relevant, 2) == 0.0
    assert recall_at_k(rankings, relevant, 2) == 0.0


def test_several_relevant_documents():
    # Relevant docs 1 and 4 (a dedup cluster) found at ranks 1 and 3; doc 6 is relevant but missing.
    rankings = [[1, 0, 4, 2]]
    relevant = [{1, 4, 6}]
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(rankings, relevant, 10) == pytest.approx(dcg / idcg)
    assert mrr_at_k(rankings, relevant, 10) == 1.0
    assert recall_at_k(rankings, relevant, 10) == pytest.approx(2 / 3)


def test_metrics_average_over_queries_and_perfect_is_one():
    rankings = np.array([[0, 1, 2], [0, 1, 2]])
    relevant = [{0}, {1}]
    assert mrr_at_k(rankings, relevant, 10) == pytest.approx((1 + 1 / 2) / 2)
    perfect = evaluate_rankings([[3], [2]], [{3}, {2}])
    assert perfect == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0}


def test_metrics_reject_inconsistent_input():
    with pytest.raises(ValueError):
        ndcg_at_k([[0, 1]], [{0}, {1}], 10)
    with pytest.raises(ValueError):
        mrr_at_k([[0, 1]], [set()], 10)
    with pytest.raises(ValueError):
        recall_at_k([], [], 10)


def test_cluster_relevance_makes_duplicates_relevant():
    # Docs 0 and 3 are one dedup cluster, the others are alone.
    cluster_of = ["a", "b", "c", "a"]
    assert cluster_relevance([0, 1, 3], cluster_of) == [{0, 3}, {1}, {0, 3}]


def test_dense_rankings_orders_by_similarity_and_breaks_ties_by_index():
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    queries = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    ranks = dense_rankings(queries, docs, 3)
    assert ranks.shape == (2, 3)
    assert ranks[0].tolist() == [1, 3, 2]  # docs 1 and 3 tie: lower index first
    assert ranks[1].tolist() == [0, 2, 1]
    # k beyond the collection size returns the whole ranking.
    assert dense_rankings(queries, docs, 100).shape == (2, 4)


def test_top_k_indices_matches_full_sort():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 50)).astype(np.float32)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    assert np.array_equal(top_k_indices(scores, 7), expected)


def test_bm25_ranks_exact_word_match_first(bbc_articles):
    bodies = [body for _, body in bbc_articles]
    # One rare word from a chosen article, and a sentence copied from another.
    queries = ["TimeWarner AOL", bodies[4].split(".")[0]]
    ranks = bm25_rankings(queries, bodies, RANKING_DEPTH)
    assert ranks.shape == (2, len(bodies))
    assert ranks[0, 0] == 0
    assert ranks[1, 0] == 4


def test_bm25_query_without_known_words_does_not_fail(bbc_articles):
    bodies = [body for _, body in bbc_articles]
    ranks = bm25_rankings(["the of and", "zzzqqq"], bodies, 5)
    assert ranks.shape == (2, 5)
