"""Ranking metrics per query and on average, dense and BM25 rankings (tasks/evaluate/retrieval.py), and
the same-label task's queries and hits (tasks/evaluate/labels.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refinery.tasks.evaluate.config import EvaluateConfig
from refinery.tasks.evaluate.labels import NO_LABELS, ONE_LABEL, label_codes, label_hits, label_queries, skip_reason
from refinery.tasks.evaluate.retrieval import (
    RANKING_DEPTH,
    Bm25Index,
    dense_rankings,
    evaluate_rankings,
    mean_metrics,
    mrr_scores,
    ndcg_scores,
    per_query_metrics,
    recall_scores,
    relevance_hits,
    top_k_indices,
    without_self,
)


def bm25(docs, **options) -> Bm25Index:
    """A BM25 index with evaluate's default options, and ``options`` over them."""
    cfg = EvaluateConfig()
    return Bm25Index(docs, **{"k1": cfg.bm25_k1, "b": cfg.bm25_b, "stopwords": cfg.bm25_stopwords, **options})


def scores(rankings, relevant) -> dict[str, list[float]]:
    """Per-query metrics as the evaluate stage computes them (rankings of RANKING_DEPTH)."""
    return {name: v.tolist() for name, v in per_query_metrics(*relevance_hits(rankings, relevant)).items()}


def test_single_relevant_at_rank_3():
    got = scores([[7, 8, 5, 9]], [{5}])
    assert got["mrr@10"] == pytest.approx([1 / 3])
    # DCG = 1/log2(3+1), ideal DCG = 1/log2(2) = 1
    assert got["ndcg@10"] == pytest.approx([1 / math.log2(4)])
    assert got["recall@100"] == [1.0]


def test_beyond_the_cutoff_it_counts_for_nothing():
    # rank 11: outside nDCG@10 and MRR@10, inside Recall@100
    assert scores([[*range(10, 20), 5]], [{5}]) == {"ndcg@10": [0.0], "mrr@10": [0.0], "recall@100": [1.0]}
    # rank 101: outside every cutoff
    assert scores([[*range(1000, 1100), 5]], [{5}]) == {"ndcg@10": [0.0], "mrr@10": [0.0], "recall@100": [0.0]}


def test_several_relevant_documents():
    # Relevant docs 1 and 4 (a dedup cluster) found at ranks 1 and 3; doc 6 is relevant but missing.
    got = scores([[1, 0, 4, 2]], [{1, 4, 6}])
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@10"] == pytest.approx([dcg / idcg])
    assert got["mrr@10"] == [1.0]
    assert got["recall@100"] == pytest.approx([2 / 3])


def test_metrics_average_over_queries_and_perfect_is_one():
    rankings = np.array([[0, 1, 2], [0, 1, 2]])
    relevant = [{0}, {1}]
    assert evaluate_rankings(rankings, relevant)["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    perfect = evaluate_rankings([[3], [2]], [{3}, {2}])
    assert perfect == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0}


def test_metrics_reject_inconsistent_input():
    with pytest.raises(ValueError, match="2 relevance sets"):
        relevance_hits([[0, 1]], [{0}, {1}])
    with pytest.raises(ValueError, match="at least one relevant"):
        relevance_hits([[0, 1]], [set()])
    with pytest.raises(ValueError, match="no queries"):
        relevance_hits([], [])


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


def test_top_k_indices_keeps_the_lowest_indices_of_a_tie_at_the_cut():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, size=(40, 60)).astype(np.float32)  # many ties at every cut
    for k in (1, 5, 17, 59, 60):
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        assert np.array_equal(top_k_indices(scores, k), expected)


def test_bm25_ranks_exact_word_match_first(bbc_articles):
    bodies = [body for _, body in bbc_articles]
    # One rare word from a chosen article, and a sentence copied from another.
    queries = ["TimeWarner AOL", bodies[4].split(".")[0]]
    ranks = bm25(bodies).top_k(queries, RANKING_DEPTH)
    assert ranks.shape == (2, len(bodies))
    assert ranks[0, 0] == 0
    assert ranks[1, 0] == 4


def test_bm25_query_without_known_words_does_not_fail(bbc_articles):
    bodies = [body for _, body in bbc_articles]
    ranks = bm25(bodies).top_k(["the of and", "zzzqqq"], 5)
    assert ranks.shape == (2, 5)


def _exhaustive_bm25(queries, docs, k, **options):
    """The ranking BM25 gave before top-k retrieval: every document scored, then sorted."""
    import bm25s

    sw = "en" if options.get("stopwords", "english") == "english" else None
    index = bm25s.BM25(k1=options.get("k1", 1.5), b=options.get("b", 0.75))
    index.index(bm25s.tokenize(list(docs), stopwords=sw, return_ids=False, show_progress=False), show_progress=False)
    scores = np.zeros((len(queries), len(docs)), dtype=np.float32)
    for qi, tokens in enumerate(bm25s.tokenize(list(queries), stopwords=sw, return_ids=False, show_progress=False)):
        known = [t for t in tokens if t in index.vocab_dict]
        if known:
            scores[qi] = index.get_scores(known)
    return top_k_indices(scores, k)


@pytest.mark.parametrize("k", [1, 3, 7, 20, 100])
def test_bm25_top_k_equals_the_exhaustive_ranking(bbc_articles, k):
    bodies = [body for _, body in bbc_articles]
    # exact copies tie with their original at every score; short documents tie at zero for most queries
    docs = bodies + bodies[:3] + ["Shares rose.", "Shares fell.", "The match was drawn.", "Nothing here."]
    queries = [headline for headline, _ in bbc_articles] + [
        "shares", "match", "zzzqqq unknown", "the of and", bodies[5].split(".")[0], "profits shares match"]
    got = bm25(docs).top_k(queries, k)
    assert np.array_equal(got, _exhaustive_bm25(queries, docs, k))
    assert got.shape == (len(queries), min(k, len(docs)))


def test_bm25_options_reach_the_index(bbc_articles):
    bodies = [body for _, body in bbc_articles]
    queries = ["the company said", "a game of the season"]
    for options in ({"stopwords": "none"}, {"k1": 0.9, "b": 0.4}):
        got = bm25(bodies, **options).top_k(queries, 5)
        assert np.array_equal(got, _exhaustive_bm25(queries, bodies, 5, **options))


@pytest.mark.parametrize("budget", [4, 4 * 37, 1 << 20])
def test_dense_chunked_top_k_equals_the_exhaustive_ranking(budget):
    # small integers: every dot product is exact in float32, so any chunking sees the same scores
    rng = np.random.default_rng(1)
    docs = rng.integers(-3, 4, size=(37, 8)).astype(np.float32)
    docs[5] = docs[9] = docs[30]  # ties: the lower index first in every chunking, also at the cut
    queries = rng.integers(-3, 4, size=(23, 8)).astype(np.float32)
    queries[3] = docs[9]
    expected = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :10]
    got = dense_rankings(queries, docs, 10, budget_bytes=budget)
    assert np.array_equal(got, expected)
    row = got[3].tolist()
    assert row[row.index(5) : row.index(5) + 3] == [5, 9, 30]


def _slow_ndcg(ranking, rel, k):
    """nDCG@k of one query, written out."""
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranking[:k]) if d in rel)
    return dcg / sum(1 / math.log2(i + 2) for i in range(min(len(rel), k)))


def test_per_query_metrics_are_the_values_the_means_average():
    rng = np.random.default_rng(3)
    rankings = np.array([rng.permutation(150)[:RANKING_DEPTH] for _ in range(40)])
    relevant = [set(rng.choice(150, size=rng.integers(1, 30), replace=False).tolist()) for _ in range(40)]
    hits, n_relevant = relevance_hits(rankings, relevant)
    per_query = per_query_metrics(hits, n_relevant)
    assert per_query["ndcg@10"] == pytest.approx([_slow_ndcg(list(r), rel, 10) for r, rel in zip(rankings, relevant)])
    for q in (0, 7, 39):
        one = evaluate_rankings(rankings[q : q + 1], relevant[q : q + 1])
        assert {name: v[q] for name, v in per_query.items()} == pytest.approx(one)
    assert mean_metrics(per_query) == pytest.approx(evaluate_rankings(rankings, relevant))
    assert mean_metrics(per_query)["ndcg@10"] == pytest.approx(
        np.mean([_slow_ndcg(list(r), rel, 10) for r, rel in zip(rankings, relevant)]))


def test_hits_of_short_rankings_are_padded_with_misses():
    hits, n = relevance_hits([[4, 2], [1]], [{2}, {1, 3}], depth=4)
    assert hits.tolist() == [[False, True, False, False], [True, False, False, False]]
    assert n.tolist() == [1, 2]
    assert mrr_scores(hits, n, 10).tolist() == [0.5, 1.0]
    assert recall_scores(hits, n, 10).tolist() == [1.0, 0.5]
    assert ndcg_scores(hits, n, 10) == pytest.approx([1 / math.log2(3), 1 / (1 + 1 / math.log2(3))])


def test_without_self_drops_the_query_document_and_keeps_the_order():
    rankings = np.array([[3, 0, 5, 1], [2, 4, 3, 0], [7, 8, 9, 6]])
    assert without_self(rankings, np.array([3, 3, 0]), 3).tolist() == [[0, 5, 1], [2, 4, 0], [7, 8, 9]]
    # a ranking of the whole pool loses one column: the query document is never ranked for itself
    full = np.array([[1, 0, 2], [0, 2, 1]])
    assert without_self(full, np.array([0, 2]), 100).tolist() == [[1, 2], [0, 1]]


def test_label_hits_count_the_other_documents_of_the_label():
    #          doc: 0    1    2    3     4    5
    codes = label_codes(["a", "b", "a", None, "a", "b"])
    assert codes.tolist() == [0, 1, 0, -1, 0, 1]
    queries = np.array([0, 5])
    rankings = without_self(np.array([[0, 3, 2, 1, 4, 5], [5, 1, 0, 2, 3, 4]]), queries, 100)
    hits, n_relevant = label_hits(rankings, codes, queries)
    assert hits.tolist() == [[False, True, False, True, False], [True, False, False, False, False]]
    assert n_relevant.tolist() == [2, 1]  # 'a' has 3 documents, 'b' 2: the query itself is not relevant
    assert per_query_metrics(hits, n_relevant)["recall@100"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="needs a label"):
        label_hits(rankings[:1], codes, np.array([3]))


def test_label_queries_are_a_seeded_sample_and_count_what_is_not_scored():
    doc_ids = [f"d{i:02d}" for i in range(30)]
    labels = ["sport"] * 12 + ["tech"] * 12 + ["lonely"] + [None, "", " "] + ["politics"] * 2
    queries, counts = label_queries(doc_ids, labels, max_queries=100, seed=0)
    assert counts == {"in_source": 27, "sampled": 27, "scored": 26, "alone_in_label": 1, "unlabelled": 3}
    assert "d24" not in queries and set(queries) <= {d for d, lab in zip(doc_ids, labels) if lab and lab.strip()}
    few, counts = label_queries(doc_ids, labels, max_queries=10, seed=0)
    assert counts["sampled"] == 10 and set(few) <= set(queries)
    assert label_queries(doc_ids, labels, max_queries=10, seed=0)[0] == few
    assert label_queries(list(reversed(doc_ids)), list(reversed(labels)), max_queries=10, seed=0)[0] == few
    assert label_queries(doc_ids, labels, max_queries=10, seed=1)[0] != few


def test_the_label_task_is_skipped_without_two_labels():
    assert skip_reason([None, "", None]) == NO_LABELS
    assert skip_reason(["sport", None, "sport"]) == ONE_LABEL
    assert skip_reason(["sport", "tech"]) is None
