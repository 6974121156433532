"""The SQL door (`refinery sql`, `sql:` positives): one read statement, no files outside the data
home, no state changes; and it answers while the flow process is writing."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import Catalog, CatalogError

REFUSED = [
    "INSERT INTO runs (run_id) VALUES ('x')",
    "UPDATE runs SET status = 'x'",
    "DELETE FROM runs",
    "CREATE TABLE t AS SELECT 1",
    "DROP TABLE runs",
    "ALTER TABLE runs ADD COLUMN x INT",
    "COPY (SELECT * FROM runs) TO 'leak.csv'",
    "COPY runs FROM 'in.csv'",
    "EXPORT DATABASE 'dump'",
    "ATTACH 'other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "PRAGMA enable_profiling",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'leak.csv'",
    "SELECT 1; DROP TABLE runs",
    "SELECT 1; SELECT 2",
]
READS = [
    "SELECT run_id, docs_in FROM runs",
    "WITH r AS (SELECT * FROM runs) SELECT count(*) AS n FROM r",
    "DESCRIBE runs",
    "SHOW TABLES",
    "SUMMARIZE runs",
    "EXPLAIN SELECT * FROM runs",
]


@pytest.fixture()
def catalog(home):
    cat = Catalog(home / "catalog.duckdb").ensure_schema()
    cat.start_run("r1", config={}, run_dir=home / "runs" / "r1")
    cat.finish_run("r1", status="completed", docs_in=3, docs_kept=3, docs_dropped=0, docs_rejected=0)
    return cat


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_ddl_files_and_settings_are_refused(catalog, sql, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CatalogError, match="refused"):
        catalog.user_query(sql)
    assert not list(tmp_path.glob("leak*")) and not (tmp_path / "dump").exists()
    assert catalog.query("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 1}]


@pytest.mark.parametrize("sql", READS)
def test_read_statements_answer(catalog, sql):
    assert catalog.user_query(sql).num_rows >= 1


@pytest.mark.parametrize("reader", ["read_text", "read_csv", "read_parquet", "read_json", "glob"])
def test_files_outside_the_data_home_cannot_be_read(catalog, reader, tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    for path in ("/etc/passwd", str(outside), str(catalog.path.parent / ".." / "secret.csv")):
        with pytest.raises(CatalogError, match="(?i)permission|disabled"):
            catalog.user_query(f"SELECT * FROM {reader}('{path}')")


def test_files_inside_the_data_home_can_be_read(catalog):
    shard = catalog.path.parent / "runs" / "r1" / "x.csv"
    shard.parent.mkdir(parents=True, exist_ok=True)
    shard.write_text("a\n7\n")
    assert catalog.user_query(f"SELECT a FROM read_csv('{shard}')").to_pylist() == [{"a": 7}]


def test_the_cli_refuses_with_a_clear_message(catalog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sql", "COPY (SELECT * FROM corpus) TO 'leak.csv'"])
    assert result.exit_code == 4  # CatalogError
    assert "refused: COPY is not a read" in result.output
    assert not (tmp_path / "leak.csv").exists()
    result = CliRunner().invoke(app, ["sql", "SELECT * FROM read_text('/etc/passwd')"])
    assert result.exit_code == 4 and "root:" not in result.output


def _hold_write_lock(path: str, seconds: float, started) -> None:
    import duckdb

    con = duckdb.connect(path)
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO runs (run_id, status) VALUES ('r2', 'running')")
    started.set()
    time.sleep(seconds)
    con.execute("COMMIT")
    con.close()


def test_reads_wait_for_a_writer_in_another_process(catalog):
    """The flow process holds the file lock during each write; `refinery sql` waits instead of failing."""
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    writer = ctx.Process(target=_hold_write_lock, args=(str(catalog.path), 3.0, started))
    writer.start()
    try:
        assert started.wait(60)
        rows = catalog.user_query("SELECT run_id FROM runs ORDER BY run_id").to_pylist()
    finally:
        writer.join(60)
    assert rows == [{"run_id": "r1"}, {"run_id": "r2"}]


def _hold_read(path: str, seconds: float, started) -> None:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    started.set()
    time.sleep(seconds)
    con.close()


def test_the_flow_process_writes_wait_for_a_reader_in_another_process(catalog):
    """A `refinery sql` in another process holds a shared lock while it answers; a write waits for it."""
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    reader = ctx.Process(target=_hold_read, args=(str(catalog.path), 3.0, started))
    reader.start()
    try:
        assert started.wait(60)
        catalog.start_run("r3", config={}, run_dir=catalog.path.parent / "runs" / "r3")
    finally:
        reader.join(60)
    assert {r["run_id"] for r in catalog.query("SELECT run_id FROM runs").to_pylist()} == {"r1", "r3"}
