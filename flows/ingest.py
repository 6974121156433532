"""ingest: raw inputs → normalized documents with stable ids, in Parquet shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import RunSpec, gather, run_stage
from refinery.tasks.ingest.readers import plan_units
from refinery.tasks.ingest.shard_tasks import ingest_unit


def _ingest(run: RunSpec, out: Path) -> dict[str, Any]:
    units = plan_units(run.config.ingest)
    results = gather(ingest_unit.map(units, out_dir=unmapped(out), cfg=unmapped(run.config.ingest)),
                     "ingest units")
    shards = sorted(p for r in results for p in r["documents"])
    rejects = sorted(r["rejects_path"] for r in results if r["rejects_path"])
    catalog = run.catalog
    catalog.replace("documents", run.run_id, parquet=shards)
    catalog.replace("rejects", run.run_id, parquet=rejects)
    stats = {
        "units": len(units),
        "docs": sum(r["docs"] for r in results),
        "rejects": sum(r["rejects"] for r in results),
        "shards": shards,
        "reject_shards": rejects,
    }
    reasons = catalog.query(
        "SELECT reason, count(*) AS n FROM rejects WHERE run_id = ? GROUP BY reason ORDER BY n DESC",
        [run.run_id],
    ).to_pylist()
    create_table_artifact(
        key="ingest-summary",
        table=[{"outcome": "document", "count": stats["docs"]}]
        + [{"outcome": f"rejected: {r['reason']}", "count": r["n"]} for r in reasons],
        description=f"Run {run.run_id}: documents ingested and records rejected (by reason).",
    )
    return stats


@flow(name="ingest", log_prints=True)
def ingest_flow(run: RunSpec) -> dict[str, Any]:
    return run_stage(run, "ingest", lambda out: _ingest(run, out))
