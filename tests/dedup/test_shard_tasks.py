"""The dedup stage's shards keep their column types when nothing is a duplicate, or nothing came in."""

from __future__ import annotations

import pyarrow as pa

from refinery.storage import fixed_size_list, read_shard, write_shard
from refinery.tasks.dedup import DedupConfig, exact_keys, signatures
from refinery.tasks.dedup.shard_tasks import cluster_shards


def _signature_shard(texts: list[str], path, cfg: DedupConfig):
    return str(write_shard(pa.table({
        "doc_id": [f"{i:016x}" for i in range(len(texts))],
        "n_chars": pa.array([len(t) for t in texts], pa.int64()),
        "exact_key": pa.array(exact_keys(texts), pa.uint64()),
        "signature": fixed_size_list(signatures(texts, cfg)),
    }), path))


def test_no_duplicates_gives_typed_empty_drops_and_clusters(tmp_path):
    cfg = DedupConfig()
    texts = ["the first document is about markets and shares", "a second one talks about football results"]
    stats = cluster_shards([_signature_shard(texts, tmp_path / "sig.parquet", cfg)], tmp_path, cfg, 1)
    drops, clusters = read_shard(stats["drops_path"]), read_shard(stats["clusters_path"])
    assert drops.num_rows == 0 and clusters.num_rows == 0
    assert drops.schema.field("doc_id").type == pa.string() and clusters.schema.field("cluster_id").type == pa.string()
    assert stats["kept"] == 2 and stats["duplicate_clusters"] == 0


def test_no_input_gives_empty_shards_and_zero_counts(tmp_path):
    stats = cluster_shards([], tmp_path, DedupConfig(), 0)
    assert read_shard(stats["drops_path"]).num_rows == 0
    assert stats["docs"] == 0 and stats["kept"] == 0
