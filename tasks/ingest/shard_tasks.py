"""The ingest stage's work per unit and per shard (plain functions; flows/ingest.py runs them as
Prefect tasks): read one unit and write its shards; take duplicate ids out of one shard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from refinery.storage import StageMarker, read_shard, write_shard
from refinery.storage.location import location
from refinery.tasks.ingest.config import IngestConfig
from refinery.tasks.ingest.duplicates import duplicate_rejects_path, split_duplicates
from refinery.tasks.ingest.readers import Record, Reject, Unit, read_unit

DOCUMENT_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("source", pa.string()), ("location", pa.string()),
    ("title", pa.string()), ("text", pa.string()), ("label", pa.string()), ("n_chars", pa.int64()),
    ("record_id", pa.string()), ("url", pa.string()), ("domain", pa.string()),
    ("fetched_at", pa.timestamp("us", tz="UTC")), ("lang", pa.string()),
])
REJECT_SCHEMA = pa.schema([
    ("source", pa.string()), ("location", pa.string()), ("reason", pa.string()), ("record", pa.string()),
])


def _documents_table(records: list[Record]) -> pa.Table:
    # one Arrow array per column: ~4x faster than from_pylist over a dict per record
    columns = {name: [getattr(r, name) for r in records] for name in DOCUMENT_SCHEMA.names if name != "n_chars"}
    columns["n_chars"] = [len(t) for t in columns["text"]]
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in DOCUMENT_SCHEMA], schema=DOCUMENT_SCHEMA)


def ingest_unit_to_shards(unit: Unit, out_dir: Path, cfg: IngestConfig) -> dict[str, Any]:
    """Read ``unit`` and write ``documents-<unit>-<k>.parquet`` shards plus a rejects shard.

    The stats say, per input file, the records read (each record the reader found: a line, a row, a
    text file, or a damaged or unreadable part, which is one reject) and the file's size (for a file
    read in parts, from its first part only, so that the parts add up). A per-unit marker is
    written last; a unit that has one is skipped (a killed run resumes).
    """
    marker = StageMarker(out_dir, f"_unit-{unit.index:05d}")
    if (done := marker.read()) is not None:
        return done
    shards: list[str] = []
    batch: list[Record] = []
    rejects: list[dict[str, str]] = []
    docs = 0

    def flush() -> None:
        path = out_dir / f"documents-{unit.index:05d}-{len(shards):03d}.parquet"
        shards.append(str(write_shard(_documents_table(batch), path)))
        batch.clear()

    files = unit.files()
    read = dict.fromkeys(files, 0)
    for item in read_unit(unit, unicode_form=cfg.unicode_form, min_chars=cfg.min_chars, limit=cfg.limit,
                          max_chars=cfg.max_chars, max_page_chars=cfg.max_page_chars):
        file = unit.file_of(item.location)
        read[file] = read.get(file, 0) + 1
        if isinstance(item, Reject):
            rejects.append(item.__dict__)
            continue
        batch.append(item)
        docs += 1
        if len(batch) >= cfg.shard_size:
            flush()
    if batch:
        flush()
    reject_path = None
    if rejects:
        reject_path = str(write_shard(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA),
                                      out_dir / f"rejects-{unit.index:05d}.parquet"))
    first_part = unit.piece.span is None or unit.piece.span[0] == 0
    stats = {"unit": unit.index, "docs": docs, "rejects": len(rejects), "documents": shards,
             "rejects_path": reject_path,
             "files": [[loc, n, _size(files[loc]) if first_part and loc in files else 0] for loc, n in read.items()]}
    marker.write(stats)
    return stats


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:  # gone or unreadable: its records say so as rejects
        return 0


def reject_duplicates_in_shard(shard: str, reasons: dict[str, str]) -> dict[str, Any]:
    """Move the documents of ``shard`` at the locations in ``reasons`` to a rejects shard (written
    first) and rewrite ``shard`` without them, or delete it if nothing is left; both atomic."""
    kept, rejects = split_duplicates(read_shard(shard), reasons)
    reject_path = write_shard(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), duplicate_rejects_path(shard))
    if kept.num_rows:
        write_shard(kept, shard)
    else:
        location(shard).unlink()
    return {"shard": shard, "rejected": len(rejects), "kept": kept.num_rows, "rejects_path": str(reject_path)}

