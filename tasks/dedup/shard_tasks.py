"""The dedup stage's work (plain functions; flows/dedup.py runs them as Prefect tasks): signatures
per shard on the workers, then one clustering step over all of them.

Clustering sorts every document by ``doc_id`` first, so clusters, survivors and drop reasons are
the same whatever the shard size or the number of workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from refinery.storage import fixed_size_list, read_shard, read_shards, to_matrix, write_shard
from refinery.tasks.dedup import DedupConfig, deduplicate, exact_keys, signatures
from refinery.tasks.dedup.against import REASON_UNCHANGED, DatasetRef, match_dataset, unmatched
from refinery.tasks.dedup.clusters import REASON_EXACT, REASON_KEPT, REASON_NEAR

# Written with explicit types: a corpus without duplicates gives empty tables, which would
# otherwise be typed null and break readers that compare doc ids (string) with them.
CLUSTERS_SCHEMA = pa.schema([
    ("cluster_id", pa.string()), ("doc_id", pa.string()), ("is_survivor", pa.bool_()), ("kind", pa.string()),
    ("jaccard", pa.float64()),
])
DROPS_SCHEMA = pa.schema([("doc_id", pa.string()), ("stage", pa.string()), ("reason", pa.string())])


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


def cluster_shards(signature_shards: list[str], out_dir: Path, cfg: DedupConfig, n_shards: int,
                   dataset: DatasetRef | None = None) -> dict[str, Any]:
    """Read every signature shard, match against the ``dataset`` the night joins (tasks/dedup/against.py),
    cluster what is left, and write clusters + drops shards.

    No signature shard (ingest read no document) gives empty clusters and drops shards.
    """
    if signature_shards:
        clusters, drops, stats = _cluster(read_shards(sorted(signature_shards)).sort_by("doc_id"), cfg, dataset)
    else:
        nothing = deduplicate(np.zeros(0, np.uint64), np.zeros((0, cfg.num_perm), np.uint32), np.zeros(0, np.int64), cfg)
        clusters, drops, stats = CLUSTERS_SCHEMA.empty_table(), DROPS_SCHEMA.empty_table(), nothing.stats()
    clusters_path = write_shard(clusters, out_dir / "clusters.parquet")
    drops_path = write_shard(drops, out_dir / "drops.parquet")
    return {**stats, "clusters_path": str(clusters_path), "drops_path": str(drops_path)}


def _cluster(table: pa.Table, cfg: DedupConfig, dataset: DatasetRef | None) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    if dataset is None:
        return _cluster_night(table, cfg)
    doc_ids = table.column("doc_id").to_numpy(zero_copy_only=False)
    match = match_dataset(doc_ids, table.column("exact_key").to_numpy(), to_matrix(table.column("signature")), cfg,
                          dataset)
    rest = unmatched(match)
    clusters, drops, stats = _cluster_night(table.take(pa.array(rest)), cfg)
    earlier = np.flatnonzero(match.reasons != REASON_KEPT)
    filed = earlier[match.matched[earlier] != None]  # noqa: E711 - an object array of doc ids and None
    clusters = pa.concat_tables([clusters, pa.table({
        "cluster_id": pa.array(match.matched[filed], pa.string()),
        "doc_id": pa.array(doc_ids[filed], pa.string()),
        "is_survivor": pa.array(np.zeros(filed.size, bool), pa.bool_()),
        "kind": pa.array(match.kinds()[filed], pa.string()),
        "jaccard": pa.array(match.similarity[filed], pa.float64()),
    }, schema=CLUSTERS_SCHEMA)])
    drops = pa.concat_tables([drops, pa.table({
        "doc_id": pa.array(doc_ids[earlier], pa.string()),
        "stage": pa.array(np.full(earlier.size, "dedup"), pa.string()),
        "reason": pa.array(match.reasons[earlier], pa.string()),
    }, schema=DROPS_SCHEMA)])
    reasons = match.reasons
    stats |= {
        "docs": len(doc_ids),
        "dropped_dataset_unchanged": int((reasons == REASON_UNCHANGED).sum()),
        "dropped_dedup_exact_earlier": int((reasons == REASON_EXACT).sum()),
        "dropped_dedup_near_earlier": int((reasons == REASON_NEAR).sum()),
        "replaced": int(match.replaces.sum()),
    }
    stats["dropped_dedup_exact"] += stats["dropped_dedup_exact_earlier"]
    stats["dropped_dedup_near"] += stats["dropped_dedup_near_earlier"]
    return clusters, drops, stats


def _cluster_night(table: pa.Table, cfg: DedupConfig) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
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
        "cluster_id": pa.array(doc_ids[result.survivors[member]], pa.string()),  # named by its survivor
        "doc_id": pa.array(doc_ids[member], pa.string()),
        "is_survivor": pa.array(keep[member], pa.bool_()),
        "kind": pa.array(np.where(exact_groups_per_label[label[member]] == 1, "exact", "near"), pa.string()),
        "jaccard": pa.array(np.round(result.similarity[member], 4), pa.float64(), from_pandas=True),
    }, schema=CLUSTERS_SCHEMA)
    dropped = ~keep
    drops = pa.table({
        "doc_id": pa.array(doc_ids[dropped], pa.string()),
        "stage": pa.array(np.full(int(dropped.sum()), "dedup"), pa.string()),
        "reason": pa.array(result.reasons[dropped], pa.string()),
    }, schema=DROPS_SCHEMA)
    return clusters, drops, result.stats() | ({"clustering": cfg.clustering} if cfg.near else {})
