"""The catalog verbs the run report, the ablations and the CLI read (storage/reports.py), on a
real DuckDB file filled by hand, so every expected answer is counted here."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from refinery.storage import Catalog, write_shard


@pytest.fixture()
def catalog(tmp_path):
    cat = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    cat.start_run("r1", config={"seed": 1}, run_dir=tmp_path / "runs" / "r1")
    cat.finish_run("r1", status="completed", docs_in=10, docs_kept=5, docs_dropped=4, docs_rejected=1)
    return cat


def drops(catalog: Catalog, run_id: str, rows: list[tuple[str, str, str]]) -> None:
    catalog.replace("drops", run_id, rows=pa.table({"doc_id": [d for d, _, _ in rows], "stage": [s for _, s, _ in rows],
                                                    "reason": [r for _, _, r in rows]}))


def metrics(catalog: Catalog, run_id: str, rows: list[tuple[str, str, str, str, float]]) -> None:
    catalog.replace("metrics", run_id, rows=pa.table(dict(zip(("stage", "model", "task", "metric", "value"),
                                                              map(list, zip(*rows))))))


def test_run_record_and_stage_timings(catalog):
    record = catalog.run_record("r1")
    assert (record["status"], record["docs_in"], record["docs_kept"]) == ("completed", 10, 5)
    with pytest.raises(KeyError, match="nope"):
        catalog.run_record("nope")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    catalog.record_stage("r1", "dedup", status="completed", started_at=start + timedelta(seconds=5), stats={})
    catalog.record_stage("r1", "ingest", status="completed", started_at=start, stats={})
    catalog.record_stage("r1", "train", status="completed", started_at=start + timedelta(seconds=9),
                         stats={"skipped": "no corpus"})
    timings = catalog.stage_timings("r1")
    assert [(t["stage"], t["skipped"]) for t in timings] == [("ingest", None), ("dedup", None), ("train", "no corpus")]
    spans = [t["seconds"] for t in timings]  # finished - started of each stage row: never negative
    assert all(span >= 0 for span in spans)


def test_drops_counted_by_stage_and_reason(catalog):
    drops(catalog, "r1", [("a", "dedup", "exact_duplicate"), ("b", "quality", "gopher_short"),
                          ("c", "quality", "gopher_short"), ("d", "quality", "langid"),
                          ("e", "quality", "c4_curly"), ("f", "dedup", "near_duplicate")])
    drops(catalog, "other", [("a", "quality", "langid")])
    assert catalog.drops_by_stage_and_reason("r1") == [
        {"stage": "dedup", "reason": "exact_duplicate", "docs": 1},
        {"stage": "dedup", "reason": "near_duplicate", "docs": 1},
        {"stage": "quality", "reason": "gopher_short", "docs": 2},
        {"stage": "quality", "reason": "c4_curly", "docs": 1},
        {"stage": "quality", "reason": "langid", "docs": 1}]
    assert catalog.drops_by_reason("r1", "quality") == [{"reason": "gopher_short", "docs": 2},
                                                     {"reason": "c4_curly", "docs": 1},
                                                     {"reason": "langid", "docs": 1}]
    assert catalog.drops_by_reason("none", "quality") == []


def test_rejects_by_reason_family_with_one_example(catalog):
    reasons = ["duplicate_id: x (first at a:1)", "duplicate_id: y (first at a:2)", "invalid_json", "duplicate_id: w"]
    catalog.replace("rejects", "r1", rows=pa.table({"source": ["s"] * 4, "location": ["l"] * 4, "reason": reasons,
                                                    "record": ["{}"] * 4}))
    assert catalog.rejects_by_reason("r1") == [
        {"reason": "duplicate_id", "records": 3, "example": "duplicate_id: w"},
        {"reason": "invalid_json", "records": 1, "example": "invalid_json"}]


def test_scored_documents_and_a_sample_that_lines_up_across_attributes(catalog, tmp_path):
    docs = [f"d{i}" for i in range(6)]
    rows = pa.table({"doc_id": docs * 2, "name": ["words"] * 6 + ["tens"] * 6,
                     "value": [float(i) for i in range(6)] + [10.0 * i for i in range(6)]})
    path = write_shard(rows, tmp_path / "attrs" / "part-0.parquet")
    catalog.replace("doc_attributes", "r1", parquet=[path], where={})
    assert catalog.scored_documents("r1") == 6
    assert catalog.scored_documents("none") == 0
    sample = catalog.attribute_sample("r1", ["words", "tens", "absent"], 4)
    assert set(sample) == {"words", "tens"}
    assert len(sample["words"]) == 4 and len(set(sample["words"])) == 4
    assert sample["tens"] == [10 * v for v in sample["words"]]  # the same documents, in the same order
    assert catalog.attribute_sample("r1", ["words"], 4) == {"words": sample["words"]}  # seeded: the same every time
    assert sorted(catalog.attribute_sample("r1", ["words"], 100)["words"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_pairs_verbs(catalog):
    catalog.replace("pairs", "r1", rows=pa.table({
        "pair_id": ["p1", "p2", "p3", "p4", "p5"], "query": ["q1", "q2", "q3", "q4", "q5"],
        "doc_id": ["d1", "d2", "d3", "d4", "d5"], "generator": ["ic", "ic", "ic", "llm", "llm"],
        "kept": [True, True, False, True, True], "rank": [1, 2, 3, 1, 1],
        "split": ["train", "heldout", "train", None, "train"]}))
    assert catalog.kept_training_pairs("r1") == 3  # p1, p4 (no split: train), p5
    assert catalog.kept_training_pairs("none") == 0
    assert catalog.pairs_by_generator("r1") == [
        {"generator": "ic", "generated": 3, "kept": 2, "held_out": 1, "keep_rate": 0.667},
        {"generator": "llm", "generated": 2, "kept": 2, "held_out": 0, "keep_rate": 1.0}]
    sample = catalog.kept_pair_sample("r1", 3)
    assert len(sample) == 3 and {s["query"] for s in sample} <= {"q1", "q2", "q4", "q5"}
    assert catalog.kept_pair_sample("r1", 3) == sample


def test_models_and_diversity(catalog):
    catalog.replace("models", "r1", rows=pa.table({"name": ["tuned"], "path": ["/m"], "base": ["minilm"]}))
    assert catalog.run_models("r1") == [{"name": "tuned", "path": "/m", "base": "minilm"}]
    metrics(catalog, "r1", [("synthesize", "llm", "all", "distinct_2", 0.123456),
                            ("synthesize", "ic", "all", "distinct_2", 0.5)])
    assert catalog.synthesis_diversity("r1") == [{"generator": "ic", "metric": "distinct_2", "value": 0.5},
                                                 {"generator": "llm", "metric": "distinct_2", "value": 0.1235}]


def test_evaluation_metrics_and_table(catalog):
    metrics(catalog, "r1", [
        ("evaluate", "tuned", "headline", "ndcg@10", 0.83), ("evaluate", "tuned", "headline", "mrr@10", 0.8),
        ("evaluate", "base", "headline", "ndcg@10", 0.82), ("evaluate", "bm25", "headline", "recall@100", 0.9),
        ("evaluate", "queries", "headline", "scored", 40.0), ("evaluate", "base", "mine", "ndcg@10", 0.5),
        ("synthesize", "ic", "all", "distinct_2", 0.5)])
    everything = catalog.evaluation_metrics("r1")
    assert len(everything) == 6 and {r["task"] for r in everything} == {"headline", "mine"}
    assert {(r["model"], r["metric"]) for r in catalog.evaluation_metrics("r1", "headline")} == {
        ("tuned", "ndcg@10"), ("tuned", "mrr@10"), ("base", "ndcg@10"), ("bm25", "recall@100"), ("queries", "scored")}
    assert catalog.evaluation_table("r1", "headline") == [
        {"model": "bm25", "nDCG@10": None, "MRR@10": None, "Recall@100": 0.9},
        {"model": "base", "nDCG@10": 0.82, "MRR@10": None, "Recall@100": None},
        {"model": "tuned", "nDCG@10": 0.83, "MRR@10": 0.8, "Recall@100": None}]
    # the night's comparisons in a fixed order, whatever order they were written in
    metrics(catalog, "r2", [("evaluate", m, "headline", "ndcg@10", 0.8)
                            for m in ("hybrid", "tuned", "zeta", "promoted", "alpha", "base", "bm25")])
    assert [r["model"] for r in catalog.evaluation_table("r2", "headline")] == [
        "bm25", "base", "promoted", "tuned", "hybrid", "alpha", "zeta"]


def test_recent_runs_newest_first_with_a_row_per_task(catalog, tmp_path):
    time.sleep(1.1)  # `started` is shown to the second: a later second sorts first
    catalog.start_run("r2", config={}, run_dir=tmp_path / "runs" / "r2")
    catalog.finish_run("r2", status="failed", error="x" * 100)
    metrics(catalog, "r1", [("evaluate", "tuned", "headline", "ndcg@10", 0.83),
                            ("evaluate", "base", "headline", "ndcg@10", 0.82),
                            ("evaluate", "tuned", "mine", "ndcg@10", 0.6),
                            ("evaluate", "queries", "headline", "scored", 40.0)])
    rows = catalog.recent_runs(10)
    assert [(r["run_id"], r["eval_task"]) for r in rows] == [("r2", None), ("r1", "headline"), ("r1", "mine")]
    assert rows[0]["error"] == "x" * 80 and rows[0]["status"] == "failed"
    assert (rows[1]["base_ndcg10"], rows[1]["tuned_ndcg10"], rows[1]["docs_kept"]) == (0.82, 0.83, 5)
    assert (rows[2]["base_ndcg10"], rows[2]["tuned_ndcg10"]) == (None, 0.6)
    assert [r["run_id"] for r in catalog.recent_runs(1)] == ["r2"]
