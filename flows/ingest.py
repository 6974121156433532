"""ingest: raw inputs → normalized documents with stable ids, in Parquet shards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import gather, run_stage
from refinery.storage.location import location
from refinery.tasks.runs import RunSpec
from refinery.storage import Catalog, write_shard
from refinery.tasks.ingest.decoding import storable
from refinery.tasks.ingest.duplicates import FAMILY as DUPLICATE_ID
from refinery.tasks.ingest.duplicates import (duplicate_rejects_path, id_scope_line, id_scope_warnings, reading_order,
                                              reasons_by_shard)
from refinery.tasks.ingest.incremental import (INPUTS_SCHEMA, NEW, UNCHANGED, InputState, NightPlan, mirrored_removals,
                                               plan_night)
from refinery.tasks.ingest.readers import Unit
from refinery.tasks.ingest.shard_tasks import ingest_unit_to_shards, reject_duplicates_in_shard

# A unit is one file, or one part of a big one (seconds to minutes); a retry resumes from the unit's marker.
ingest_unit = task(ingest_unit_to_shards, name="ingest-unit", task_run_name="ingest {unit.source} unit {unit.index}",
                   retries=1, timeout_seconds=3600)
reject_duplicates = task(reject_duplicates_in_shard, name="ingest-duplicate-ids",
                         task_run_name="reject duplicate ids in {shard}", retries=1, timeout_seconds=1800)


def _ingest(run: RunSpec, out: Path) -> dict[str, Any]:
    catalog = run.catalog
    remembered = [InputState(**r) for r in catalog.dataset_inputs_state(run.config.dataset)]
    plan = plan_night(run.config.ingest, remembered)
    units = plan.units
    results = gather(ingest_unit.map(units, out_dir=unmapped(out), cfg=unmapped(run.config.ingest)),
                     "ingest units")
    written = {r["unit"]: r["documents"] for r in results}
    _reject_duplicate_ids(catalog, units, written)
    shards = sorted(p for paths in written.values() for p in paths if location(p).exists())
    rejects = sorted([r["rejects_path"] for r in results if r["rejects_path"]] + [
        str(d) for paths in written.values() for p in paths if (d := duplicate_rejects_path(p)).exists()])
    stats = {
        "units": len(units),
        "docs": catalog.replace("documents", run.run_id, parquet=shards),
        "rejects": catalog.replace("rejects", run.run_id, parquet=rejects),
        "files": _record_file_books(catalog, run.run_id, units, results, plan),
        "shards": shards,
        "reject_shards": rejects,
        **_inputs(run, plan, out),
    }
    # by reason family: every duplicate id has a reason of its own (its id, where its first occurrence is)
    reasons = catalog.rejects_by_reason(run.run_id)
    stats["duplicate_ids"] = sum(r["records"] for r in reasons if r["reason"] == DUPLICATE_ID)
    # ids numbered per file under id_scope: source lose records: say so (again at the end of the run)
    stats["id_scope_warnings"] = id_scope_warnings(
        catalog.duplicate_id_texts(rejects, shards) if stats["duplicate_ids"] else [], run.config.ingest.sources)
    for warning in stats["id_scope_warnings"]:
        get_run_logger().warning("run %s: %s", run.run_id, id_scope_line(warning))
    create_table_artifact(
        key="ingest-summary",
        table=[{"outcome": "document", "count": stats["docs"]}]
        + [{"outcome": f"rejected: {r['reason']}", "count": r["records"]} for r in reasons],
        description=f"Run {run.run_id}: documents ingested and records rejected (by reason).",
    )
    return stats


def _reject_duplicate_ids(catalog: Catalog, units: Sequence[Unit], written: dict[int, list[str]]) -> None:
    """Reject every later occurrence of a doc id (tasks/ingest/duplicates.py), one task per shard
    holding some. A shard that an earlier, killed pass emptied is gone, its rejects beside it."""
    present = {u: [p for p in paths if location(p).exists() or not duplicate_rejects_path(p).exists()]
               for u, paths in written.items()}
    if not any(present.values()):
        return
    found = reasons_by_shard(catalog.later_occurrences(reading_order(units, present)))
    if found:
        gather(reject_duplicates.map(list(found), reasons=list(found.values())), "duplicate ids")


def _inputs(run: RunSpec, plan: NightPlan, out: Path) -> dict[str, Any]:
    """What the night saw of its input files (``inputs.parquet``, registered when the night publishes),
    how many by status, and the removed files of ``mode: mirror`` sources (their documents are retired)."""
    rows = plan.as_rows()
    path = write_shard(pa.Table.from_pylist(rows, schema=INPUTS_SCHEMA), out / "inputs.parquet")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    mirror = [[s.source, s.path] for s in mirrored_removals(run.config.ingest, plan)]
    if counts.get(UNCHANGED):
        get_run_logger().info("dataset %s: %d input files unchanged since they were read, skipped",
                              run.config.dataset, counts[UNCHANGED])
    return {"inputs": str(path), "input_files": counts, "mirror_removed": mirror}


def _record_file_books(catalog: Catalog, run_id: str, units: Sequence[Unit], results: list[dict[str, Any]],
                       plan: NightPlan) -> int:
    """One row of ``file_books`` per input file: the records its units read and its size, and the
    documents and rejects the catalog holds of it (tasks/books.py checks that they balance); a file
    the night skipped (unchanged since the dataset read it) has a row of 0 records, status
    ``unchanged``. Files of the same path in sources of the same name share a row. Returns the
    number of rows."""
    books: dict[tuple[str, str], list[int]] = {}
    for result in results:
        source = storable(units[result["unit"]].source)
        for path, records, size in result["files"]:
            row = books.setdefault((source, path), [0, 0])
            row[0] += records
            row[1] += size
    status = {(storable(f.state.source), f.state.path): f.status for f in plan.files}
    for key, seen in status.items():
        if seen == UNCHANGED:
            books.setdefault(key, [0, 0])
    rows = pa.table({"source": [s for s, _ in books], "path": [p for _, p in books],
                     "records_read": [r for r, _ in books.values()], "documents": [0] * len(books),
                     "rejected": [0] * len(books), "bytes": [b for _, b in books.values()],
                     "status": [status.get(k, NEW) for k in books]})
    catalog.replace("file_books", run_id, rows=rows)
    catalog.update_file_books(run_id)
    return len(books)


@flow(name="ingest", log_prints=True)
def ingest_flow(run: RunSpec) -> dict[str, Any]:
    return run_stage(run, "ingest", lambda out: _ingest(run, out))
