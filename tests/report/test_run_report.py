"""write_report (tasks/report/run_report.py) on a run built by hand: a run that failed after
curation dropped every document. The reports of real runs are checked in tests/flows/
(test_nightly, test_failed_run, test_corpus_shapes, test_evaluation_intervals, test_user_queries)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa

from refinery.tasks.runs import RunSpec
from refinery.storage import StageMarker
from refinery.tasks.config import RefineryConfig
from refinery.tasks.report.run_report import write_report


def test_the_report_of_a_failed_run_whose_corpus_was_empty(tmp_path, prefect_api):
    run = RunSpec(run_id="r1", home=str(tmp_path), config=RefineryConfig())
    catalog = run.catalog.ensure_schema()
    catalog.start_run("r1", config={}, run_dir=run.run_dir)
    catalog.finish_run("r1", status="failed", error="stored error", docs_in=10, docs_kept=0, docs_dropped=7,
                       docs_rejected=3)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i, stage in enumerate(("ingest", "dedup", "quality")):
        catalog.record_stage("r1", stage, status="completed", started_at=start + timedelta(seconds=i), stats={})
    drops = [("quality", "gopher_short")] * 3 + [("dedup", "exact_duplicate")] * 2 + [("quality", "c4_curly")] * 2
    catalog.replace("drops", "r1", rows=pa.table({"doc_id": [f"d{i}" for i in range(7)],
                                                  "stage": [s for s, _ in drops], "reason": [r for _, r in drops]}))
    rejects = ["invalid_json", "duplicate_id: d1 (first at a:1)", "invalid_json"]
    catalog.replace("rejects", "r1", rows=pa.table({"source": ["s"] * 3, "location": ["l"] * 3, "reason": rejects,
                                                    "record": ["{}"] * 3}))
    StageMarker(run.stage_dir("ingest")).write({"documents": 10})
    StageMarker(run.stage_dir("dedup")).write({"docs_in": 7, "exact_duplicates": 2})
    StageMarker(run.stage_dir("quality")).write({"kept": 0})

    path = write_report(run, failed_stage="synthesize", error="boom")

    assert path == run.run_dir / "report.md"
    text = path.read_text()
    assert text.startswith("# Refinery run r1\n\nStatus **failed**, started 2")
    assert "The run **failed in stage synthesize**." in text
    assert "- finished before it: ingest, dedup, quality" in text
    assert "- not finished: train, evaluate" in text
    assert "```\nboom\n```" in text and "stored error" not in text
    # every stage's drops, largest first (ties by reason), and rejected records by reason family
    assert "- dropped, by reason: gopher_short (3), c4_curly (2), exact_duplicate (2)" in text
    assert "- rejected records, by reason: invalid_json (2), duplicate_id (1)" in text
    assert "| 10 | 0 | 7 | 3 |" in text
    assert "| ingest | completed |" in text and "| quality | completed |" in text
    assert "| dedup | exact_duplicate | 2 |" in text and "| quality | gopher_short | 3 |" in text
    assert "| duplicate_id | 1 | duplicate_id: d1 (first at a:1) |" in text
    assert "## Dedup" in text and "| 7 | 2 |" in text
    assert "## Quality\n\n_(no documents scored)_" in text
    assert "## Synthesized pairs" not in text and "## Evaluation" not in text
    html = (run.run_dir / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "failed in stage synthesize" in html


def test_the_report_draws_the_training_data_map_and_counts_its_regions(tmp_path, prefect_api):
    from refinery.storage import write_shard

    run = RunSpec(run_id="r2", home=str(tmp_path), config=RefineryConfig())
    catalog = run.catalog.ensure_schema()
    catalog.start_run("r2", config={}, run_dir=run.run_dir)
    catalog.finish_run("r2", status="completed")
    regions = ["easy_to_learn"] * 5 + ["ambiguous"] * 2 + ["hard_to_learn"]
    pair_map = pa.table({"pair_id": [f"p{i}" for i in range(8)], "doc_id": [f"d{i}" for i in range(8)],
                         "confidence": [0.9] * 5 + [0.5, 0.6, 0.1], "variability": [0.05] * 5 + [0.3, 0.2, 0.02],
                         "correctness": [1.0] * 8, "checkpoints": [4] * 8, "region": regions})
    catalog.put_pair_map("r2", str(write_shard(pair_map, tmp_path / "pair_map.parquet")))
    drops = pa.table({"pair_id": ["x1", "x2"], "doc_id": ["d8", "d9"], "stage": ["train"] * 2,
                      "reason": ["cartography"] * 2, "decided_in": ["r1"] * 2})
    catalog.put_pair_drops("r2", "train", str(write_shard(drops, tmp_path / "pair_drops.parquet")))
    StageMarker(run.stage_dir("train")).write({"cartography": {"mapped": 8, "dropped": 2}})

    text = write_report(run).read_text()

    section = text.split("## Training data map\n", 1)[1].split("\n## ", 1)[0]
    assert "8 training pairs mapped" in section
    assert "| easy_to_learn | 5 |" in section and "| ambiguous | 2 |" in section and "| hard_to_learn | 1 |" in section
    assert "![data map](report_files/data_map.png)" in section
    assert (run.run_dir / "report_files" / "data_map.png").read_bytes().startswith(b"\x89PNG")
    assert "| train | cartography | r1 | 2 |" in section
    assert '<img alt="data map" src="report_files/data_map.png"' in (run.run_dir / "report.html").read_text()
