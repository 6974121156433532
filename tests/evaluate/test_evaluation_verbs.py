"""The catalog's verbs for synthesize, train and evaluate (storage/evaluation.py) on a small hand-made
catalog: relevance through dedup clusters, what curation dropped, held-out pairs, pool labels and
clusters, and the writes that replace a stage's rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from refinery.storage import Catalog, write_shard

RUN = "r1"
# doc_id, record_id, title, label
DOCS = [
    ("d1", "rec1", "Alpha", "sport"),
    ("d2", "rec2", "Alpha again", "sport"),  # d1's near-duplicate: dedup dropped it, d1 survived
    ("d3", "rec3", "Beta", "tech"),          # quality dropped it, alone in no cluster
    ("d4", "rec4", None, None),
    ("d5", "rec5", "   ", "tech"),           # a blank title is no title
    ("d6", "rec6", "Gamma", None),           # dedup dropped it; its cluster mate d7 survived
    ("d7", "rec7", "Gamma two", "business"),
]
CLUSTERS = [("c1", "d1", True), ("c1", "d2", False), ("c2", "d6", False), ("c2", "d7", True)]
DROPS = [("d2", "dedup", "near_duplicate"), ("d6", "dedup", "near_duplicate"), ("d3", "quality", "gopher")]
# query, doc_id, kept, split
PAIRS = [("what is gamma", "d6", True, "heldout"), ("what is gamma", "d6", True, "heldout"),
         ("alpha facts", "d1", True, "heldout"), ("beta rejected", "d3", False, "heldout"),
         ("alpha trained", "d1", True, "train")]


@pytest.fixture
def catalog(tmp_path):
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    documents = pa.table({"doc_id": [d[0] for d in DOCS], "record_id": [d[1] for d in DOCS],
                          "title": pa.array([d[2] for d in DOCS], pa.string()),
                          "label": pa.array([d[3] for d in DOCS], pa.string()),
                          "text": [f"text of {d[0]}" for d in DOCS], "source": ["s"] * len(DOCS)})
    catalog.replace("documents", RUN, parquet=[write_shard(documents, tmp_path / "documents.parquet")])
    catalog.replace("dedup_clusters", RUN, rows=pa.table({
        "cluster_id": [c[0] for c in CLUSTERS], "doc_id": [c[1] for c in CLUSTERS],
        "is_survivor": [c[2] for c in CLUSTERS], "kind": ["near"] * len(CLUSTERS)}))
    catalog.replace("drops", RUN, rows=pa.table({"doc_id": [d[0] for d in DROPS], "stage": [d[1] for d in DROPS],
                                                 "reason": [d[2] for d in DROPS]}))
    pairs = pa.table({"pair_id": [f"p{i}" for i in range(len(PAIRS))], "query": [p[0] for p in PAIRS],
                      "doc_id": [p[1] for p in PAIRS], "kept": [p[2] for p in PAIRS], "split": [p[3] for p in PAIRS]})
    assert catalog.put_pairs(RUN, [write_shard(pairs, tmp_path / "pairs.parquet")]) == len(PAIRS)
    return catalog


def test_headline_queries_are_titles_whose_cluster_the_corpus_kept(catalog):
    got = catalog.headline_queries(RUN, seed=0, max_queries=100).to_pylist()
    # d2's and d6's titles stay queries (their kept cluster mates answer them); Beta's document was
    # dropped and is in no cluster: nothing answers it
    assert got == [{"query": "Alpha", "relevant": ["d1"], "in_source": 4},
                   {"query": "Alpha again", "relevant": ["d1"], "in_source": 4},
                   {"query": "Gamma", "relevant": ["d7"], "in_source": 4},
                   {"query": "Gamma two", "relevant": ["d7"], "in_source": 4}]
    assert catalog.has_titled_documents(RUN) and not catalog.has_titled_documents("another run")


def test_a_headline_sample_is_seeded_and_counts_what_it_sampled_from(catalog):
    two = catalog.headline_queries(RUN, seed=0, max_queries=2).to_pylist()
    assert len(two) == 2 and {r["in_source"] for r in two} == {4}
    assert catalog.headline_queries(RUN, seed=0, max_queries=2).to_pylist() == two
    assert {r["query"] for r in two} < {"Alpha", "Alpha again", "Gamma", "Gamma two"}


def test_heldout_queries_are_the_kept_heldout_pairs_once_each(catalog):
    got = catalog.heldout_queries(RUN, seed=0, max_queries=100).to_pylist()
    assert got == [{"query": "alpha facts", "relevant": ["d1"], "in_source": 2},
                   {"query": "what is gamma", "relevant": ["d7"], "in_source": 2}]
    assert catalog.heldout_cuts(RUN).to_pylist() == [{"doc_id": "d1", "query": "alpha facts"},
                                                     {"doc_id": "d6", "query": "what is gamma"}]


def test_user_relevance_matches_record_ids_through_the_clusters(catalog):
    judged = [("q1", "rec2"), ("q2", "rec3"), ("q3", "not-a-record"), ("q4", "rec1"), ("q4", "rec6")]
    got = catalog.user_relevance(RUN, [q for q, _ in judged], [r for _, r in judged], None)
    # q1: d2 was dropped, its cluster kept d1; q2: d3 was dropped with no cluster to answer for it;
    # q3 matches no ingested record (absent)
    assert got == {"q1": ["d1"], "q2": [], "q4": ["d1", "d7"]}
    assert catalog.user_relevance(RUN, ["q1"], ["rec2"], "another source") == {}


def test_pool_labels_and_the_clusters_shared_within_the_pool(catalog):
    pool = ["d6", "d1", "d2", "d4"]
    assert catalog.pool_labels(RUN, pool).to_pylist() == [
        {"doc_id": "d1", "label": "sport"}, {"doc_id": "d2", "label": "sport"},
        {"doc_id": "d4", "label": None}, {"doc_id": "d6", "label": None}]
    # d6's cluster mate d7 is not in the pool: no cluster to share
    assert catalog.pool_clusters(RUN, pool) == {"d1": "c1", "d2": "c1"}


def test_put_metrics_replaces_one_stage_of_one_run(catalog):
    catalog.put_metrics(RUN, "train", [("tuned", "train_loss", "last", 0.5)])
    catalog.put_metrics("r2", "evaluate", [("base", "headline", "ndcg@10", 0.75)])
    assert catalog.put_metrics(RUN, "evaluate", [("base", "headline", "ndcg@10", 0.25),
                                                 ("queries", "headline", "scored", 3)]) == 2
    assert catalog.put_metrics(RUN, "evaluate", [("bm25", "headline", "ndcg@10", 1)]) == 1
    rows = catalog.query("SELECT * FROM metrics ORDER BY run_id, stage").to_pylist()
    assert rows == [
        {"run_id": RUN, "stage": "evaluate", "model": "bm25", "task": "headline", "metric": "ndcg@10", "value": 1.0},
        {"run_id": RUN, "stage": "train", "model": "tuned", "task": "train_loss", "metric": "last", "value": 0.5},
        {"run_id": "r2", "stage": "evaluate", "model": "base", "task": "headline", "metric": "ndcg@10", "value": 0.75}]
    catalog.put_metrics(RUN, "train", [])
    assert catalog.query("SELECT count(*) AS n FROM metrics WHERE run_id = ?", [RUN]).to_pylist() == [{"n": 1}]


def test_put_model_records_and_forgets_a_model(catalog):
    catalog.put_model(RUN, "tuned", "/models/tuned", base="all-MiniLM-L6-v2")
    catalog.put_model(RUN, "tuned", "/models/tuned-2", base="all-MiniLM-L6-v2")
    rows = catalog.query("SELECT name, path, base FROM models WHERE run_id = ?", [RUN]).to_pylist()
    assert rows == [{"name": "tuned", "path": "/models/tuned-2", "base": "all-MiniLM-L6-v2"}]
    catalog.put_model(RUN, "tuned")
    assert catalog.query("SELECT count(*) AS n FROM models").to_pylist() == [{"n": 0}]


def test_a_datasets_evaluation_sets_are_frozen_once_by_the_first_night(catalog, tmp_path):
    first = write_shard(pa.table({"query": ["Alpha", "Gamma"], "relevant": [["d1"], ["d7", "d6"]]}),
                        tmp_path / "night1-queries.parquet")
    later = write_shard(pa.table({"query": ["Beta"], "relevant": [["d3"]]}), tmp_path / "night2-queries.parquet")
    assert catalog.frozen_tasks("news") == {}
    assert catalog.freeze_queries("news", "headline", "night1", first)
    assert not catalog.freeze_queries("news", "headline", "night2", later)  # a later night changes nothing
    assert catalog.freeze_queries("other", "headline", "night2", later)  # each dataset has its own
    assert catalog.frozen_tasks("news") == {"headline": {"queries": 2, "frozen_by": "night1"}}
    rows = catalog.query("SELECT query, doc_id FROM evaluation_sets WHERE dataset = 'news' ORDER BY ALL").to_pylist()
    assert [(r["query"], r["doc_id"]) for r in rows] == [("Alpha", "d1"), ("Gamma", "d6"), ("Gamma", "d7")]


def test_frozen_heldout_queries_keep_their_passage_and_only_kept_heldout_pairs(catalog, tmp_path):
    pairs = write_shard(pa.table({
        "query": ["what is gamma", "alpha facts", "beta rejected", "alpha trained"],
        "doc_id": ["d6", "d1", "d3", "d1"], "positive": ["gamma text", "alpha text", "beta text", "alpha text"],
        "kept": [True, True, False, True], "split": ["heldout", "heldout", "heldout", "train"]}),
        tmp_path / "pairs-night1.parquet")
    assert catalog.freeze_heldout("news", "night1", pairs)
    assert not catalog.freeze_heldout("news", "night2", pairs)
    assert catalog.frozen_heldout("news").to_pylist() == [
        {"doc_id": "d1", "query": "alpha facts", "passage": "alpha text"},
        {"doc_id": "d6", "query": "what is gamma", "passage": "gamma text"}]
    assert catalog.frozen_tasks("news") == {"synthetic_heldout": {"queries": 2, "frozen_by": "night1"}}
