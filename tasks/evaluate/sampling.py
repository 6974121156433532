"""Samples of the corpus that synthesize and evaluate share: the documents of smallest seeded key,
a pool of documents written as parts, and one model's embeddings of a pool.

Each is a map of shard tasks (:mod:`tasks.evaluate.shard_tasks`, :mod:`tasks.embedding_tasks`)
that the caller runs: the functions here take a :class:`MapTasks`, which the flows make from
their wrapped tasks (Prefect tasks on the Dask workers, with the retries and timeouts the flow
chose) and a test makes from a loop. So the planning here (which shards a task reads, when the
key threshold is raised, how outputs are named) is plain code, and the orchestration stays in
the flows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from refinery.storage.location import location
from refinery.tasks.embedding_tasks import embed_shard
from refinery.tasks.evaluate.config import EvaluateConfig
from refinery.tasks.evaluate.names import content_key, embeddings_key, model_fingerprint
from refinery.tasks.evaluate.pool import (
    KEY_SPACE, POOL_PART_DOCS, Keyed, group_shards, key_threshold, merge_smallest,
)
from refinery.tasks.evaluate.shard_tasks import sample_keys, select_rows

T = TypeVar("T")

# Salt of the evaluation pool's distractor keys: not the draw that chose the training passages.
POOL_SALT = "evaluate-pool\x1f"
# Corpus shards whose keys one sampling task reads (only their doc id column).
KEY_SCAN_SHARDS = 64


def sample_keys_run_name() -> str:
    """The name of a :func:`~tasks.evaluate.shard_tasks.sample_keys` task run: the shards it reads
    (a ``task_run_name`` for the flows that wrap it)."""
    from prefect.runtime import task_run

    shards = task_run.parameters["shards"]
    return f"sample keys of shards {shards[0][0]}-{shards[-1][0]}" if shards else "sample keys"


class MapTasks(Protocol):
    """Runs ``fn`` once per position of the ``each`` lists (all of one length), with those lists'
    items and the ``same`` keyword arguments; the results in that order. ``description`` names
    the map (the flows show it on a progress bar)."""

    def __call__(self, fn: Callable[..., T], description: str, *, each: Mapping[str, Sequence[Any]],
                 same: Mapping[str, Any]) -> list[T]: ...


def sample_corpus(map_tasks: MapTasks, corpus_shards: Sequence[str], total: int, *, seed: int, salt: str,
                  n: int) -> list[Keyed]:
    """The ``min(n, total)`` curated documents of smallest seeded key (see :mod:`tasks.evaluate.pool`),
    smallest first. The tasks read the doc ids; the caller merges about ``n`` of them."""
    shards = list(enumerate(sorted(corpus_shards)))
    groups = [shards[i : i + KEY_SCAN_SHARDS] for i in range(0, len(shards), KEY_SCAN_SHARDS)]
    attempt = 0
    while True:
        below = key_threshold(n, total, attempt)
        parts = map_tasks(sample_keys, "sample the corpus", each={"shards": groups},
                          same={"seed": seed, "salt": salt, "n": n, "below": below})
        ranked = merge_smallest([[Keyed(*k) for k in part] for part in parts], n)
        if len(ranked) >= min(n, total) or below == KEY_SPACE:
            return ranked
        attempt += 1


def pool_of(map_tasks: MapTasks, pools_dir: Path, corpus_shards: Sequence[str], doc_ids: list[str]
            ) -> tuple[str, list[str]]:
    """Write the (doc_id, text) of ``doc_ids`` as pool parts under ``pools_dir``; (pool key, part
    paths) (empty parts left out).

    Parts keep corpus order and are named by the pool's documents, so a pool already written
    (synthesize's filter pool is evaluate's pool when both are the whole corpus) is reused.
    """
    shards = sorted(corpus_shards)
    key = content_key(sorted(doc_ids), shards)
    out = pools_dir / key
    groups = group_shards(shards, len(doc_ids))
    parts = map_tasks(select_rows, "pool",
                      each={"shards": groups, "out": [out / f"part-{i:05d}.parquet" for i in range(len(groups))]},
                      same={"doc_ids": doc_ids, "part_rows": POOL_PART_DOCS})
    return key, [path for p in parts for path in p["paths"]]


def embeddings_of(map_tasks: MapTasks, embeddings_dir: Path, model: str, model_path: str,
                  pool: tuple[str, list[str]], cfg: EvaluateConfig, cache_dir: str) -> list[str]:
    """Embed a pool's parts with one model under ``embeddings_dir``, with the encoder settings of
    ``cfg``; named by pool, model files and encoder settings, so they are reused exactly when
    nothing they derive from changed. ``cache_dir``: the data home's cache (ONNX exports)."""
    key, parts = pool
    name = embeddings_key(key, model_fingerprint(model_path), backend=cfg.encoder, max_seq_length=cfg.max_seq_length)
    return map_tasks(embed_shard, f"embed pool ({model})", each={"shard": [location(p) for p in parts]},
                     same={"model_path": model_path, "model_name": model, "out_dir": embeddings_dir / f"{model}-{name}",
                           "batch_size": cfg.encode_batch_size, "max_seq_length": cfg.max_seq_length,
                           "backend": cfg.encoder, "cache_dir": cache_dir})
