"""dedup: blocked domains and one document per URL, then exact (content hash) and MinHash LSH
near-duplicates; clusters kept, one survivor each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import gather, run_stage
from refinery.storage.location import location
from refinery.tasks.runs import RunSpec
from refinery.tasks.dedup.against import DatasetRef, index_settings
from refinery.tasks.dedup.shard_tasks import cluster_shards, signature_shard
from refinery.tasks.dedup.urls import blocked_domains
from refinery.tasks.exceptions import ConfigError

# Signatures of one ingest shard take seconds; clustering reads every signature once (minutes at
# 1M documents). Both rewrite their outputs whole, so a retry is safe.
signature_task = task(signature_shard, name="dedup-signatures", task_run_name="signatures {shard.name}",
                      retries=1, timeout_seconds=3600)
cluster_task = task(cluster_shards, name="dedup-clusters", task_run_name="cluster {n_shards} shards",
                    retries=1, timeout_seconds=4 * 3600)


def _dedup(run: RunSpec, ingest: dict[str, Any], out: Path) -> dict[str, Any]:
    cfg = run.config.dedup
    shards = [location(p) for p in ingest["shards"]]
    catalog = run.catalog
    dataset = _dataset_ref(run)
    blocked_domains(cfg)  # a blocklist file that cannot be read is an error before any work
    sig_paths = gather(signature_task.map(shards, out_dir=unmapped(out), cfg=unmapped(cfg)), "dedup signatures")
    stats = cluster_task.submit(sig_paths, out, cfg, len(sig_paths), dataset).result()
    catalog.replace("dedup_clusters", run.run_id, parquet=[stats["clusters_path"]])
    catalog.replace("drops", run.run_id, parquet=[stats["drops_path"]], where={"stage": "dedup"})
    create_table_artifact(
        key="dedup-summary",
        table=[{"figure": k, "value": v} for k, v in stats.items() if isinstance(v, (int, float))],
        description=f"Run {run.run_id}: exact and near-duplicate removal.",
    )
    return stats


def _dataset_ref(run: RunSpec) -> DatasetRef:
    """The run's dataset as its dedup sees it; a config whose signatures differ from those the
    dataset's index was built with is an error before any work."""
    files, retired, settings = run.catalog.dataset_index(run.config.dataset)
    wanted = index_settings(run.config.dedup)
    if settings is not None and settings != wanted:
        differ = ", ".join(f"{k}: {settings.get(k)!r} -> {wanted[k]!r}" for k in wanted if settings.get(k) != wanted[k])
        raise ConfigError(f"dataset {run.config.dataset} was indexed with other dedup settings ({differ}); "
                          f"keep them, use another dataset name, or rebuild its index with "
                          f"`refinery dataset reindex {run.config.dataset}`")
    return DatasetRef.of(files, retired)


@flow(name="dedup", log_prints=True)
def dedup_flow(run: RunSpec, ingest: dict[str, Any]) -> dict[str, Any]:
    return run_stage(run, "dedup", lambda out: _dedup(run, ingest, out))
