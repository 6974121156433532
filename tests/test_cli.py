"""The `refinery` CLI: help, config errors, SQL on a real catalog, and an exit code per error class."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from refinery.flows.cli import app, exit_code
from refinery.storage import Catalog, DataHome
from refinery.tasks import exceptions

runner = CliRunner()


@pytest.fixture()
def catalog(home):
    cat = Catalog(home / "catalog.duckdb").ensure_schema()
    cat.start_run("r1", config={}, run_dir=home / "runs" / "r1")
    cat.finish_run("r1", status="completed", docs_in=10, docs_kept=7, docs_dropped=2, docs_rejected=1)
    cat.replace("metrics", "r1", rows=pa.table({"stage": ["evaluate"], "model": ["tuned"], "task": ["headline"],
                                                "metric": ["ndcg@10"], "value": [0.83]}))
    return cat


def test_help_lists_commands_and_exit_codes():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "sql", "runs", "config", "serve", "deploy", "refilter"):
        assert command in result.output
    text = " ".join(result.output.split())
    for code, meaning in ((2, "config"), (3, "input"), (4, "catalog"), (5, "Dask cluster"), (6, "model")):
        assert f"{code} {meaning}" in text


@pytest.mark.parametrize("cls, code", [
    ("RefineryError", 1), ("AccountingError", 1), ("ConfigError", 2), ("InputError", 3), ("QuerySetError", 3),
    ("RefilterError", 3), ("CatalogError", 4), ("HomeBusyError", 4), ("ClusterError", 5),
    ("WorkerPreflightError", 5), ("ModelError", 6), ("GenerationError", 6), ("OnnxExportError", 6),
])
def test_every_error_class_has_its_documented_exit_code(cls, code):
    import refinery.flows.cli as cli

    assert exit_code(getattr(exceptions, cls)("x")) == code
    (row,) = [line for line in cli.__doc__.splitlines() if line.strip().startswith(f"{code} ")]
    assert cls in row
    assert exit_code(ValueError("x")) == exit_code(RuntimeError("x")) == 1


@pytest.mark.parametrize("cls", exceptions.__all__)
def test_any_command_ends_a_refinery_error_with_one_line_and_its_code(cls):
    """What the app does for every command, on a command that only raises."""
    import typer

    from refinery.flows.cli import _Commands

    probe = typer.Typer(cls=_Commands)

    @probe.command()
    def fail() -> None:
        raise getattr(exceptions, cls)("what went wrong [with markup-like brackets]")

    @probe.command()
    def other() -> None:  # two commands, so the group (not a lone command) runs them
        pass

    result = runner.invoke(probe, ["fail"])
    assert result.exit_code == exit_code(getattr(exceptions, cls)("x")) > 0
    assert _one_line_without_traceback(result) == "what went wrong [with markup-like brackets]"


def _one_line_without_traceback(result) -> str:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


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
    assert result.exit_code == 4  # CatalogError
    assert _one_line_without_traceback(result).startswith("refused: DROP is not a read")
    assert catalog.query("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 1}]
    result = runner.invoke(app, ["sql", "SELECT nope FROM runs"])
    assert result.exit_code == 4 and "nope" in result.output and "Traceback" not in result.output


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
    line = _one_line_without_traceback(result)
    assert line.startswith(f"invalid config {bad}: `dedup.treshold`: unknown key; did you mean `threshold`?")
    result = runner.invoke(app, ["run", "--stages", "ingest,quality"])
    assert result.exit_code == 2 and "stages must be the chain" in result.output


@pytest.fixture()
def stored_run(home, tmp_path):
    """A config naming the data home, and a run r1 in it (its config stored, as a run leaves it)."""
    config = tmp_path / "refilter.yaml"
    config.write_text(f"home: {home}\nquality:\n  gopher_quality:\n    min_doc_words: 10\n")
    run_dir = DataHome(home).run_dir("r1")
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"home: {home}\n")
    return config


def test_refilter_without_a_catalog_is_one_line_and_exit_4(stored_run):
    result = runner.invoke(app, ["refilter", "r1", "--config", str(stored_run)])
    assert result.exit_code == 4
    assert _one_line_without_traceback(result).startswith("no catalog at ")


@pytest.mark.parametrize("command", [["refilter", "r1"], ["run"], ["ablate"]])
def test_a_busy_home_is_one_line_and_exit_4_before_any_flow_starts(catalog, home, stored_run, command):
    with DataHome(home).run_lock("a test holding the lock"):
        result = runner.invoke(app, [*command, "--config", str(stored_run)])
    assert result.exit_code == 4
    line = _one_line_without_traceback(result)
    assert line.startswith("a test holding the lock (pid ") and f"is running in {home}" in line
    assert "Flow run" not in result.output and "Starting temporary server" not in result.output


def test_gc_while_the_home_is_busy_exits_4(catalog, home):
    with DataHome(home).run_lock("a test holding the lock"):
        result = runner.invoke(app, ["gc", "--keep", "0"])
    assert result.exit_code == 4
    assert _one_line_without_traceback(result).startswith("refusing to collect: ")


def test_serve_and_deploy_take_their_schedule_from_the_config(tmp_path):
    from refinery.flows.cli import _schedule

    default = _schedule(None, None, None, None)
    assert (default.cron, default.timezone) == ("0 2 * * *", "UTC")
    config = tmp_path / "c.yaml"
    config.write_text("schedule:\n  cron: 30 4 * * 1-5\n  timezone: Europe/Berlin\n")
    configured = _schedule(config, None, None, None)
    assert (configured.cron, configured.timezone) == ("30 4 * * 1-5", "Europe/Berlin")
    given = _schedule(config, "0 5 * * *", None, "UTC")
    assert (given.cron, given.timezone) == ("0 5 * * *", "UTC")
    every = _schedule(config, None, 3600, None)
    assert (every.interval, every.timezone) == (timedelta(hours=1), "Europe/Berlin")


def test_config_prints_defaults():
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0 and "builtin:bbc" in result.output
