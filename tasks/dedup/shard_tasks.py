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
from refinery.storage.dataset_index import doc_ids_of
from refinery.tasks.dedup import DedupConfig, deduplicate, exact_keys, signatures
from refinery.tasks.dedup.against import REASON_UNCHANGED, DatasetRef, match_dataset, unmatched
from refinery.tasks.dedup.clusters import REASON_EXACT, REASON_KEPT, REASON_NEAR
from refinery.tasks.dedup.urls import fetch_times, url_decisions, url_keys

# Written with explicit types: a corpus without duplicates gives empty tables, which would
# otherwise be typed null and break readers that compare doc ids (string) with them.
CLUSTERS_SCHEMA = pa.schema([
    ("cluster_id", pa.string()), ("doc_id", pa.string()), ("is_survivor", pa.bool_()), ("kind", pa.string()),
    ("jaccard", pa.float64()),
])
DROPS_SCHEMA = pa.schema([("doc_id", pa.string()), ("stage", pa.string()), ("reason", pa.string())])
# The dataset documents a night supersedes with a newer fetch of their URL (tasks/dedup/urls.py):
# publishing retires them.
SUPERSEDED_FILE_SCHEMA = pa.schema([("doc_id", pa.string()), ("added_in", pa.string()), ("by", pa.string())])


def signature_shard(shard: Path, out_dir: Path, cfg: DedupConfig) -> str:
    """Exact key, MinHash signature, URL key, fetch time and domain of every document of one ingest
    shard (a shard written before documents had URLs: none)."""
    out = out_dir / f"signatures-{shard.stem.removeprefix('documents-')}.parquet"
    if out.exists():
        return str(out)
    docs = read_shard(shard, ["doc_id", "text", "n_chars", "url", "domain", "fetched_at"], missing_ok=True)
    texts = docs.column("text").to_pylist()
    sigs = signatures(texts, cfg)
    n = docs.num_rows
    nulls = [None] * n
    domains = docs.column("domain").to_pylist() if "domain" in docs.column_names else nulls
    table = pa.table({
        "doc_id": docs.column("doc_id"),
        "n_chars": docs.column("n_chars"),
        "exact_key": pa.array(exact_keys(texts), pa.uint64()),
        "signature": fixed_size_list(sigs),
        "url_key": pa.array(url_keys(docs.column("url").to_pylist() if "url" in docs.column_names else nulls,
                                     domains), pa.uint64()),
        "fetched_at": pa.array(fetch_times(docs.column("fetched_at") if "fetched_at" in docs.column_names else None,
                                           n), pa.int64()),
        "domain": pa.array(domains, pa.string()),
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
    superseded = stats.pop("superseded", SUPERSEDED_FILE_SCHEMA.empty_table())
    clusters_path = write_shard(clusters, out_dir / "clusters.parquet")
    drops_path = write_shard(drops, out_dir / "drops.parquet")
    superseded_path = write_shard(superseded, out_dir / "superseded.parquet")
    return {**stats, "clusters_path": str(clusters_path), "drops_path": str(drops_path),
            "superseded_path": str(superseded_path)}


def _cluster(table: pa.Table, cfg: DedupConfig, dataset: DatasetRef | None) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """The URL step (tasks/dedup/urls.py), then exact and near dedup of what it leaves, against the
    dataset less what the night supersedes."""
    doc_ids = table.column("doc_id").to_numpy(zero_copy_only=False)
    columns = table.column_names
    n = table.num_rows
    urls = url_decisions(
        doc_ids, table.column("exact_key").to_numpy(),
        table.column("url_key").to_numpy() if "url_key" in columns else np.zeros(n, np.uint64),
        table.column("fetched_at").to_numpy() if "fetched_at" in columns else fetch_times(None, n),
        table.column("domain").to_pylist() if "domain" in columns else [None] * n, cfg,
        dataset.index_files if dataset is not None else (), dataset.retired if dataset is not None else None)
    if dataset is not None and urls.superseded.num_rows:
        dataset = DatasetRef(dataset.index_files, pa.concat_tables([dataset.retired,
                                                                    urls.superseded.select(["doc", "added_in"])]))
    rest = np.flatnonzero(urls.reasons == "")
    clusters, drops, stats = _cluster_text(table.take(pa.array(rest)), cfg, dataset)
    dropped = np.flatnonzero(urls.reasons != "")
    filed = np.flatnonzero(urls.kinds != "")
    clusters = pa.concat_tables([clusters, pa.table({
        "cluster_id": pa.array([m if m is not None else doc_ids[i] for i, m in zip(filed, urls.matched[filed])],
                               pa.string()),
        "doc_id": pa.array(doc_ids[filed], pa.string()),
        "is_survivor": pa.array(urls.reasons[filed] == "", pa.bool_()),
        "kind": pa.array(urls.kinds[filed], pa.string()),
        "jaccard": pa.array(np.full(filed.size, np.nan), pa.float64(), from_pandas=True),
    }, schema=CLUSTERS_SCHEMA)])
    drops = pa.concat_tables([drops, pa.table({
        "doc_id": pa.array(doc_ids[dropped], pa.string()),
        "stage": pa.array(np.full(dropped.size, "dedup"), pa.string()),
        "reason": pa.array(urls.reasons[dropped], pa.string()),
    }, schema=DROPS_SCHEMA)])
    superseded = urls.superseded
    stats |= urls.stats() | {"docs": n, "superseded": pa.table({
        "doc_id": pa.array(doc_ids_of(superseded.column("doc").to_pylist()), pa.string()),
        "added_in": superseded.column("added_in"), "by": superseded.column("by")}, schema=SUPERSEDED_FILE_SCHEMA)}
    return clusters, drops, stats


def _cluster_text(table: pa.Table, cfg: DedupConfig, dataset: DatasetRef | None) -> tuple[pa.Table, pa.Table,
                                                                                          dict[str, Any]]:
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
