"""Error bars and the same-label task, through the real nightly flow on a small labelled corpus.

The corpus is one JSONL file of BBC articles from three categories with their headlines and
labels, one article whose label no other document has, and a few without a label. Evaluate
scores two tasks (headline → article, and same_label: a document → the others of its label),
and model 'tuned' of each gets paired bootstrap intervals of tuned − base and tuned − bm25.

One run is shared by the tests of this module (it trains a tiny model).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from refinery.storage import Catalog, StageMarker, read_shard
from refinery.tasks.ingest.readers import bbc_folder

LABELS = ("business", "sport", "tech")
PER_LABEL = 10
UNLABELLED = 3
METRICS = ("ndcg@10", "mrr@10", "recall@100")
INTERVALS = tuple(f"ndcg@10_{c}{s}" for c in ("delta", "vs_bm25") for s in ("", "_ci_low", "_ci_high"))
SAMPLES = 500
SEED = 3


def records() -> list[dict]:
    out = []
    folders = {"business": "business", "sport": "sports", "tech": "tech"}
    for label in LABELS:
        for path in sorted((bbc_folder() / folders[label]).glob("*.txt"))[:PER_LABEL]:
            title, _, body = path.read_text(encoding="utf-8").partition("\n")
            out.append({"id": f"{label}-{path.stem}", "title": title.strip(), "text": body.strip(), "label": label})
    # the only 'politics' article: a query with nothing to find (counted, not scored)
    title, _, body = (bbc_folder() / "politics" / "001.txt").read_text(encoding="utf-8").partition("\n")
    out.append({"id": "politics-001", "title": title.strip(), "text": body.strip(), "label": "politics"})
    for path in sorted((bbc_folder() / "entertainment").glob("*.txt"))[:UNLABELLED]:  # no label field at all
        title, _, body = path.read_text(encoding="utf-8").partition("\n")
        out.append({"id": f"plain-{path.stem}", "title": title.strip(), "text": body.strip()})
    return out


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("labelled")
    corpus = root / "labelled.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records()))
    cfg = {
        "home": str(root / "home"),
        "ingest": {"sources": [{"path": str(corpus), "name": "labelled", "id_field": "id"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 16},
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64},
        "evaluate": {"max_seq_length": 128, "bootstrap_samples": SAMPLES, "seed": SEED},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    stats = nightly(config_path=str(path), dask_address=dask_address)
    catalog = Catalog(root / "home" / "catalog.duckdb")

    def q(sql: str) -> list[dict]:
        return catalog.query(sql.replace("$run", f"'{stats['run_id']}'")).to_pylist()

    return {"stats": stats, "q": q, "run_dir": Path(stats["run_dir"])}


def _figures(q, task: str) -> dict[tuple[str, str], float]:
    return {(r["model"], r["metric"]): r["value"] for r in q(
        f"SELECT model, metric, value FROM metrics WHERE run_id = $run AND stage = 'evaluate' AND task = '{task}'")}


@pytest.mark.slow  # trains a model
def test_both_tasks_are_scored_and_tuned_has_its_intervals(labelled_run):
    q = labelled_run["q"]
    evaluation = StageMarker(labelled_run["run_dir"] / "evaluate").read()
    assert evaluation["tasks"] == ["headline", "same_label"] and evaluation["skipped_tasks"] == {}
    for task in ("headline", "same_label"):
        got = {k for k in _figures(q, task) if k[0] != "queries"}
        assert got == {(m, k) for m in ("base", "tuned", "bm25") for k in METRICS} | {("tuned", k) for k in INTERVALS}
        figures = _figures(q, task)
        for comparison, other in (("delta", "base"), ("vs_bm25", "bm25")):
            key = f"ndcg@10_{comparison}"
            assert figures[("tuned", key)] == pytest.approx(figures[("tuned", "ndcg@10")] - figures[(other, "ndcg@10")])
            assert figures[("tuned", f"{key}_ci_low")] <= figures[("tuned", key)] <= figures[("tuned", f"{key}_ci_high")]


@pytest.mark.slow  # trains a model
def test_intervals_are_the_paired_bootstrap_of_the_per_query_scores(labelled_run):
    q = labelled_run["q"]
    evaluation = StageMarker(labelled_run["run_dir"] / "evaluate").read()
    for task in ("headline", "same_label"):
        rows = read_shard(evaluation["per_query"][task]).to_pylist()
        figures = _figures(q, task)
        ndcg = {m: np.array([r["ndcg@10"] for r in rows if r["model"] == m]) for m in ("base", "tuned", "bm25")}
        queries = {m: [r["query"] for r in rows if r["model"] == m] for m in ("base", "tuned", "bm25")}
        assert queries["base"] == queries["tuned"] == queries["bm25"]  # paired: the same queries, in one order
        assert len(queries["tuned"]) == figures[("queries", "scored")]
        for model in ("base", "tuned", "bm25"):
            for metric in METRICS:
                assert np.mean([r[metric] for r in rows if r["model"] == model]) == pytest.approx(figures[(model, metric)])
        for comparison, other in (("delta", "base"), ("vs_bm25", "bm25")):
            deltas = ndcg["tuned"] - ndcg[other]
            low, high = (figures[("tuned", f"ndcg@10_{comparison}_ci_{end}")] for end in ("low", "high"))
            assert figures[("tuned", f"ndcg@10_{comparison}")] == pytest.approx(deltas.mean())
            # the percentile bootstrap written out (not the module's code): SAMPLES resamples of the
            # queries, resample b being row b of default_rng(SEED).integers(0, n, (SAMPLES, n)) as
            # evaluate.seed and evaluate.bootstrap_samples say, and the 2.5th and 97.5th
            # percentiles of the resamples' mean differences
            draws = np.random.default_rng(SEED).integers(0, len(deltas), size=(SAMPLES, len(deltas)))
            means = deltas[draws].mean(axis=1)
            assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
            # a mean of resampled differences lies between the smallest and the largest difference
            assert deltas.min() <= low <= high <= deltas.max()
        # real per-query variation: the interval has width, so the bars carry information
        assert figures[("tuned", "ndcg@10_vs_bm25_ci_high")] > figures[("tuned", "ndcg@10_vs_bm25_ci_low")]


@pytest.mark.slow  # trains a model
def test_same_label_queries_are_the_labelled_pool_documents(labelled_run):
    q = labelled_run["q"]
    kept = q("SELECT doc_id, label FROM corpus WHERE run_id = $run")
    labelled = [r for r in kept if r["label"]]
    counts = {k[1]: v for k, v in _figures(q, "same_label").items() if k[0] == "queries"}
    evaluation = StageMarker(labelled_run["run_dir"] / "evaluate").read()
    assert evaluation["pool_docs"] == len(kept)  # the whole corpus is the pool
    assert counts == {"in_source": len(labelled), "sampled": len(labelled), "scored": len(labelled) - 1,
                      "alone_in_label": 1, "unlabelled": len(kept) - len(labelled)}
    assert counts["unlabelled"] == UNLABELLED
    rows = read_shard(evaluation["per_query"]["same_label"]).to_pylist()
    politics = q("SELECT doc_id FROM documents WHERE run_id = $run AND label = 'politics'")[0]["doc_id"]
    assert {r["query"] for r in rows} == {r["doc_id"] for r in labelled} - {politics}
    # BBC categories are topics: a document's nearest neighbours share its label far more often
    # than the label's share of the pool (about a third)
    assert _figures(q, "same_label")[("base", "ndcg@10")] > 0.6
    # the tuned model embedded the pool once, for both tasks: the label task's queries are its rows
    (tuned,) = [p for p in (labelled_run["run_dir"] / "embeddings").iterdir() if p.name.startswith("tuned-")]
    assert sum(read_shard(p, ["doc_id"]).num_rows for p in tuned.glob("*.parquet")) == len(kept)


@pytest.mark.slow  # trains a model
def test_report_has_the_interval_plot_and_columns(labelled_run):
    run_dir = labelled_run["run_dir"]
    report = (run_dir / "report.md").read_text()
    summary = report.split("## Evaluation summary", 1)[1].split("\n## ", 1)[0]
    assert "![ndcg@10 with paired bootstrap intervals](report_files/evaluation_intervals.png)" in summary
    assert (run_dir / "report_files" / "evaluation_intervals.png").stat().st_size > 0
    assert "| task | queries | bm25 | base | tuned | tuned − base (95% CI) | tuned − bm25 (95% CI) |" in summary
    figures = _figures(labelled_run["q"], "same_label")
    low, high = figures[("tuned", "ndcg@10_delta_ci_low")], figures[("tuned", "ndcg@10_delta_ci_high")]
    assert f"[{low:+.4f}, {high:+.4f}]" in summary
    section = report.split("## Evaluation: document → documents of the same label", 1)[1].split("\n## ", 1)[0]
    assert "tuned − base (95% CI)" in section and "no other pool document has its label" in section
    assert '<img alt="ndcg@10 with paired bootstrap intervals" src="report_files/evaluation_intervals.png"' in (
        run_dir / "report.html").read_text()
