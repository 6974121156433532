"""The report's evaluation tables with the hybrid (tasks/report/run_report.py), on runs built by hand:
its column, its intervals on its own row, its weight in the summary; and a run without it."""

from __future__ import annotations

from refinery.storage import StageMarker
from refinery.tasks.config import RefineryConfig
from refinery.tasks.runs import RunSpec
from refinery.tasks.report.run_report import write_report

FIGURES = {"bm25": 0.70, "base": 0.80, "tuned": 0.85, "hybrid": 0.88}
FUSION = {"weight": 0.35, "metric": "ndcg@10", "normalization": "min-max per query", "dev_queries": 40,
          "dev_ndcg@10": 0.9, "dev_ndcg@10_tuned": 0.8, "dev_ndcg@10_bm25": 0.7, "dev_by_weight": {}}


def _run(tmp_path, run_id: str, models: dict[str, float], fusion: dict) -> RunSpec:
    run = RunSpec(run_id=run_id, home=str(tmp_path), config=RefineryConfig())
    catalog = run.catalog.ensure_schema()
    catalog.start_run(run_id, config={}, run_dir=run.run_dir)
    catalog.finish_run(run_id, status="completed", docs_in=10, docs_kept=10, docs_dropped=0, docs_rejected=0)
    rows = [("queries", "headline", "scored", 50.0)]
    rows += [(m, "headline", "ndcg@10", v) for m, v in models.items()]
    intervals = {("tuned", "delta"): (0.05, 0.01, 0.09), ("tuned", "vs_bm25"): (0.15, 0.10, 0.20),
                 ("hybrid", "vs_tuned"): (0.03, -0.01, 0.07), ("hybrid", "vs_bm25"): (0.18, 0.12, 0.24)}
    for (model, name), (d, lo, hi) in intervals.items():
        if model in models:
            rows += [(model, "headline", f"ndcg@10_{name}", d), (model, "headline", f"ndcg@10_{name}_ci_low", lo),
                     (model, "headline", f"ndcg@10_{name}_ci_high", hi)]
    if "hybrid" in models:
        rows.append(("hybrid", "headline", "fusion_weight", fusion["weight"]))
    catalog.put_metrics(run_id, "evaluate", rows)
    StageMarker(run.stage_dir("evaluate")).write({"tasks": ["headline"], "task": "headline", "queries": 50,
                                                  "by_task": {}, "skipped_tasks": {}, "pool_docs": 10,
                                                  "corpus_docs": 10, "fusion": fusion})
    return run


def _between(text: str, start: str) -> str:
    return text.split(start, 1)[1].split("\n## ", 1)[0]


def test_the_hybrid_has_its_column_intervals_and_weight(tmp_path, prefect_api):
    text = write_report(_run(tmp_path, "r1", FIGURES, FUSION)).read_text()
    summary = _between(text, "## Evaluation summary")
    assert ("| task | queries | bm25 | base | tuned | hybrid | tuned − base (95% CI) | tuned − bm25 (95% CI) | "
            "hybrid − tuned (95% CI) | hybrid − bm25 (95% CI) |") in summary
    assert ("| headline | 50 | 0.7000 | 0.8000 | 0.8500 | 0.8800 | +0.0500 [+0.0100, +0.0900] | +0.1500 [+0.1000, +0.2000] | "
            "+0.0300 [-0.0100, +0.0700] | +0.1800 [+0.1200, +0.2400] |") in summary
    assert ("hybrid = w × tuned + (1 − w) × bm25 of scores normalized min-max per query, w = 0.35 fitted on the "
            "train stage's dev split (40 queries, dev ndcg@10 0.9000 at that weight, 0.8000 tuned alone, 0.7000 "
            "bm25 alone), never on an evaluation set") in summary
    # the task's own table: each interval on the row of the model it belongs to
    section = _between(text, "## Evaluation: ")
    lines = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert "hybrid − tuned (95% CI)" in lines["model"]
    assert "+0.0300 [-0.0100, +0.0700]" in lines["hybrid"] and "+0.0300 [-0.0100, +0.0700]" not in lines["tuned"]
    assert "+0.0500 [+0.0100, +0.0900]" in lines["tuned"] and "+0.0500 [+0.0100, +0.0900]" not in lines["hybrid"]


def test_a_run_without_the_hybrid_keeps_its_table_and_says_why(tmp_path, prefect_api):
    why = "the train stage had no dev split to fit its weight on (train.dev_fraction is null)"
    models = {m: v for m, v in FIGURES.items() if m != "hybrid"}
    text = write_report(_run(tmp_path, "r2", models, {"skipped": why})).read_text()
    summary = _between(text, "## Evaluation summary")
    assert "| task | queries | bm25 | base | tuned | tuned − base (95% CI) | tuned − bm25 (95% CI) |" in summary
    assert "hybrid −" not in summary and "w = " not in summary
    assert f"- Model `hybrid` (BM25 + tuned) was not scored: {why}." in summary
