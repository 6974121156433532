"""Catalog verbs: ingest, dedup and quality rows: duplicate record ids, drops by reason, the quality stage's decisions.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

# Later occurrences of each doc id in reading order, with the location of the first. The shards'
# place in reading order comes as parallel lists (one entry per shard); within a text unit each
# record is a file, whose location orders it among the source's files. Repeats are found by a hash
# of the doc id (8 bytes a document, where grouping the ids and keeping the scan for the second
# pass held ~230 MB in the flow process at 1M documents); a hash shared by two different ids
# puts each in a window of its own, so it rejects nothing.
LATER_OCCURRENCES_SQL = """
WITH shard AS (
    SELECT unnest(?::VARCHAR[]) AS filename, unnest(?::BIGINT[]) AS source_index,
           unnest(?::VARCHAR[]) AS unit_file, unnest(?::BIGINT[]) AS unit, unnest(?::BIGINT[]) AS part
), docs AS NOT MATERIALIZED (
    SELECT filename, file_row_number AS row, doc_id, record_id, location
    FROM read_parquet(?::VARCHAR[], filename = true, file_row_number = true)
), repeated AS (
    SELECT hash(doc_id) AS h FROM docs GROUP BY h HAVING count(*) > 1
), ranked AS (
    SELECT d.filename, d.location, d.record_id, row_number() OVER w AS n, first_value(d.location) OVER w AS first
    FROM docs d JOIN shard s USING (filename)
    WHERE hash(d.doc_id) IN (SELECT h FROM repeated)
    WINDOW w AS (PARTITION BY d.doc_id
                 ORDER BY s.source_index, coalesce(s.unit_file, d.location), s.unit, s.part, d.row)
)
SELECT filename, location, record_id, first FROM ranked WHERE n > 1 ORDER BY filename, location
"""

# Per source: the `duplicate_id` rejects in the reject shards ($1), how many could be compared with
# the record that kept their id (in the document shards, $2), how many of those carry a different
# text, and how many of those have their first occurrence in another file (what `id_scope: file`
# would keep), with one such reject as an example. The kept record is found by source, record id
# and the location the reason names (`duplicate_id: <id> (first at <location>)`: the last "(first
# at" starts it). A reject's raw record is its record as ingested in JSON, cut at 100,000
# characters: a cut one (not valid JSON) is not compared. The shards are read, not the catalog's
# rejects table (whose blocks would stay in the flow process's buffer pool), and texts are compared
# by hash on both sides, so no text is held by the join. A location's file is its text before
# `:<line or row>` (a text file's location is its file).
DUPLICATE_ID_TEXTS_SQL = r"""
WITH dup AS (
    SELECT source, location, regexp_extract(reason, '^.*\(first at (.*)\)$', 1) AS first,
           CASE WHEN json_valid(record) THEN json_extract_string(record, '$.record_id') END AS record_id,
           CASE WHEN json_valid(record) THEN hash(json_extract_string(record, '$.text')) END AS text_hash
    FROM read_parquet($1::VARCHAR[]) WHERE starts_with(reason, 'duplicate_id:')
), kept AS (
    SELECT source, location, record_id, hash(text) AS text_hash FROM read_parquet($2::VARCHAR[])
    WHERE location IN (SELECT first FROM dup)
), pair AS (
    SELECT d.source, d.location, d.first, k.text_hash IS NOT NULL AS compared,
           k.text_hash IS DISTINCT FROM d.text_hash AS differs,
           regexp_replace(d.location, ':[0-9]+$', '') <> regexp_replace(d.first, ':[0-9]+$', '') AS other_file
    FROM dup d LEFT JOIN kept k
        ON k.source = d.source AND k.location = d.first AND k.record_id = d.record_id AND d.text_hash IS NOT NULL
)
SELECT source, count(*) AS rejects, count(*) FILTER (WHERE compared) AS compared,
       count(*) FILTER (WHERE compared AND differs) AS different_text,
       count(*) FILTER (WHERE compared AND differs AND other_file) AS other_file,
       min(location) FILTER (WHERE compared AND differs AND other_file) AS example,
       arg_min(first, location) FILTER (WHERE compared AND differs AND other_file) AS example_first
FROM pair GROUP BY source ORDER BY source
"""


class CurationVerbs:
    """Verbs for ingest, dedup and quality rows: duplicate record ids, drops by reason, the quality stage's decisions (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""

    # -- ingest -------------------------------------------------------------------------------
    def later_occurrences(self, shards: Sequence[tuple[str, int, str | None, int, int]]) -> pa.Table:
        """Every later occurrence of a doc id in document shards, in reading order, from their ids and
        locations alone (never their text): ``filename, location, record_id, first`` (the location
        of the id's first occurrence). ``shards``: each shard's place in reading order, as
        ``(path, source index, the unit's one file or None for a unit of whole files, unit, part)``."""
        columns: tuple[list[Any], ...] = tuple(list(c) for c in zip(*shards)) if shards else ([], [], [], [], [])
        return self.query(LATER_OCCURRENCES_SQL, [*columns, columns[0]])

    def duplicate_id_texts(self, reject_shards: Sequence[str], document_shards: Sequence[str]) -> list[dict[str, Any]]:
        """Per source of the ``duplicate_id`` rejects in ``reject_shards``: ``source, rejects, compared``
        (those whose raw record could be compared with the record that kept the id, in
        ``document_shards``), ``different_text`` (of those, the ones whose text differs),
        ``other_file`` (of those, the ones whose first occurrence is in another file) and ``example,
        example_first`` (the location of one such reject and of the record that kept its id; None
        when there is none). The texts are compared by hash, in SQL over the shards."""
        if not reject_shards or not document_shards:
            return []
        return self.query(DUPLICATE_ID_TEXTS_SQL, [[str(p) for p in reject_shards],
                                                   [str(p) for p in document_shards]]).to_pylist()

    # -- quality --------------------------------------------------------------------------------
    def drops_by_reason(self, run_id: str, stage: str) -> list[dict[str, Any]]:
        """``[{"reason", "docs"}]``: how many documents of the run ``stage`` dropped for each reason,
        most first (ties by reason)."""
        return self.query(
            "SELECT reason, count(*) AS docs FROM drops WHERE run_id = ? AND stage = ?"
            " GROUP BY reason ORDER BY docs DESC, reason", [run_id, stage]).to_pylist()

    def drop_example(self, run_id: str, stage: str, reason: str, attribute: str,
                     chars: int, source: str | None = None) -> tuple[str, str, float | None] | None:
        """``(doc_id, the first chars of its text, its value of attribute)`` of one document ``stage``
        dropped for ``reason`` (of ``source`` if given; the smallest hash of its doc id: the same
        every time), or None."""
        in_source = "" if source is None else (
            " AND doc_id IN (SELECT doc_id FROM documents WHERE run_id = $1 AND source = $6)")
        rows = self.query(
            "SELECT x.doc_id, left(d.text, $2) AS text, (SELECT max(a.value) FROM doc_attributes a WHERE a.run_id = $1"
            " AND a.doc_id = x.doc_id AND a.name = $3) AS value"
            f" FROM (SELECT doc_id FROM drops WHERE run_id = $1 AND stage = $4 AND reason = $5{in_source}"
            " ORDER BY hash(doc_id), doc_id LIMIT 1) x JOIN documents d ON d.run_id = $1 AND d.doc_id = x.doc_id",
            [run_id, chars, attribute, stage, reason] + ([] if source is None else [source])).to_pylist()
        return (rows[0]["doc_id"], rows[0]["text"] or "", rows[0]["value"]) if rows else None

    def quality_reach_by_source(self, run_id: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Per source: the documents the quality stage decided (those dedup kept), and its drops by reason."""
        rows = self.query("""
            SELECT d.source, x.stage, x.reason, count(*) AS docs FROM documents d
            LEFT JOIN (SELECT doc_id, stage, reason FROM drops WHERE run_id = $1 AND stage IN ('dedup', 'quality')) x
                ON x.doc_id = d.doc_id
            WHERE d.run_id = $1 GROUP BY ALL""", [run_id]).to_pylist()
        reached: dict[str, int] = {}
        drops: dict[str, dict[str, int]] = {}
        for r in rows:
            if r["stage"] != "dedup":
                reached[r["source"]] = reached.get(r["source"], 0) + r["docs"]
            if r["stage"] == "quality":
                drops.setdefault(r["source"], {})[r["reason"]] = r["docs"]
        return reached, drops

    def put_quality_classifier(self, run_id: str, *, name: str, path: str, accuracy: float, auc: float) -> None:
        """Register the run's trained quality classifier (``models``) and its held-out figures
        (``metrics``, stage quality), replacing a previous attempt's."""
        self.replace("models", run_id, where={"name": name}, rows=pa.table({
            "name": [name], "path": [path], "base": ["fasttext"], "created_at": [datetime.now(timezone.utc)]}))
        self.replace("metrics", run_id, where={"stage": "quality"}, rows=pa.table({
            "stage": ["quality"] * 2, "model": [name] * 2, "task": ["classifier_holdout"] * 2,
            "metric": ["accuracy", "auc"], "value": [accuracy, auc]}))
