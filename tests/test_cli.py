"""The `refinery` CLI: help, config errors, and SQL on a real catalog."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import Catalog

runner = CliRunner()


@pytest.fixture()
def catalog(home):
    cat = Catalog(home / "catalog.duckdb").ensure_schema()
    cat.start_run("r1", config={}, run_dir=home / "runs" / "r1")
    cat.finish_run("r1", status="completed", docs_in=10, docs_kept=7, docs_dropped=2, docs_rejected=1)
    cat.replace("metrics", "r1", rows=pa.table({"stage": ["evaluate"], "model": ["tuned"], "task": ["headline"],
                                                "metric": ["ndcg@10"], "value": [0.83]}))
    return cat


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "sql", "runs", "config", "serve", "deploy", "refilter"):
        assert command in result.output


def test_sql_formats(catalog):
    result = runner.invoke(app, ["sql", "SELECT run_id, docs_kept FROM runs", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"run_id": "r1", "docs_kept": 7}]
    result = runner.invoke(app, ["sql", "SELECT run_id, docs_in FROM runs", "--format", "csv"])
    # the bytes, not `output` (Click turns "\r\n" into "\n" there): Unix lines, so a shell reads the values as they are
    assert result.stdout_bytes == b"run_id,docs_in\nr1,10\n"
    result = runner.invoke(app, ["sql", "SELECT run_id, status FROM runs"])
    assert "r1" in result.output and "completed" in result.output


def test_sql_is_read_only_and_reports_errors(catalog):
    result = runner.invoke(app, ["sql", "DROP TABLE runs"])
    assert result.exit_code == 1
    assert catalog.query("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 1}]
    result = runner.invoke(app, ["sql", "SELECT nope FROM runs"])
    assert result.exit_code == 1 and "nope" in result.output


def test_runs_shows_headline_figures(catalog):
    result = runner.invoke(app, ["runs", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["run_id"] == "r1" and row["docs_kept"] == 7 and row["tuned_ndcg10"] == pytest.approx(0.83)


def test_run_with_a_bad_config_fails_before_starting_anything(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dedup:\n  treshold: 0.7\n")
    result = runner.invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code == 2
    assert "dedup.treshold: unknown key" in result.output


def test_config_prints_defaults():
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0 and "builtin:bbc" in result.output
