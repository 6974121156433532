"""Duplicate record ids: the first record keeps its id, every later one is a reject.

A document's id is ``doc_id_for(source, record_id)`` (under the source's ``id_scope: file``, its
file is part of it too: ``doc_id_for(source, record_id, file)``); dedup, quality, ``drops`` and the
user's query sets (matched on ``documents.record_id``) all need it to name one document. So when
records share a doc id (in one file, in two files of a folder under the default ``id_scope:
source``, or in two sources given the same name), the first in reading order keeps it and each
later one is rejected as ``duplicate_id: <record id> (first at <location>)``, its record as ingested
kept as its raw record. Reading order: sources as configured, a source's files by path, a file's
records in order. Sources of different names give the same record id different doc ids, so both
records are kept.

A folder of shards that each number their ids from 0 (``split``, a per-shard export) loses every
shard but the first to such rejects under ``id_scope: source``, though their texts differ:
:func:`id_scope_warnings` names the source and the setting when most of its duplicate ids carry
another text than the record that kept the id, in another file (``Catalog.duplicate_id_texts``).

Ingest units run in parallel, so a duplicate in another unit can only be found once every unit is
written: one DuckDB query over the document shards' ids and locations, never their text
(``Catalog.later_occurrences``), finds the later occurrences, then one task per shard holding
some writes them as a rejects shard and rewrites the shard without them (deleting a shard left
empty). Each write is atomic, and the first
occurrences are never touched, so a pass that was killed and is run again finds exactly the
duplicates it had not removed yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.storage.location import Location, location
from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.decoding import storable
from refinery.tasks.ingest.readers import RAW_SNIPPET_CHARS, Unit, source_name

FAMILY = "duplicate_id"
# A source's duplicate ids look numbered per file when more than this share of its duplicate_id
# rejects carry another text than the record that kept the id, in another file ...
ID_SCOPE_SHARE = 0.5
# ... and at least this many do (a couple of repeated ids say little about how ids are numbered).
ID_SCOPE_MIN_REJECTS = 5
# A record id is named in the reason up to this many characters (an id field may hold anything).
REASON_ID_CHARS = 200
# A document shard's place in reading order: (path, source index, its unit's one file or None for a
# unit of whole files, unit index, part).
ShardPlace = tuple[str, int, str | None, int, int]


def reading_order(units: Sequence[Unit], shards_by_unit: dict[int, list[str]]) -> list[ShardPlace]:
    """Each document shard's place in reading order, for the catalog's query that finds the later
    occurrences of an id (``Catalog.later_occurrences``), from ``shards_by_unit`` (unit index →
    its document shards, in the order it wrote them)."""
    places = []
    for index, shards in sorted(shards_by_unit.items()):
        unit = units[index]
        unit_file = None if unit.whole_files else next(iter(unit.files()))  # its one file
        places += [(shard, unit.source_index, unit_file, index, part) for part, shard in enumerate(shards)]
    return places


def duplicate_reason(record_id: str, first_location: str) -> str:
    shown = record_id if len(record_id) <= REASON_ID_CHARS else record_id[:REASON_ID_CHARS] + "…"
    return f"{FAMILY}: {shown} (first at {first_location})"


def reasons_by_shard(found: pa.Table) -> dict[str, dict[str, str]]:
    """The later occurrences (``Catalog.later_occurrences``) as shard → {location of a later occurrence: its reject reason}."""
    out: dict[str, dict[str, str]] = {}
    for row in found.to_pylist():
        out.setdefault(row["filename"], {})[row["location"]] = duplicate_reason(row["record_id"], row["first"])
    return out


def duplicate_rejects_path(shard: str | Location) -> Location:
    """Where the duplicates taken out of a documents shard are kept as rejects."""
    shard = location(shard)
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


def id_scope_warnings(texts: Sequence[dict[str, Any]], sources: Sequence[SourceConfig]) -> list[dict[str, Any]]:
    """One warning per source (``Catalog.duplicate_id_texts`` rows) whose ``duplicate_id`` rejects
    mostly (> ``ID_SCOPE_SHARE``, at least ``ID_SCOPE_MIN_REJECTS``) carry a different text than the
    record that kept the id, in another file: records that ``id_scope: file`` would keep. It names
    the setting of each configured source of that name whose scope is ``source``; a source already
    under ``file`` scope gets none (its duplicates are within one file, where the setting cannot help)."""
    out = []
    for row in texts:
        settings = [f"ingest.sources[{i}].id_scope" for i, src in enumerate(sources)
                    if src.id_scope == "source" and storable(source_name(src)) == row["source"]]
        lost, rejects = row["other_file"], row["rejects"]
        if settings and lost >= ID_SCOPE_MIN_REJECTS and lost > ID_SCOPE_SHARE * rejects:
            out.append({"source": row["source"], "rejects": rejects, "different_text": row["different_text"],
                        "other_file": lost, "share": round(lost / rejects, 4), "limit": ID_SCOPE_SHARE,
                        "settings": settings, "example": row["example"], "example_first": row["example_first"]})
    return out


def id_scope_line(w: dict[str, Any]) -> str:
    """One id-scope warning as one line: the source, its share, an example and the setting to change."""
    fix = " and ".join(f"{s}: file" for s in w["settings"])
    return (f"{w['other_file']} of the {w['rejects']} {FAMILY} rejects of source {w['source']} "
            f"({w['share']:.0%} > {w['limit']:.0%}) carry a different text than the record that kept their id, "
            f"in another file (e.g. {w['example']}, its id first at {w['example_first']}): the ids look numbered "
            f"per file, and those records are lost; set {fix} to make each file's ids its own")


def id_reuse_warnings(cfg: IngestConfig, replaced: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One warning per source whose night replaced at least ``ID_SCOPE_MIN_REJECTS`` documents of the
    dataset with records of the same id read from another file (``Catalog.replaced_across_files``):
    under ``id_scope: source``, files that number their ids from 0 each make every night retire the
    last night's documents. Names the setting of each configured source of that name."""
    out = []
    for row in replaced:
        settings = [f"ingest.sources[{i}].id_scope" for i, src in enumerate(cfg.sources)
                    if src.id_scope == "source" and storable(source_name(src)) == row["source"]]
        if settings and row["docs"] >= ID_SCOPE_MIN_REJECTS:
            fix = " and ".join(f"{s}: file" for s in settings)
            out.append({"source": row["source"], "docs": row["docs"], "example": row["example"], "settings": settings,
                        "message": f"{row['docs']} documents of source {row['source']} were replaced by records of "
                                   f"the same id from another file (e.g. {row['example']}): if the ids are numbered "
                                   f"per file, these are different records; set {fix} to keep both"})
    return out
