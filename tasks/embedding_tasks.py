"""Embed one shard of documents on a Dask worker (synthesize and evaluate share it; their flows wrap
:func:`embed_shard` as a task), and the per-worker encoder and embeddings it reads back."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from refinery.storage import fixed_size_list, read_shard, read_shards, to_matrix, write_shard
from refinery.tasks.embedding import encode, load_encoder

if TYPE_CHECKING:
    from refinery.tasks.embedding import Encoder


@functools.lru_cache(maxsize=2)
def cached_encoder(model_path: str, max_seq_length: int | None = None, backend: str = "torch",
                   cache_dir: str | None = None) -> Encoder:
    """One loaded encoder per worker process and (model, length, backend).

    ``backend`` is ``evaluate.encoder``; ``cache_dir`` (the data home's cache) holds what a
    non-torch backend derives from the model folder (its ONNX export, made on first use and shared
    by every worker and later run; see :func:`tasks.embedding.load_encoder`).
    """
    model = load_encoder(model_path, backend=backend, cache_dir=cache_dir)  # type: ignore[arg-type]
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def embed_shard(shard: Path, *, model_path: str, model_name: str, out_dir: Path,
                batch_size: int = 64, max_seq_length: int | None = None, backend: str = "torch",
                cache_dir: str | None = None) -> str:
    """Embed the ``text`` of every document of a shard; one Parquet shard of (doc_id, embedding)."""
    out = out_dir / f"embeddings-{shard.stem}.parquet"
    if out.exists():
        return str(out)
    docs = read_shard(shard, ["doc_id", "text"])
    emb = encode(cached_encoder(model_path, max_seq_length, backend, cache_dir), docs.column("text").to_pylist(),
                 batch_size=batch_size, show_progress=False)
    return str(write_shard(pa.table({"doc_id": docs.column("doc_id"), "embedding": fixed_size_list(emb)}), out))


def load_embeddings(paths: list[str]) -> tuple[list[str], np.ndarray]:
    """Doc ids and their embeddings, in the order of the given shards."""
    table = read_shards(paths)
    return table.column("doc_id").to_pylist(), to_matrix(table.column("embedding")).astype(np.float32)
