"""Catalog verbs: named datasets that grow night by night, their versions, and what they remember of their inputs.

A dataset's documents stay in the Parquet files its nights published, hard-linked under
``<home>/datasets/dataset=NAME/added_in=RUN/`` (so deleting a run's folder takes nothing from the
dataset). The catalog keeps, per dataset:

- ``dataset_versions``: one row per publishing night (its files, its index files, counts);
- ``dataset_retired``: each document a later night retired, with the night and the reason;
- ``dataset_inputs``: each input file as a night read it (size, mtime, content hash), so the next
  night reads only what is new.

Views (rebuilt in the transaction that publishes a version, so a reader sees one version or the
next, never half of one): ``dataset_documents`` (every document ever published: one ``read_parquet``
over the published files, whatever the number of nights), ``curated`` (those not retired) and the
table macro ``curated_at(dataset, version)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from refinery.tasks.exceptions import AccountingError

DATASET_SCHEMA: dict[str, str] = {
    "dataset_versions": """
        dataset VARCHAR, version VARCHAR, seq BIGINT, published_at TIMESTAMPTZ, docs_added BIGINT,
        docs_retired BIGINT, docs_total BIGINT, files VARCHAR[], index_files VARCHAR[], dedup JSON,
        scored_files VARCHAR[], quality JSON""",
    "dataset_retired": "dataset VARCHAR, doc_id VARCHAR, added_in VARCHAR, retired_in VARCHAR, reason VARCHAR",
    "dataset_inputs": """
        dataset VARCHAR, version VARCHAR, source VARCHAR, path VARCHAR, size BIGINT, mtime_ns BIGINT, hash VARCHAR,
        lines BIGINT, ends_line BOOLEAN, status VARCHAR""",
    # A dataset's frozen evaluation: the query sets its first evaluated night scored, kept for every
    # later night (``doc_id``: a relevant document then, or the passage a held-out query was asked
    # of; ``passage``: that passage's text, for held-out queries).
    "evaluation_sets": """
        dataset VARCHAR, task VARCHAR, query VARCHAR, doc_id VARCHAR, passage VARCHAR, frozen_by VARCHAR,
        frozen_at TIMESTAMPTZ""",
}

DOCUMENT_COLUMNS = ("doc_id", "source", "location", "title", "text", "label", "n_chars", "record_id", "url",
                    "domain", "fetched_at", "lang")
_TYPES = {"doc_id": "VARCHAR", "source": "VARCHAR", "location": "VARCHAR", "title": "VARCHAR", "text": "VARCHAR",
          "label": "VARCHAR", "n_chars": "BIGINT", "record_id": "VARCHAR", "url": "VARCHAR", "domain": "VARCHAR",
          "fetched_at": "TIMESTAMPTZ", "lang": "VARCHAR"}

REASON_CHANGED = "source_changed"
REASON_REMOVED = "source_removed"
# a newer fetch of the document's URL took its place (tasks/dedup/urls.py)
REASON_URL = "dedup_url"
# its domain is on dedup.url_blocklist now
REASON_BLOCKLIST = "url_blocklist"

# The documents of a dataset that are current (published and not retired), before this night's publish.
_CURRENT = """
    SELECT d.dataset, d.doc_id, d.added_in, d.source, d.location FROM dataset_documents d
    WHERE d.dataset = $ds AND NOT EXISTS (SELECT 1 FROM dataset_retired r
        WHERE r.dataset = d.dataset AND r.doc_id = d.doc_id AND r.added_in = d.added_in)"""
# A document's input file: its location less a ":line" / ":row" suffix (a text file's location is its file).
_FILE_OF = "regexp_replace(c.location, ':[0-9]+$', '')"


def sql_literal(value: str) -> str:
    """``value`` as a SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def rebuild_dataset_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create ``dataset_documents``, ``curated`` and ``curated_at`` over every published file."""
    files = [f for (paths,) in con.execute("SELECT files FROM dataset_versions ORDER BY dataset, seq").fetchall()
             for f in paths]
    if files:
        listed = "[" + ", ".join(map(sql_literal, files)) + "]"
        source = (f"read_parquet({listed}, hive_partitioning = true, "
                  "hive_types = {'dataset': VARCHAR, 'added_in': VARCHAR}, union_by_name = true)")
        # files published before a column existed lack it (NULL); if every file does, no name binds
        present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        columns = ", ".join(f"CAST({c if c in present else 'NULL'} AS {_TYPES[c]}) AS {c}" for c in DOCUMENT_COLUMNS)
        body = f"SELECT CAST(dataset AS VARCHAR) AS dataset, {columns}, CAST(added_in AS VARCHAR) AS added_in FROM {source}"
    else:
        body = ("SELECT CAST(NULL AS VARCHAR) AS dataset, "
                + ", ".join(f"CAST(NULL AS {_TYPES[c]}) AS {c}" for c in DOCUMENT_COLUMNS)
                + ", CAST(NULL AS VARCHAR) AS added_in WHERE false")
    con.execute(f"CREATE OR REPLACE VIEW dataset_documents AS {body}")
    con.execute("""CREATE OR REPLACE VIEW curated AS SELECT d.* FROM dataset_documents d
        WHERE NOT EXISTS (SELECT 1 FROM dataset_retired r
                          WHERE r.dataset = d.dataset AND r.doc_id = d.doc_id AND r.added_in = d.added_in)""")
    con.execute("""CREATE OR REPLACE MACRO curated_at(ds, v) AS TABLE
        WITH asked AS (SELECT seq FROM dataset_versions WHERE dataset = ds AND version = v)
        SELECT d.* FROM dataset_documents d JOIN dataset_versions a ON a.dataset = d.dataset AND a.version = d.added_in
        WHERE d.dataset = ds AND a.seq <= (SELECT seq FROM asked)
          AND NOT EXISTS (SELECT 1 FROM dataset_retired r JOIN dataset_versions b
                          ON b.dataset = r.dataset AND b.version = r.retired_in
                          WHERE r.dataset = d.dataset AND r.doc_id = d.doc_id AND r.added_in = d.added_in
                            AND b.seq <= (SELECT seq FROM asked))""")


# -- refilter of a dataset: re-decide every document its versions scored, under new thresholds ----

# Per doc id, its latest decision: of the (doc_id, reason, scored_in, source, location) rows of the
# decisions files, the one scored by the newest version (a record read again with another text is
# scored again; what decides the document is how it reads now), with the file it is in.
_LATEST_DECISIONS = """
    SELECT d.doc_id, d.reason, d.scored_in, d.source, d.location, d.filename, v.seq
    FROM read_parquet($decisions::VARCHAR[], filename = true) d
    JOIN dataset_versions v ON v.dataset = $ds AND v.version = d.scored_in
    QUALIFY row_number() OVER (PARTITION BY d.doc_id ORDER BY v.seq DESC) = 1"""
# The current documents whose latest decision now fails: (doc_id, added_in, reason).
_NOW_FAILING = f"""
    SELECT c.doc_id, c.added_in, l.reason FROM ({_CURRENT}) c JOIN ({_LATEST_DECISIONS}) l ON l.doc_id = c.doc_id
    WHERE l.reason IS NOT NULL"""
# Documents whose latest decision now passes and that are not current: (doc_id, scored_in, the
# decisions file that says so). Left
# out: a doc id current under another text (superseded), one retired for a source reason, a newer
# fetch of its URL or a blocked domain after it was scored, and one whose input file a later night found changed (a record still there was read
# and scored again then) or removed from a mirrored source ($mirror).
_NOW_PASSING = f"""
    SELECT l.doc_id, l.scored_in, l.filename AS decisions FROM ({_LATEST_DECISIONS}) l
    WHERE l.reason IS NULL
      AND NOT EXISTS (SELECT 1 FROM ({_CURRENT}) c WHERE c.doc_id = l.doc_id)
      AND NOT EXISTS (SELECT 1 FROM dataset_retired r JOIN dataset_versions b
                      ON b.dataset = r.dataset AND b.version = r.retired_in
                      WHERE r.dataset = $ds AND r.doc_id = l.doc_id AND b.seq > l.seq
                        AND r.reason IN ('{REASON_CHANGED}', '{REASON_REMOVED}', '{REASON_URL}', '{REASON_BLOCKLIST}'))
      AND NOT EXISTS (SELECT 1 FROM dataset_inputs i JOIN dataset_versions b
                      ON b.dataset = i.dataset AND b.version = i.version
                      WHERE i.dataset = $ds AND i.source = l.source AND b.seq > l.seq
                        AND (i.path = l.location OR i.path = regexp_replace(l.location, ':[0-9]+$', ''))
                        AND (i.status = 'changed'
                             OR (i.status = 'removed' AND list_contains($mirror::VARCHAR[], i.source))))"""


def _refilter_params(dataset: str, decisions: Sequence[str], mirror: Sequence[str] | None = None) -> dict[str, Any]:
    return {"ds": dataset, "decisions": list(decisions), **({} if mirror is None else {"mirror": list(mirror)})}


def record_version(con: duckdb.DuckDBPyConnection, dataset: str, version: str, *, files: Sequence[str],
                   index_files: Sequence[str], dedup: dict[str, Any], scored_files: Sequence[str],
                   quality: dict[str, str], returned: bool = False) -> dict[str, int]:
    """In the caller's transaction, once its retirements are in: the version's row and the views over
    its files, after checking the dataset's books (previous total + added − retired = what
    ``curated`` holds; with ``returned``, also that no doc id it adds is current twice)."""
    retired = con.execute("SELECT count(*) FROM dataset_retired WHERE dataset = ? AND retired_in = ?",
                          [dataset, version]).fetchall()[0][0]
    added = con.execute("SELECT count(*) FROM read_parquet(?::VARCHAR[])", [list(files)]).fetchall()[0][0] \
        if files else 0
    seq, before = con.execute("SELECT coalesce(max(seq), 0) + 1, coalesce(arg_max(docs_total, seq), 0)"
                              " FROM dataset_versions WHERE dataset = ?", [dataset]).fetchall()[0]
    total = before + added - retired
    con.execute("INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [dataset, version, seq, datetime.now(timezone.utc), added, retired, total, list(files),
                 list(index_files), json.dumps(dedup, sort_keys=True), list(scored_files),
                 json.dumps(quality, sort_keys=True)]).fetchall()
    rebuild_dataset_views(con)
    held = con.execute("SELECT count(*) FROM curated WHERE dataset = ?", [dataset]).fetchall()[0][0]
    twice = con.execute("SELECT count(*) FROM curated n JOIN curated c USING (dataset, doc_id)"
                        " WHERE n.dataset = ? AND n.added_in = ? AND c.added_in <> n.added_in",
                        [dataset, version]).fetchall()[0][0] if returned else 0
    if held != total or twice:
        raise AccountingError(f"dataset {dataset}: the books do not balance at version {version}: "
                              f"{before} before + {added} added - {retired} retired = {total}, but curated holds "
                              f"{held}" + (f", {twice} of the returned doc ids twice" if twice else ""))
    return {"version": version, "seq": seq, "docs_added": added, "docs_retired": retired, "docs_total": total}


class DatasetVerbs:
    """Verbs for datasets (mixed into Catalog: ``self._read()``, ``self._write()``, ``self.query``)."""

    def dataset_inputs_state(self, dataset: str) -> list[dict[str, Any]]:
        """What the dataset remembers of each input file: its row from the last night that read it,
        less the files that night found removed."""
        return self.query("""
            SELECT i.source, i.path, i.size, i.mtime_ns, i.hash, i.lines, i.ends_line FROM dataset_inputs i
            JOIN dataset_versions v ON v.dataset = i.dataset AND v.version = i.version
            WHERE i.dataset = $1
            QUALIFY row_number() OVER (PARTITION BY i.source, i.path ORDER BY v.seq DESC) = 1 AND i.status <> 'removed'
            ORDER BY i.source, i.path""", [dataset]).to_pylist()

    def dataset_index(self, dataset: str) -> tuple[list[str], pa.Table, dict[str, Any] | None]:
        """(the index files of every published version, the retired (doc_id, added_in) pairs, the
        dedup settings the index was built with — None for a dataset with no version yet)."""
        versions = self.query("SELECT index_files, dedup FROM dataset_versions WHERE dataset = $1 ORDER BY seq",
                              [dataset]).to_pylist()
        retired = self.query("SELECT doc_id, added_in FROM dataset_retired WHERE dataset = $1 ORDER BY doc_id, added_in",
                             [dataset])
        files = [f for v in versions for f in v["index_files"] or []]
        settings = json.loads(versions[-1]["dedup"]) if versions and versions[-1]["dedup"] else None
        return files, retired, settings

    def dataset_versions_of(self, dataset: str) -> list[dict[str, Any]]:
        """The dataset's versions, oldest first."""
        return self.query("SELECT version, seq, published_at, docs_added, docs_retired, docs_total FROM dataset_versions"
                          " WHERE dataset = $1 ORDER BY seq", [dataset]).to_pylist()

    def publish_version(self, dataset: str, version: str, *, files: Sequence[str], index_files: Sequence[str],
                        scored_files: Sequence[str], quality: dict[str, str], inputs: pa.Table, changed: Sequence[tuple[str, str]], removed: Sequence[tuple[str, str]],
                        dedup: dict[str, Any], superseded: pa.Table | None = None,
                        blocked_domains: Sequence[str] = ()) -> dict[str, int]:
        """Publish the night ``version`` of ``dataset`` in one transaction: its documents (``files``,
        the night's kept documents), its index files, its input files (``inputs``), and the
        retirements it implies — the old version of each record the night read again with another
        text, the records gone from ``changed`` files (both ``source_changed``) and the documents of
        ``removed`` files (``source_removed``), each a (source, file location) pair, and the
        ``superseded`` documents (doc_id, added_in) that a newer fetch of their URL replaces
        (``dedup_url``), and the documents of ``blocked_domains`` (``url_blocklist``). The dataset's
        books are checked before the commit (``quality``: the fingerprints of the quality families the
        night scored with, which a refilter of the dataset checks): previous total + added − retired = the new total.
        Publishing the same night again replaces what it published."""
        pairs = lambda rows: pa.table({"source": [s for s, _ in rows], "path": [p for _, p in rows]},  # noqa: E731
                                      schema=pa.schema([("source", pa.string()), ("path", pa.string())]))
        with self._write() as con:
            for table, column in (("dataset_versions", "version"), ("dataset_retired", "retired_in"),
                                  ("dataset_inputs", "version")):
                con.execute(f"DELETE FROM {table} WHERE dataset = ? AND {column} = ?", [dataset, version]).fetchall()
            rebuild_dataset_views(con)
            con.register("changed_files", pairs(changed))
            con.register("removed_files", pairs(removed))
            params = {"ds": dataset, "v": version}
            current = _CURRENT
            con.execute(f"""
                INSERT INTO dataset_retired
                SELECT c.dataset, c.doc_id, c.added_in, $v, '{REASON_CHANGED}' FROM ({current}) c
                WHERE c.doc_id IN (SELECT doc_id FROM documents WHERE run_id = $v)
                  AND c.doc_id NOT IN (SELECT doc_id FROM drops WHERE run_id = $v AND reason = 'dataset_unchanged')
                UNION ALL
                SELECT c.dataset, c.doc_id, c.added_in, $v, '{REASON_CHANGED}' FROM ({current}) c
                JOIN changed_files f ON f.source = c.source AND (f.path = c.location OR f.path = {_FILE_OF})
                WHERE c.doc_id NOT IN (SELECT doc_id FROM documents WHERE run_id = $v)
                UNION ALL
                SELECT c.dataset, c.doc_id, c.added_in, $v, '{REASON_REMOVED}' FROM ({current}) c
                JOIN removed_files f ON f.source = c.source AND (f.path = c.location OR f.path = {_FILE_OF})
                """, params).fetchall()
            if superseded is not None and superseded.num_rows:  # after the rest: a document is retired once
                con.register("superseded_docs", superseded.select(["doc_id", "added_in"]))
                con.execute(f"""
                    INSERT INTO dataset_retired SELECT c.dataset, c.doc_id, c.added_in, $v, '{REASON_URL}' FROM ({current}) c
                    SEMI JOIN superseded_docs s ON s.doc_id = c.doc_id AND s.added_in = c.added_in""", params).fetchall()
            if blocked_domains:
                con.register("blocked_domains", pa.table({"domain": pa.array(list(blocked_domains), pa.string())}))
                con.execute(f"""
                    INSERT INTO dataset_retired SELECT d.dataset, d.doc_id, d.added_in, $v, '{REASON_BLOCKLIST}'
                    FROM curated d SEMI JOIN blocked_domains b ON b.domain = d.domain
                    WHERE d.dataset = $ds""", params).fetchall()
            if inputs.num_rows:
                con.register("_inputs", inputs)
                con.execute("INSERT INTO dataset_inputs SELECT ?, ?, source, path, size, mtime_ns, hash, lines, ends_line,"
                            " status FROM _inputs", [dataset, version]).fetchall()
            return record_version(con, dataset, version, files=files, index_files=index_files, dedup=dedup,
                                  scored_files=scored_files, quality=quality)

    def dataset_domains(self, dataset: str) -> list[str]:
        """The distinct domains of the dataset's current documents (one column of its files read)."""
        return self.query("SELECT DISTINCT domain FROM curated WHERE dataset = $1 AND domain IS NOT NULL"
                          " ORDER BY domain", [dataset]).column("domain").to_pylist()

    def dataset_files(self, dataset: str) -> list[tuple[str, list[str]]]:
        """(version, its published documents files) of every version of the dataset, oldest first."""
        rows = self.query("SELECT version, files FROM dataset_versions WHERE dataset = $1 ORDER BY seq", [dataset])
        return [(r["version"], list(r["files"] or [])) for r in rows.to_pylist()]

    def version_files(self, dataset: str, version: str) -> list[dict[str, Any]]:
        """The documents of ``version`` as files: ``[{"path", "retired"}]``, every file the dataset
        published up to that version (oldest first) with the doc ids in it that the dataset had
        retired by then (a file holds one version's documents, so a retired (doc id, added in)
        names its file's version). What the model half of a night reads."""
        return self.query("""
            WITH asked AS (SELECT seq FROM dataset_versions WHERE dataset = $1 AND version = $2),
            gone AS (
                SELECT r.added_in, list(r.doc_id ORDER BY r.doc_id) AS retired FROM dataset_retired r
                JOIN dataset_versions b ON b.dataset = r.dataset AND b.version = r.retired_in
                WHERE r.dataset = $1 AND b.seq <= (SELECT seq FROM asked) GROUP BY r.added_in
            )
            SELECT f.path, coalesce(g.retired, []) AS retired
            FROM (SELECT v.version, v.seq, unnest(v.files) AS path FROM dataset_versions v
                  WHERE v.dataset = $1 AND v.seq <= (SELECT seq FROM asked)) f
            LEFT JOIN gone g ON g.added_in = f.version ORDER BY f.seq, f.path""", [dataset, version]).to_pylist()

    def replace_index(self, dataset: str, index_files: dict[str, list[str]], dedup: dict[str, Any]) -> None:
        """Point every version of the dataset at its new index files (``refinery dataset reindex``),
        built under the dedup settings ``dedup``, in one transaction."""
        with self._write() as con:
            for version, files in index_files.items():
                con.execute("UPDATE dataset_versions SET index_files = ?, dedup = ? WHERE dataset = ? AND version = ?",
                            [files, json.dumps(dedup, sort_keys=True), dataset, version]).fetchall()

    def retired_by_reason(self, dataset: str, version: str) -> list[dict[str, Any]]:
        """``[{"reason", "docs"}]``: what version ``version`` retired from the dataset, by reason."""
        return self.query("SELECT reason, count(*) AS docs FROM dataset_retired WHERE dataset = $1 AND retired_in = $2"
                          " GROUP BY reason ORDER BY docs DESC, reason", [dataset, version]).to_pylist()

    def replaced_across_files(self, dataset: str, version: str) -> list[dict[str, Any]]:
        """Per source, the documents ``version`` replaced with a record of the same id read from
        another file (``[{"source", "docs", "example"}]``): under ``id_scope: source`` a folder whose
        files number their ids from 0 each makes every night replace the last one's documents."""
        return self.query(f"""
            WITH old AS (SELECT r.doc_id, d.source, {_FILE_OF.replace("c.", "d.")} AS file FROM dataset_retired r
                         JOIN dataset_documents d USING (dataset, doc_id, added_in)
                         WHERE r.dataset = $1 AND r.retired_in = $2 AND r.reason = '{REASON_CHANGED}'),
                 new AS (SELECT doc_id, {_FILE_OF.replace("c.", "")} AS file FROM documents WHERE run_id = $2)
            SELECT old.source, count(*) AS docs, min(old.file || ' -> ' || new.file) AS example
            FROM old JOIN new USING (doc_id) WHERE old.file <> new.file GROUP BY ALL ORDER BY docs DESC""",
            [dataset, version]).to_pylist()

    # -- refilter of a dataset (`refinery refilter --dataset`) ---------------------------------------

    def dataset_refilter_sources(self, dataset: str) -> list[dict[str, Any]]:
        """Per version of ``dataset``, oldest first: what a refilter reads and checks (its scored files,
        the quality fingerprints it scored with, its index files and dedup settings) and its total."""
        rows = self.query("SELECT version, seq, docs_total, scored_files, quality, index_files, dedup"
                          " FROM dataset_versions WHERE dataset = $1 ORDER BY seq", [dataset]).to_pylist()
        for row in rows:
            row["quality"] = json.loads(row["quality"]) if row["quality"] else None
            row["dedup"] = json.loads(row["dedup"]) if row["dedup"] else None
            row["scored_files"] = list(row["scored_files"] or [])
            row["index_files"] = list(row["index_files"] or [])
        return rows

    def dataset_names(self) -> list[str]:
        """Every dataset with a published version."""
        return [r["dataset"] for r in self.query(
            "SELECT DISTINCT dataset FROM dataset_versions ORDER BY dataset").to_pylist()]

    def dataset_refilter_plan(self, dataset: str, decisions: Sequence[str],
                              mirror: Sequence[str]) -> tuple[pa.Table, pa.Table]:
        """What the decisions files (``doc_id, reason, scored_in, source, location``: every document
        the dataset's versions scored, re-decided) change: (the current documents that now fail:
        ``doc_id, added_in, reason``; the documents that now pass and may come back: ``doc_id,
        scored_in, decisions`` — the decisions file that says so). ``mirror``: the sources whose
        removed files retire their documents."""
        if not decisions:
            return (pa.table({"doc_id": pa.array([], pa.string()), "added_in": pa.array([], pa.string()),
                              "reason": pa.array([], pa.string())}),
                    pa.table({"doc_id": pa.array([], pa.string()), "scored_in": pa.array([], pa.string()),
                              "decisions": pa.array([], pa.string())}))
        with self._read() as con:
            failing = con.sql(f"{_NOW_FAILING} ORDER BY c.doc_id, c.added_in",
                              params=_refilter_params(dataset, decisions)).to_arrow_table()
            passing = con.sql(f"{_NOW_PASSING} ORDER BY l.doc_id",
                              params=_refilter_params(dataset, decisions, mirror)).to_arrow_table()
        return failing, passing

    def publish_refilter(self, dataset: str, version: str, *, decisions: Sequence[str], files: Sequence[str],
                         index_files: Sequence[str], quality: dict[str, str],
                         dedup: dict[str, Any]) -> dict[str, int]:
        """Publish the refilter ``version`` of ``dataset`` in one transaction: the current documents
        whose latest decision in ``decisions`` now fails are retired with its reason, and ``files``
        (the documents that now pass and come back, written by a worker) are added, with their
        ``index_files``. The books are checked before the commit, as :meth:`publish_version` does:
        previous total + added − retired = the new total, and no doc id is current twice. Publishing
        the same version again replaces what it published."""
        with self._write() as con:
            for table, column in (("dataset_versions", "version"), ("dataset_retired", "retired_in")):
                con.execute(f"DELETE FROM {table} WHERE dataset = ? AND {column} = ?", [dataset, version]).fetchall()
            rebuild_dataset_views(con)
            if decisions:
                con.execute(f"INSERT INTO dataset_retired SELECT $ds, f.doc_id, f.added_in, $v, f.reason"
                            f" FROM ({_NOW_FAILING}) f",
                            {**_refilter_params(dataset, decisions), "v": version}).fetchall()
            return record_version(con, dataset, version, files=files, index_files=index_files, dedup=dedup,
                                  scored_files=[], quality=quality, returned=True)
