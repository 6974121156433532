"""The quality stage in a real flow: a classifier trained from an SQL source, and re-thresholding
from stored scores (refilter) without evaluating any rule again."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect_dask import DaskTaskRunner

from refinery.flows.accounting import check_books
from refinery.flows.dedup import dedup_flow
from refinery.flows.ingest import ingest_flow
from refinery.flows.nightly import prepare_run, refilter_run
from refinery.flows.quality import RefilterError, quality_flow
from refinery.storage import StageMarker
from refinery.tasks.config import parse_config
from refinery.tasks.ingest.readers import bbc_folder


def worker_evaluations(address: str) -> int:
    """Documents scored by quality rules so far, summed over every Dask worker process."""
    from distributed import Client

    def count() -> int:
        from refinery.tasks.quality import FAMILY_EVALUATIONS

        return sum(FAMILY_EVALUATIONS.values())

    with Client(address) as client:
        return sum(client.run(count).values())


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory, prefect_api, dask_address):
    root = tmp_path_factory.mktemp("quality")
    cfg = parse_config({
        "home": str(root / "home"),
        "ingest": {"shard_size": 25, "limit": 50, "sources": [
            {"path": str(bbc_folder() / "business"), "name": "business", "title_from_first_line": True},
            {"path": str(bbc_folder() / "sports"), "name": "sport", "title_from_first_line": True}]},
        "quality": {"classifier": {"enabled": True, "positives": "sql:SELECT text FROM documents WHERE source = 'sport'",
                                   "mode": "threshold", "threshold": 0.5}},
    })
    run = prepare_run(cfg)
    runner = DaskTaskRunner(address=dask_address)
    for stage in (ingest_flow, dedup_flow, quality_flow):
        stage.with_options(task_runner=runner)(run)
    return run


def test_classifier_trained_registered_and_used(quality_run):
    q = quality_run.catalog.query
    rid = [quality_run.run_id]
    (model,) = q("SELECT name, path FROM models WHERE run_id = ?", rid).to_pylist()
    assert model["name"] == "quality_classifier" and Path(model["path"]).exists()
    metrics = {r["metric"]: r["value"] for r in q("SELECT metric, value FROM metrics WHERE run_id = ? AND stage = 'quality'", rid).to_pylist()}
    assert set(metrics) == {"accuracy", "auc"} and metrics["auc"] > 0.6
    scores = q("""SELECT d.source, avg(a.value) AS score FROM doc_attributes a JOIN documents d USING (run_id, doc_id)
                  WHERE a.run_id = ? AND a.name = 'classifier.score' GROUP BY d.source""", rid).to_pylist()
    by_source = {r["source"]: r["score"] for r in scores}
    assert by_source["sport"] > by_source["business"]  # it learned what the positives look like
    (dropped,) = q("SELECT count(*) AS n FROM drops WHERE run_id = ? AND reason LIKE 'classifier.%'", rid).to_pylist()
    assert dropped["n"] > 0


def test_refilter_redecides_from_stored_scores_only(quality_run, dask_address):
    q = quality_run.catalog.query
    rid = [quality_run.run_id]
    before = q("SELECT reason, count(*) AS n FROM drops WHERE run_id = ? AND stage = 'quality' GROUP BY reason", rid).to_pylist()
    scored = worker_evaluations(dask_address)
    assert scored > 0  # the quality stage scored on the workers, so the counter does observe scoring

    looser = quality_run.config.model_copy(deep=True)
    looser.quality.classifier.threshold = 0.0
    looser.quality.gopher_quality.min_alpha_words_ratio = 0.5
    stats = refilter_run(quality_run.run_id, looser, dask_address)

    assert worker_evaluations(dask_address) == scored  # no rule was evaluated again
    after = {r["reason"]: r["n"] for r in q(
        "SELECT reason, count(*) AS n FROM drops WHERE run_id = ? AND stage = 'quality' GROUP BY reason", rid).to_pylist()}
    assert not any(r.startswith("classifier.") for r in after)
    assert sum(after.values()) < sum(r["n"] for r in before)
    assert stats["kept"] == q("SELECT count(*) AS n FROM corpus WHERE run_id = ?", rid).to_pylist()[0]["n"]
    books = check_books(quality_run)
    assert books.docs_in == books.docs_kept + books.docs_dropped + books.docs_rejected
    assert StageMarker(quality_run.stage_dir("synthesize")).read() is None
    assert "min_alpha_words_ratio: 0.5" in (quality_run.run_dir / "config.yaml").read_text()


def test_refilter_refuses_a_change_that_needs_rescoring(quality_run, dask_address):
    other = quality_run.config.model_copy(deep=True)
    other.quality.langid.languages = ["de"]
    with pytest.raises(RefilterError, match="langid"):
        refilter_run(quality_run.run_id, other, dask_address)
