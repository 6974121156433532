"""Quality reads dedup's drops robustly: an empty drops shard without a string type (as written
before dedup declared its schema) removes nothing and does not fail."""

from __future__ import annotations

import pyarrow as pa

from refinery.storage import write_shard
from refinery.tasks.quality.shard_tasks import survivors


def test_survivors_with_a_null_typed_empty_drops_shard(tmp_path):
    docs = write_shard(pa.table({"doc_id": ["a", "b"], "text": ["x", "y"]}), tmp_path / "documents-0.parquet")
    untyped = write_shard(pa.table({"doc_id": pa.array([], pa.null())}), tmp_path / "drops-old.parquet")
    assert survivors(docs, untyped).column("doc_id").to_pylist() == ["a", "b"]
    typed = write_shard(pa.table({"doc_id": pa.array(["b"], pa.string())}), tmp_path / "drops.parquet")
    assert survivors(docs, typed).column("doc_id").to_pylist() == ["a"]
