"""The DuckDB catalog: every table a user queries, and the verbs the flow process writes with.

Only the flow process writes (one writer); each write opens the file, does its work in one
transaction and closes it again, so ``refinery sql`` can read between writes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa

# Every table in the catalog, in the order README documents them.
SCHEMA: dict[str, str] = {
    "runs": """
        run_id VARCHAR PRIMARY KEY, status VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
        docs_in BIGINT, docs_kept BIGINT, docs_dropped BIGINT, docs_rejected BIGINT,
        error VARCHAR, config JSON, run_dir VARCHAR""",
    "stage_runs": """
        run_id VARCHAR, stage VARCHAR, status VARCHAR, started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ, seconds DOUBLE, stats JSON""",
    "documents": """
        run_id VARCHAR, doc_id VARCHAR, source VARCHAR, location VARCHAR, title VARCHAR,
        text VARCHAR, label VARCHAR, n_chars BIGINT, record_id VARCHAR""",
    "rejects": "run_id VARCHAR, source VARCHAR, location VARCHAR, reason VARCHAR, record VARCHAR",
    "dedup_clusters": "run_id VARCHAR, cluster_id VARCHAR, doc_id VARCHAR, is_survivor BOOLEAN, kind VARCHAR",
    "drops": "run_id VARCHAR, doc_id VARCHAR, stage VARCHAR, reason VARCHAR",
    "doc_attributes": "run_id VARCHAR, doc_id VARCHAR, name VARCHAR, value DOUBLE",
    "pairs": """
        run_id VARCHAR, pair_id VARCHAR, query VARCHAR, doc_id VARCHAR, generator VARCHAR,
        prompt_id VARCHAR, kept BOOLEAN, score DOUBLE, rank INTEGER, negative_doc_id VARCHAR,
        split VARCHAR""",
    "models": "run_id VARCHAR, name VARCHAR, path VARCHAR, base VARCHAR, created_at TIMESTAMPTZ",
    "metrics": "run_id VARCHAR, stage VARCHAR, model VARCHAR, task VARCHAR, metric VARCHAR, value DOUBLE",
}

# Columns added after a table was first released: ensure_schema adds them to an older catalog
# (at the end, where SCHEMA lists them too, so old and new catalogs have the same column order).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("pairs", "split", "VARCHAR"),
    ("documents", "record_id", "VARCHAR"),
)

# The curated corpus of each run: documents no stage dropped.
VIEWS: dict[str, str] = {
    "corpus": """
        SELECT d.* FROM documents d
        WHERE NOT EXISTS (SELECT 1 FROM drops x WHERE x.run_id = d.run_id AND x.doc_id = d.doc_id)""",
}


class CatalogError(RuntimeError):
    """The catalog cannot be opened, a query failed or was refused; the message says why."""


# How long a reader waits for the flow process's write transaction (which holds the file lock).
READ_LOCK_WAIT_S = 30.0
# What the door lets through: DESCRIBE, SHOW and SUMMARIZE parse as SELECT; an EXPLAIN is checked
# for what it explains (EXPLAIN ANALYZE runs it).
READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
READ_KINDS = "SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN"
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?", re.IGNORECASE)


def read_statement(sql: str) -> str:
    """``sql`` when it is exactly one statement that only reads; else a CatalogError saying why."""
    con = duckdb.connect()
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise CatalogError(f"not valid SQL: {str(exc).strip()}") from exc
    finally:
        con.close()
    if len(statements) != 1:
        raise CatalogError(f"refused: one statement at a time ({len(statements)} given); the catalog answers "
                           f"one {READ_KINDS}")
    (statement,) = statements
    if statement.type not in READ_STATEMENTS:
        raise CatalogError(f"refused: {statement.type.name} is not a read; the catalog is read-only here and "
                           f"answers one {READ_KINDS}")
    if statement.type == duckdb.StatementType.EXPLAIN:
        read_statement(_EXPLAIN.sub("", statement.query, count=1))
    return statement.query


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _connect_waiting(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the catalog, waiting up to READ_LOCK_WAIT_S while another process holds its file lock
    (the flow process during one write transaction, or a reader during one query)."""
    deadline = time.monotonic() + READ_LOCK_WAIT_S
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only,
                                  config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise CatalogError(f"cannot open {path} {'for reading' if read_only else 'to write'}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class Catalog:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    # -- connections -------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a reader (`refinery sql`, `refinery runs`) holds a shared file lock while it answers
        con = _connect_waiting(self.path, read_only=False)
        try:
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def ensure_schema(self) -> "Catalog":
        with self._write() as con:
            for table, columns in SCHEMA.items():
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            for table, column, kind in ADDED_COLUMNS:
                con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
            for view, body in VIEWS.items():
                con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")
        return self

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one of Refinery's own read-only queries; the answer as an Arrow table."""
        with self._read() as con:
            return self._answer(con, sql, params)

    def user_query(self, sql: str) -> pa.Table:
        """Run SQL a person wrote (`refinery sql`, `sql:` positives) through the door that only reads.

        One read statement (:func:`read_statement`), on a read-only connection whose file access
        is limited to the data home and whose configuration is locked, so neither ``COPY … TO``
        nor ``read_text('/etc/passwd')`` nor ``SET``/``ATTACH``/``INSTALL`` gets through.
        """
        statement = read_statement(sql)
        with self._read() as con:
            con.execute("SET allowed_directories = ?", [[str(self.path.parent.resolve()) + os.sep]])
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            return self._answer(con, statement)

    @contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; waits (up to READ_LOCK_WAIT_S) while the flow process writes."""
        if not self.path.exists():
            raise CatalogError(f"no catalog at {self.path}: run `refinery run` first")
        con = _connect_waiting(self.path, read_only=True)
        try:
            yield con
        finally:
            con.close()

    @staticmethod
    def _answer(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        try:
            return con.sql(sql, params=list(params or [])).to_arrow_table()
        except duckdb.Error as exc:
            raise CatalogError(str(exc).strip()) from exc

    def execute_write(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self._write() as con:
            con.execute(sql, params or [])

    # -- registering shards -------------------------------------------------------------------
    def replace(
        self,
        table: str,
        run_id: str,
        *,
        parquet: Sequence[str | os.PathLike[str]] = (),
        rows: pa.Table | None = None,
        where: dict[str, str] | None = None,
    ) -> int:
        """Replace a run's rows of ``table`` (optionally narrowed by ``where``) with new ones.

        The rows come from Parquet shards or an Arrow table, and must have the table's columns
        (extra columns are ignored, missing ones become NULL). Delete and insert happen in one
        transaction, so registering the same stage twice leaves the same rows: reruns are no-ops.
        """
        if table not in SCHEMA:
            raise CatalogError(f"unknown table {table!r}")
        filters = {"run_id": run_id, **(where or {})}
        cond = " AND ".join(f"{k} = ?" for k in filters)
        with self._write() as con:
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            con.execute(f"DELETE FROM {table} WHERE {cond}", list(filters.values()))
            sources = []
            if parquet:
                files = [str(p) for p in parquet]
                sources.append(("read_parquet(?, union_by_name=true)", [files]))
            if rows is not None and rows.num_rows:
                con.register("_incoming", rows)
                sources.append(("_incoming", []))
            inserted = 0
            for source, params in sources:
                present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}", params).fetchall()}
                select = ", ".join(
                    "?" if c == "run_id" else (c if c in present else f"NULL AS {c}") for c in columns
                )
                inserted += con.execute(
                    f"INSERT INTO {table} SELECT {select} FROM {source}", [run_id, *params]
                ).fetchone()[0]
            return inserted

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, *, config: dict[str, Any], run_dir: Path) -> None:
        with self._write() as con:
            # a resumed run keeps its started_at; its figures and error are those of this attempt
            con.execute(
                "INSERT INTO runs (run_id, status, started_at, config, run_dir) VALUES (?, 'running', ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, error = NULL,"
                " config = excluded.config, run_dir = excluded.run_dir",
                [run_id, _now(), json.dumps(config, default=str), str(run_dir)],
            )

    def mark_interrupted(self) -> int:
        """Runs still marked ``running`` become ``interrupted`` (call only while holding the run lock)."""
        with self._write() as con:
            return con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'").fetchone()[0]

    def finish_run(self, run_id: str, *, status: str, error: str | None = None, **counts: int) -> None:
        sets = ["status = ?", "finished_at = ?", "error = ?"]
        params: list[Any] = [status, _now(), error]
        for name, value in counts.items():
            sets.append(f"{name} = ?")
            params.append(value)
        with self._write() as con:
            con.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", [*params, run_id])

    def record_stage(
        self, run_id: str, stage: str, *, status: str, started_at: datetime, stats: dict[str, Any]
    ) -> None:
        finished = _now()
        with self._write() as con:
            con.execute("DELETE FROM stage_runs WHERE run_id = ? AND stage = ?", [run_id, stage])
            con.execute(
                "INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [run_id, stage, status, started_at, finished, (finished - started_at).total_seconds(),
                 json.dumps(stats, default=str)],
            )
