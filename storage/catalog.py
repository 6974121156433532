"""The DuckDB catalog: every table a user queries, and the verbs the flow process writes with.

Only the flow process writes (one writer); each write opens the file, does its work in one
transaction and closes it again, so ``refinery sql`` can read between writes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa

from refinery.storage.books import BookVerbs
from refinery.storage.curation import CurationVerbs
from refinery.storage.datasets import DATASET_SCHEMA, DatasetVerbs, rebuild_dataset_views
from refinery.storage.evaluation import EvaluationVerbs
from refinery.storage.exports import ExportVerbs
from refinery.storage.location import is_remote, register_filesystems
from refinery.storage.models import ModelVerbs
from refinery.storage.reports import ReportVerbs
from refinery.storage.runs_log import RunVerbs
from refinery.tasks.exceptions import CatalogError

# Every table in the catalog, in the order README documents them.
SCHEMA: dict[str, str] = {
    "runs": """
        run_id VARCHAR PRIMARY KEY, status VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
        docs_in BIGINT, docs_kept BIGINT, docs_dropped BIGINT, docs_rejected BIGINT,
        error VARCHAR, config JSON, run_dir VARCHAR, warnings JSON""",
    "stage_runs": """
        run_id VARCHAR, stage VARCHAR, status VARCHAR, started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ, seconds DOUBLE, stats JSON""",
    "rejects": "run_id VARCHAR, source VARCHAR, location VARCHAR, reason VARCHAR, record VARCHAR",
    # per input file: records read = documents + rejected (``path`` as locations name the file)
    "file_books": """
        run_id VARCHAR, source VARCHAR, path VARCHAR, records_read BIGINT, documents BIGINT, rejected BIGINT,
        bytes BIGINT, status VARCHAR""",
    # a cluster is named by its survivor; kind 'semantic' (quality.semdedup) gives cosine, not jaccard
    "dedup_clusters": """
        run_id VARCHAR, cluster_id VARCHAR, doc_id VARCHAR, is_survivor BOOLEAN, kind VARCHAR, jaccard DOUBLE,
        cosine DOUBLE""",
    "drops": "run_id VARCHAR, doc_id VARCHAR, stage VARCHAR, reason VARCHAR",
    "pairs": """
        run_id VARCHAR, pair_id VARCHAR, query VARCHAR, doc_id VARCHAR, generator VARCHAR,
        prompt_id VARCHAR, kept BOOLEAN, score DOUBLE, rank INTEGER, negative_doc_id VARCHAR,
        split VARCHAR, style VARCHAR, attributes JSON, reason VARCHAR, original_doc_id VARCHAR""",
    # the train stage's data map of its pairs (train.cartography), one row per mapped pair
    "pair_map": """
        run_id VARCHAR, pair_id VARCHAR, doc_id VARCHAR, confidence DOUBLE, variability DOUBLE,
        correctness DOUBLE, checkpoints INTEGER, region VARCHAR""",
    # pairs a stage left out of its work, with why (``decided_in``: the run whose decision it followed)
    "pair_drops": "run_id VARCHAR, pair_id VARCHAR, doc_id VARCHAR, stage VARCHAR, reason VARCHAR, decided_in VARCHAR",
    "models": """
        run_id VARCHAR, name VARCHAR, path VARCHAR, base VARCHAR, created_at TIMESTAMPTZ, dataset VARCHAR,
        promoted BOOLEAN, gate JSON, decided_at TIMESTAMPTZ""",
    "metrics": "run_id VARCHAR, stage VARCHAR, model VARCHAR, task VARCHAR, metric VARCHAR, value DOUBLE",
    # documents a selection chose (tasks/selection.py): synthesize's passages (purpose 'passages')
    "selections": """
        run_id VARCHAR, purpose VARCHAR, doc_id VARCHAR, rank BIGINT, weight DOUBLE, key DOUBLE, grp VARCHAR""",
    # which Parquet files hold each run's rows of a SHARD_TABLES table (``part``: the ``where`` they
    # were registered under, as JSON, e.g. {"stage": "quality"}; ``columns``: those the files have)
    "shard_files": "run_id VARCHAR, tbl VARCHAR, part VARCHAR, paths VARCHAR[], columns VARCHAR[]",
}

# Tables whose rows stay in the Parquet shards the workers wrote (document text, ~40 scores per
# document): the catalog keeps only which files hold each run's rows (``shard_files``) and a view
# of that name over them, so it grows with metadata, not with the corpus. Queried like tables.
SHARD_TABLES: dict[str, str] = {
    "documents": """
        run_id VARCHAR, doc_id VARCHAR, source VARCHAR, location VARCHAR, title VARCHAR,
        text VARCHAR, label VARCHAR, n_chars BIGINT, record_id VARCHAR, url VARCHAR, domain VARCHAR,
        fetched_at TIMESTAMPTZ, lang VARCHAR""",
    "doc_attributes": "run_id VARCHAR, doc_id VARCHAR, name VARCHAR, value DOUBLE",
    # WRAP: documents the synthesize stage derived by rephrasing a chosen passage in a style, every
    # attempt (``reason`` says why a failed one was not kept; tasks/synthesize/rephrase.py)
    "rephrasings": """
        run_id VARCHAR, doc_id VARCHAR, original_doc_id VARCHAR, style VARCHAR, generator VARCHAR, text VARCHAR,
        kept BOOLEAN, reason VARCHAR""",
}

# The curated corpus of each run: documents no stage dropped.
VIEWS: dict[str, str] = {
    "corpus": """
        SELECT d.* FROM documents d
        WHERE NOT EXISTS (SELECT 1 FROM drops x WHERE x.run_id = d.run_id AND x.doc_id = d.doc_id)""",
}


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _rebuild_view(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """(Re)create the view ``table`` over every run's registered files.

    One branch per registration, its run_id and ``where`` values as constants, so a query for one
    run reads only that run's files (DuckDB prunes the other branches).
    """
    columns = [c.strip().split()[0] for c in SHARD_TABLES[table].split(",")]
    types = dict(c.strip().split(maxsplit=1) for c in SHARD_TABLES[table].split(","))
    branches = []
    for run_id, part, paths, present in con.execute(
            "SELECT run_id, part, paths, columns FROM shard_files WHERE tbl = ? ORDER BY run_id, part", [table]).fetchall():
        fixed = {"run_id": run_id, **json.loads(part)}
        files = "[" + ", ".join(map(_sql_literal, paths)) + "]"
        select = ", ".join(
            f"CAST({_sql_literal(fixed[c])} AS {types[c]}) AS {c}" if c in fixed
            else (f"CAST({c} AS {types[c]}) AS {c}" if c in present else f"CAST(NULL AS {types[c]}) AS {c}")
            for c in columns)
        branches.append(f"SELECT {select} FROM read_parquet({files}, union_by_name=true)")
    if not branches:
        branches.append("SELECT " + ", ".join(f"CAST(NULL AS {types[c]}) AS {c}" for c in columns) + " WHERE false")
    con.execute(f"CREATE OR REPLACE VIEW {table} AS " + "\nUNION ALL\n".join(branches))


def _add_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Give each existing table the SCHEMA columns it lacks: a catalog made by older code gains the
    columns added since (NULL in its old rows), so it keeps working with newer code."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    for table, columns in {**SCHEMA, **DATASET_SCHEMA}.items():
        if table not in tables:
            continue
        present = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        for column in columns.split(","):
            name, kind = column.split(maxsplit=1)
            if name not in present:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


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


# The storage format the catalog is written in: the one DuckDB 1.5 reads, so the DuckDB CLI a user
# installs (`pip install duckdb-cli`, 1.5.x the newest there) opens it; DuckDB 2.0's own format
# ("v2.0.0+", the default of the duckdb Refinery pins) it refuses ("version number 69").
CATALOG_STORAGE_VERSION = "v1.5.0"


def _rewrite_in_readable_storage(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Rewrite a catalog that an older Refinery wrote in DuckDB 2.0's storage format into
    CATALOG_STORAGE_VERSION (once: tables, views, macros and rows copied into a new file that then
    replaces the old one atomically); True when it did, and ``con`` is closed.

    Called on a connection that writes, so under the home's run lock: nothing else writes meanwhile.
    A rewrite cut short leaves the old file as it was, and the next writer tries again.
    """
    (tags,) = con.execute(
        "SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    found = dict(tags or {}).get("storage_version", "")  # e.g. "v2.0.0+": DuckDB 2.0 and later read it
    written, readable = (tuple(int(n) for n in re.findall(r"\d+", v)[:3]) for v in (found, CATALOG_STORAGE_VERSION))
    if not written or written <= readable:
        return False
    started = time.monotonic()
    fresh = path.with_name(path.name + ".rewrite")
    for stale in (fresh, fresh.with_name(fresh.name + ".wal")):
        stale.unlink(missing_ok=True)
    (name,) = con.execute("SELECT current_database()").fetchone()
    try:
        con.execute(f"ATTACH {_sql_literal(str(fresh))} AS refinery_rewrite "
                    f"(STORAGE_VERSION {_sql_literal(CATALOG_STORAGE_VERSION)})")
        con.execute(f'COPY FROM DATABASE "{name.replace(chr(34), chr(34) * 2)}" TO refinery_rewrite')
        con.execute("DETACH refinery_rewrite")
    except duckdb.Error as exc:
        fresh.unlink(missing_ok=True)
        raise CatalogError(f"cannot rewrite {path} in DuckDB {CATALOG_STORAGE_VERSION} storage: {exc}") from exc
    finally:
        con.close()
    os.replace(fresh, path)
    logging.getLogger(__name__).warning(
        "rewrote the catalog %s from DuckDB storage %s to %s (%.1f s), so that the DuckDB 1.5 CLI "
        "(pip install duckdb-cli) opens it", path, found, CATALOG_STORAGE_VERSION, time.monotonic() - started)
    return True


def _connect_waiting(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the catalog, waiting up to READ_LOCK_WAIT_S while another process holds its file lock
    (the flow process during one write transaction, or a reader during one query).

    A writer creates a new catalog in CATALOG_STORAGE_VERSION, and rewrites one in a newer format
    (:func:`_rewrite_in_readable_storage`); DuckDB keeps a file's format on later writes.
    """
    deadline = time.monotonic() + READ_LOCK_WAIT_S
    delay = 0.05
    rewritten = False
    while True:
        config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        if not read_only and not path.exists():
            config["storage_compatibility_version"] = CATALOG_STORAGE_VERSION
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            register_filesystems(con)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise CatalogError(f"cannot open {path} {'for reading' if read_only else 'to write'}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        if read_only or rewritten or not _rewrite_in_readable_storage(con, path):
            return con
        rewritten = True  # open the rewritten file


class Catalog(RunVerbs, BookVerbs, CurationVerbs, DatasetVerbs, EvaluationVerbs, ExportVerbs, ModelVerbs,
              ReportVerbs):
    """The catalog file and its verbs: connections, schema and registering shards here; the
    verbs of each part of the chain in their own module (storage/runs_log.py, books.py,
    curation.py, evaluation.py, reports.py)."""

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
            for table, columns in {**SCHEMA, **DATASET_SCHEMA}.items():
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            _add_columns(con)
            for table in SHARD_TABLES:
                _rebuild_view(con, table)
            rebuild_dataset_views(con)
            for view, body in VIEWS.items():
                con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")
        return self

    def add_new_columns(self) -> "Catalog":
        """Give a catalog made by older code the columns added since (SCHEMA's columns it lacks), and
        nothing else: unlike :meth:`ensure_schema`, no view is rebuilt over the shards."""
        with self._write() as con:
            _add_columns(con)
        return self

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one of Refinery's own read-only queries; the answer as an Arrow table."""
        with self._read() as con:
            return self._answer(con, sql, params)

    def user_query(self, sql: str) -> pa.Table:
        """Run SQL a person wrote (`refinery sql`, `sql:` positives) through the door that only reads.

        One read statement (:func:`read_statement`), on a read-only connection whose file access
        is limited to the data home and whose configuration is locked, so neither ``COPY … TO``
        nor ``read_text('/etc/passwd')`` nor ``SET``/``ATTACH``/``INSTALL`` gets through. The data
        home is the catalog's folder and the home of each run it records (a home in object storage
        keeps its catalog elsewhere).
        """
        statement = read_statement(sql)
        with self._read() as con:
            homes = {str(self.path.parent.resolve()) + os.sep}
            for (run_dir,) in con.execute("SELECT DISTINCT run_dir FROM runs WHERE run_dir IS NOT NULL").fetchall():
                homes.add(run_dir.rstrip("/").rsplit("/runs/", 1)[0] + "/")
            con.execute("SET allowed_directories = ?", [sorted(homes)])
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

    def _execute_write(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """One write statement in its own transaction (verbs only: SQL text stays in storage/)."""
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
        if table in SHARD_TABLES:
            return self._register_shards(table, run_id, parquet, where or {}, rows)
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

    def _register_shards(self, table: str, run_id: str, parquet: Sequence[str | os.PathLike[str]],
                         where: dict[str, str], rows: pa.Table | None) -> int:
        """Record which files hold ``run_id``'s rows of a shard table and rebuild its view; the rows
        stay in the files. Replacing keeps the same semantics as for a table."""
        if rows is not None and rows.num_rows:
            raise CatalogError(f"{table} rows live in Parquet shards: register files, not rows")
        files = sorted(str(p) if is_remote(p) else str(Path(p).resolve()) for p in parquet)
        part = json.dumps(where, sort_keys=True)
        with self._write() as con:
            con.execute("DELETE FROM shard_files WHERE run_id = ? AND tbl = ? AND part = ?", [run_id, table, part])
            count = 0
            if files:
                source = "read_parquet(?, union_by_name=true)"
                present = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}", [files]).fetchall()]
                count = con.execute(f"SELECT count(*) FROM {source}", [files]).fetchone()[0]
                con.execute("INSERT INTO shard_files VALUES (?, ?, ?, ?, ?)", [run_id, table, part, files, present])
            _rebuild_view(con, table)
            return count

    def shard_paths(self, table: str, run_id: str) -> list[str]:
        """The Parquet files registered as ``run_id``'s rows of a shard table."""
        rows = self.query("SELECT paths FROM shard_files WHERE run_id = ? AND tbl = ? ORDER BY part", [run_id, table])
        return [p for paths in rows.column("paths").to_pylist() for p in paths]

    def copy_run_rows(self, table: str, source: str, target: str, *, where: dict[str, str] | None = None,
                      paths: tuple[str, str] | None = None) -> int:
        """Copy ``source``'s rows of ``table`` (narrowed by ``where``) to run ``target``, replacing
        ``target``'s; ``paths=(old, new)`` rewrites that prefix of file paths (shard tables' files,
        ``models.path``). Metadata only: a shard table's files are registered, not read."""
        old, new = paths or ("", "")
        with self._write() as con:
            if table in SHARD_TABLES:
                part = json.dumps(where or {}, sort_keys=True)
                con.execute("DELETE FROM shard_files WHERE run_id = ? AND tbl = ? AND part = ?", [target, table, part])
                con.execute("INSERT INTO shard_files SELECT ?, tbl, part, list_transform(paths, lambda p: "
                            "CASE WHEN starts_with(p, ?) THEN ? || p[length(?) + 1:] ELSE p END), columns "
                            "FROM shard_files WHERE run_id = ? AND tbl = ? AND part = ?",
                            [target, old, new, old, source, table, part])
                _rebuild_view(con, table)
                return con.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [target]).fetchone()[0]
            filters = {"run_id": source, **(where or {})}
            cond = " AND ".join(f"{k} = ?" for k in filters)
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            con.execute(f"DELETE FROM {table} WHERE {cond}", [target, *list(filters.values())[1:]])
            select = ", ".join("? AS run_id" if c == "run_id" else
                               ("CASE WHEN starts_with(path, ?) THEN ? || path[length(?) + 1:] ELSE path END"
                                if c == "path" else c) for c in columns)
            params = [target, *([old, new, old] if "path" in columns else [])]
            return con.execute(f"INSERT INTO {table} SELECT {select} FROM {table} WHERE {cond}",
                               [*params, *filters.values()]).fetchone()[0]

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Every row of these runs, in every table (and their shard registrations)."""
        if not run_ids:
            return
        with self._write() as con:
            for table in SCHEMA:
                con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)])
            for table in SHARD_TABLES:
                _rebuild_view(con, table)
