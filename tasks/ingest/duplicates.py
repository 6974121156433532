"""Duplicate record ids: the first record keeps its id, every later one is a reject.

A document's id is ``doc_id_for(source, record_id)``; dedup, quality, ``drops`` and the user's query
sets (matched on ``documents.record_id``) all need it to name one document. So when records of a
source share an id (in one file, in two files of a folder, or in two sources given the same name),
the first in reading order keeps it and each later one is rejected as
``duplicate_id: <record id> (first at <location>)``, its record as ingested kept as its raw record.
Reading order: sources as configured, a source's files by path, a file's records in order.
Sources of different names give the same record id different doc ids, so both records are kept.

Ingest units run in parallel, so a duplicate in another unit can only be found once every unit is
written: one DuckDB query over the document shards' ids and locations (never their text) finds the
later occurrences, then one task per shard holding some writes them as a rejects shard and rewrites
the shard without them (deleting a shard left empty). Each write is atomic, and the first
occurrences are never touched, so a pass that was killed and is run again finds exactly the
duplicates it had not removed yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.tasks.ingest.readers import RAW_SNIPPET_CHARS, Unit

FAMILY = "duplicate_id"
# A record id is named in the reason up to this many characters (an id field may hold anything).
REASON_ID_CHARS = 200

# Later occurrences of each doc id in reading order, with the location of the first. The shards'
# place in reading order comes as parallel lists (one entry per shard); within a text unit each
# record is a file, whose location orders it among the source's files. Repeats are found by a hash
# of the doc id (8 bytes a document, where grouping the ids and keeping the scan for the second
# pass held ~230 MB in the flow process at 1M documents); a hash shared by two different ids
# puts each in a window of its own, so it rejects nothing.
DUPLICATES_SQL = """
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


def duplicates_query(units: Sequence[Unit], shards_by_unit: dict[int, list[str]]) -> tuple[str, list[Any]]:
    """The query finding the later occurrences in ``shards_by_unit`` (unit index → its document
    shards, in the order it wrote them) and its parameters, for the flow to run on the catalog."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [])
    for index, shards in sorted(shards_by_unit.items()):
        unit = units[index]
        unit_file = None if unit.whole_files else next(iter(unit.files()))  # its one file
        for part, shard in enumerate(shards):
            for column, value in zip(columns, (shard, unit.source_index, unit_file, index, part)):
                column.append(value)
    return DUPLICATES_SQL, [*columns, columns[0]]


def duplicate_reason(record_id: str, first_location: str) -> str:
    shown = record_id if len(record_id) <= REASON_ID_CHARS else record_id[:REASON_ID_CHARS] + "…"
    return f"{FAMILY}: {shown} (first at {first_location})"


def reasons_by_shard(found: pa.Table) -> dict[str, dict[str, str]]:
    """The query's answer as shard → {location of a later occurrence: its reject reason}."""
    out: dict[str, dict[str, str]] = {}
    for row in found.to_pylist():
        out.setdefault(row["filename"], {})[row["location"]] = duplicate_reason(row["record_id"], row["first"])
    return out


def duplicate_rejects_path(shard: str | Path) -> Path:
    """Where the duplicates taken out of a documents shard are kept as rejects."""
    shard = Path(shard)
    return shard.with_name(f"rejects-duplicate-{shard.stem.removeprefix('documents-')}.parquet")


def split_duplicates(table: pa.Table, reasons: dict[str, str]) -> tuple[pa.Table, list[dict[str, str]]]:
    """(the shard's rows without the duplicates, the duplicates as reject rows). A duplicate's raw
    record is the record as ingested (record_id, title, text, label as JSON), capped like any other."""
    locations = table.column("location").to_pylist()
    mask = pa.array([loc in reasons for loc in locations], pa.bool_())
    rejects = []
    for row in table.filter(mask).to_pylist():
        record = json.dumps({k: row[k] for k in ("record_id", "title", "text", "label")}, ensure_ascii=False)
        rejects.append({"source": row["source"], "location": row["location"], "reason": reasons[row["location"]],
                        "record": record[:RAW_SNIPPET_CHARS]})
    return table.filter(pc.invert(mask)), rejects
