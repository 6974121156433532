"""Prefect tasks of the dedup stage: signatures per shard on the workers, then one clustering task.

Clustering sorts every document by ``doc_id`` first, so clusters, survivors and drop reasons are
the same whatever the shard size or the number of workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task

from storage import fixed_size_list, read_shard, read_shards, to_matrix, write_shard
from tasks.dedup import DedupConfig, deduplicate, exact_keys, signatures

@task(name="dedup-signatures", task_run_name="signatures {shard.name}", retries=1)
def signature_shard(shard: Path, out_dir: Path, cfg: DedupConfig) -> str:
    """Exact key and MinHash signature of every document of one ingest shard."""
    out = out_dir / f"signatures-{shard.stem.removeprefix('documents-')}.parquet"
    if out.exists():
        return str(out)
    docs = read_shard(shard, ["doc_id", "text", "n_chars"])
    texts = docs.column("text").to_pylist()
    sigs = signatures(texts, cfg)
    table = pa.table({
        "doc_id": docs.column("doc_id"),
        "n_chars": docs.column("n_chars"),
        "exact_key": pa.array(exact_keys(texts), pa.uint64()),
        "signature": fixed_size_list(sigs),
    })
    return str(write_shard(table, out))


@task(name="dedup-clusters", task_run_name="cluster {n_shards} shards")
def cluster_shards(signature_shards: list[str], out_dir: Path, cfg: DedupConfig, n_shards: int) -> dict[str, Any]:
    """Read every signature shard, cluster, and write clusters + drops shards."""
    table = read_shards(sorted(signature_shards)).sort_by("doc_id")
    doc_ids = table.column("doc_id").to_numpy(zero_copy_only=False)
    keys = table.column("exact_key").to_numpy()
    lengths = table.column("n_chars").to_numpy()
    sigs = to_matrix(table.column("signature"))
    result = deduplicate(keys, sigs, lengths, cfg)
    label, keep = result.labels, result.keep
    sizes = np.bincount(label, minlength=len(label))
    member = sizes[label] > 1
    # a cluster is "exact" when all its members share one exact key, else "near"
    exact_groups_per_label = np.zeros(len(label), dtype=np.int64)
    np.add.at(exact_groups_per_label, label, (result.exact_labels == np.arange(len(label))).astype(np.int64))
    clusters = pa.table({
        "cluster_id": doc_ids[label[member]],
        "doc_id": doc_ids[member],
        "is_survivor": keep[member],
        "kind": np.where(exact_groups_per_label[label[member]] == 1, "exact", "near"),
    })
    dropped = ~keep
    drops = pa.table({
        "doc_id": doc_ids[dropped],
        "stage": np.full(int(dropped.sum()), "dedup"),
        "reason": result.reasons[dropped],
    })
    clusters_path = write_shard(clusters, out_dir / "clusters.parquet")
    drops_path = write_shard(drops, out_dir / "drops.parquet")
    return {**result.stats(), "clusters_path": str(clusters_path), "drops_path": str(drops_path)}
