"""Samples of the corpus (tasks/evaluate/sampling.py) with the shard tasks run in a loop: the sample
is the corpus's documents of smallest seeded key, a pool is written once and named by its
documents."""

from __future__ import annotations

import pyarrow as pa
import xxhash

from refinery.storage import read_shards, write_shard
from refinery.tasks.evaluate import sampling
from refinery.tasks.evaluate.sampling import pool_of, sample_corpus


class Loop:
    """A MapTasks that runs each call here, in order, and remembers the maps it was asked for."""

    def __init__(self):
        self.maps: list[tuple[str, str, int]] = []

    def __call__(self, fn, description, *, each, same):
        (length,) = {len(v) for v in each.values()}
        self.maps.append((fn.__name__, description, length))
        return [fn(**{k: v[i] for k, v in each.items()}, **same) for i in range(length)]


def corpus(tmp_path, shards: int, per_shard: int) -> list[str]:
    paths = []
    for s in range(shards):
        ids = [f"doc-{s}-{i}" for i in range(per_shard)]
        paths.append(str(write_shard(pa.table({"doc_id": ids, "text": [f"text of {d}" for d in ids]}),
                                     tmp_path / "corpus" / f"corpus-{s:03d}.parquet")))
    return paths


def test_the_sample_is_the_corpus_sorted_by_seeded_key(tmp_path, monkeypatch):
    monkeypatch.setattr(sampling, "KEY_SCAN_SHARDS", 3)  # a task reads three shards' doc ids
    shards = corpus(tmp_path, 7, 40)
    every = [f"doc-{s}-{i}" for s in range(7) for i in range(40)]
    by_key = sorted(every, key=lambda d: xxhash.xxh3_64_intdigest(("salt" + d).encode(), seed=5))
    loop = Loop()
    got = sample_corpus(loop, list(reversed(shards)), len(every), seed=5, salt="salt", n=25)
    assert [k.doc_id for k in got] == by_key[:25]
    assert [(k.shard, k.row) for k in got] == [(int(d.split("-")[1]), int(d.split("-")[2])) for d in by_key[:25]]
    assert loop.maps == [("sample_keys", "sample the corpus", 3)]  # 7 shards, 3 a task: one map of 3 tasks


def test_too_few_keys_below_the_threshold_raise_it_until_the_sample_is_whole(tmp_path):
    shards = corpus(tmp_path, 2, 50)
    loop = Loop()
    # told the corpus is 100 times its size, the first thresholds let about a hundredth of it through
    got = sample_corpus(loop, shards, 100 * 100, seed=0, salt="", n=60)
    assert len(got) == 60 and len(loop.maps) > 1
    assert got == sample_corpus(Loop(), shards, 100, seed=0, salt="", n=60)
    # a sample larger than the corpus is the whole corpus
    assert len(sample_corpus(Loop(), shards, 100, seed=0, salt="", n=500)) == 100


def test_a_pool_is_its_documents_in_corpus_order_and_is_written_once(tmp_path):
    shards = corpus(tmp_path, 3, 10)
    wanted = ["doc-2-9", "doc-0-3", "doc-1-0", "doc-0-1"]
    key, parts = pool_of(Loop(), tmp_path / "pools", shards, wanted)
    table = read_shards(parts)
    assert table.column("doc_id").to_pylist() == ["doc-0-1", "doc-0-3", "doc-1-0", "doc-2-9"]
    assert table.column("text").to_pylist() == [f"text of {d}" for d in table.column("doc_id").to_pylist()]
    assert all(p.startswith(str(tmp_path / "pools" / key)) for p in parts)
    # the same documents in another order: the same pool, read back, not written again
    mtimes = [(tmp_path / p).stat().st_mtime_ns for p in parts]
    assert pool_of(Loop(), tmp_path / "pools", list(reversed(shards)), list(reversed(wanted))) == (key, parts)
    assert [(tmp_path / p).stat().st_mtime_ns for p in parts] == mtimes
    other, _ = pool_of(Loop(), tmp_path / "pools", shards, wanted[:3])
    assert other != key
