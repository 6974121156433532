"""dedup: exact (content hash) then MinHash LSH near-duplicates; clusters kept, one survivor each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import RunSpec, gather, run_stage
from refinery.storage import StageMarker
from refinery.tasks.dedup.shard_tasks import cluster_shards, signature_shard


def _dedup(run: RunSpec, out: Path) -> dict[str, Any]:
    cfg = run.config.dedup
    ingest = StageMarker(run.stage_dir("ingest")).read()
    if ingest is None:
        raise RuntimeError(f"run {run.run_id}: dedup needs a finished ingest stage")
    shards = [Path(p) for p in ingest["shards"]]
    sig_paths = gather(signature_shard.map(shards, out_dir=unmapped(out), cfg=unmapped(cfg)), "dedup signatures")
    stats = cluster_shards.submit(sig_paths, out, cfg, len(sig_paths)).result()
    catalog = run.catalog
    catalog.replace("dedup_clusters", run.run_id, parquet=[stats["clusters_path"]])
    catalog.replace("drops", run.run_id, parquet=[stats["drops_path"]], where={"stage": "dedup"})
    create_table_artifact(
        key="dedup-summary",
        table=[{"figure": k, "value": v} for k, v in stats.items() if isinstance(v, (int, float))],
        description=f"Run {run.run_id}: exact and near-duplicate removal.",
    )
    return stats


@flow(name="dedup", log_prints=True)
def dedup_flow(run: RunSpec) -> dict[str, Any]:
    return run_stage(run, "dedup", lambda out: _dedup(run, out))
