"""A run that fails in a later stage explains itself: status, error, the figures known so far,
and a report (file and Prefect artifact) saying which stages finished and where it failed.

The failure is real: a quality classifier whose positives file does not exist, so ingest and
dedup finish and quality fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from refinery.storage import Catalog
from refinery.tasks.ingest.readers import bbc_folder

ARTICLES = 30


def records() -> list[str]:
    bodies = [p.read_text(encoding="utf-8").partition("\n")[2].strip()
              for p in sorted((bbc_folder() / "business").glob("*.txt"))[:ARTICLES]]
    out = [json.dumps({"id": f"doc-{i:03d}", "text": body}) for i, body in enumerate(bodies)]
    out.append(json.dumps({"id": "copy-of-doc-000", "text": bodies[0]}))  # dedup drops one of the two
    out.append("{this is not json")  # ingest rejects it
    return out


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("failed")
    data = root / "corpus.jsonl"
    data.write_text("\n".join(records()) + "\n")
    missing = root / "no-such-positives.txt"
    config = {"home": str(root / "home"),
              "ingest": {"shard_size": 20, "sources": [{"path": str(data), "name": "plain"}]},
              "quality": {"classifier": {"enabled": True, "positives": str(missing)}}}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(FileNotFoundError, match="no-such-positives"):
        nightly(config_path=str(path), dask_address=dask_address)
    catalog = Catalog(root / "home" / "catalog.duckdb")
    (row,) = catalog.query("SELECT * FROM runs").to_pylist()
    return {"row": row, "config": path, "catalog": catalog, "run_dir": Path(row["run_dir"])}


def test_failed_run_records_where_it_failed_and_the_figures_so_far(failed_run):
    row = failed_run["row"]
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert row["error"].startswith("quality: FileNotFoundError") and "no-such-positives" in row["error"]
    assert row["docs_in"] == ARTICLES + 2  # documents + the rejected record: ingest finished
    assert row["docs_rejected"] == 1
    assert row["docs_dropped"] == 1  # the duplicate, dropped by dedup before quality failed
    assert row["docs_kept"] is None  # quality never finished
    stages = failed_run["catalog"].query("SELECT stage FROM stage_runs ORDER BY started_at").column("stage").to_pylist()
    assert stages == ["ingest", "dedup"]


def test_failed_run_report_says_which_stages_finished_and_the_error(failed_run):
    run_dir = failed_run["run_dir"]
    report = (run_dir / "report.md").read_text()
    assert "Status **failed**" in report
    assert "failed in stage quality" in report
    assert "finished before it: ingest, dedup" in report
    assert "not finished: synthesize, train, evaluate" in report
    assert failed_run["row"]["error"] in report
    assert "## Dedup" in report and "## Evaluation" not in report
    assert "failed in stage quality" in (run_dir / "report.html").read_text()


def test_failed_run_report_is_published_to_prefect(failed_run, prefect_api):
    import httpx

    artifacts = httpx.post(f"{prefect_api}/artifacts/filter",
                           json={"artifacts": {"key": {"any_": ["run-report"]}}, "sort": "CREATED_DESC"}).json()
    run_id = failed_run["row"]["run_id"]
    mine = [a for a in artifacts if f"Refinery run {run_id}" in (a.get("data") or "")]
    assert len(mine) == 1
    assert "failed in stage quality" in mine[0]["data"] and "no-such-positives" in mine[0]["data"]


def test_refinery_runs_shows_the_failed_run_figures(failed_run):
    from refinery.flows.cli import app

    result = CliRunner().invoke(app, ["runs", "--format", "json", "--config", str(failed_run["config"])])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["status"] == "failed" and row["docs_in"] == ARTICLES + 2 and row["docs_dropped"] == 1
    assert row["error"].startswith("quality: FileNotFoundError")
