"""Seeded samples of the corpus (tasks/evaluate/pool.py) and the names of derived outputs (names.py)."""

from __future__ import annotations

import heapq

import pytest
import xxhash

from refinery.tasks.evaluate.names import content_key, embeddings_key, model_fingerprint
from refinery.tasks.evaluate.pool import (
    KEY_SPACE,
    choose_pool,
    doc_key,
    group_shards,
    key_threshold,
    merge_smallest,
    smallest_in_shard,
)


def shards_of(n_docs: int, shard_size: int) -> list[list[str]]:
    ids = [xxhash.xxh3_64_hexdigest(f"doc-{i}".encode()) for i in range(n_docs)]
    return [ids[i : i + shard_size] for i in range(0, n_docs, shard_size)]


def sample(shards: list[list[str]], n: int, *, seed: int = 0, salt: str = "") -> list[str]:
    """What the flow does: each shard's keys below the threshold, merged, retried with a wider one if short."""
    total = sum(map(len, shards))
    for attempt in range(64):
        below = key_threshold(n, total, attempt)
        parts = [smallest_in_shard(ids, shard=i, seed=seed, salt=salt, n=n, below=below) for i, ids in enumerate(shards)]
        ranked = merge_smallest(parts, n)
        if len(ranked) >= min(n, total) or below == KEY_SPACE:
            return [k.doc_id for k in ranked]
    raise AssertionError("no threshold gave enough keys")


@pytest.mark.parametrize("n", [1, 7, 120, 1200, 5000])
def test_the_sample_is_the_sort_of_the_whole_corpus_by_seeded_key(n):
    """Passage choice before the sample moved to the workers: sort every doc id by xxh3(doc_id, seed)."""
    shards = shards_of(3000, 113)
    corpus = [d for shard in shards for d in shard]
    keys = [xxhash.xxh3_64_intdigest(d.encode(), seed=5) for d in corpus]
    expected = [corpus[i] for i in sorted(range(len(corpus)), key=keys.__getitem__)[:n]]
    assert sample(shards, n, seed=5) == expected


def test_each_shard_reports_about_n_keys_in_all():
    shards = shards_of(20_000, 500)
    n = 300
    below = key_threshold(n, 20_000)
    reported = sum(len(smallest_in_shard(ids, shard=i, seed=0, salt="", n=n, below=below))
                   for i, ids in enumerate(shards))
    assert n <= reported < 2 * n  # bounded by the sample, not by the corpus


def test_a_salt_draws_another_sample():
    """The evaluation pool's distractors are not the training passages drawn with the same seed."""
    shards = shards_of(2000, 100)
    passages, distractors = set(sample(shards, 100)), set(sample(shards, 100, salt="evaluate-pool\x1f"))
    assert len(passages & distractors) < 30  # ~5 expected by chance


def test_the_sample_does_not_depend_on_shard_order():
    shards = shards_of(2000, 100)
    forward = sample(shards, 80, seed=3)
    # the same documents in other shards, in another order: the same documents are drawn
    regrouped = [d for s in shards[::-1] for d in s]
    assert set(sample([regrouped[i : i + 70] for i in range(0, 2000, 70)], 80, seed=3)) == set(forward)


def test_threshold_covers_everything_when_the_sample_is_the_corpus():
    assert key_threshold(10, 10) == KEY_SPACE
    assert key_threshold(100, 50) == KEY_SPACE
    assert key_threshold(10, 10_000) < key_threshold(10, 10_000, attempt=1) < KEY_SPACE


def test_choose_pool_keeps_every_required_document_then_fills_from_the_ranking():
    ranked = [f"d{i}" for i in range(20)]
    pool = choose_pool(ranked, ["x1", "d3", "x2"], 8)
    assert pool[:3] == ["x1", "d3", "x2"] and len(pool) == 8
    assert pool[3:] == ["d0", "d1", "d2", "d4", "d5"]
    # the required documents are all in, even beyond the size
    assert choose_pool(ranked, [f"r{i}" for i in range(10)], 4) == [f"r{i}" for i in range(10)]
    # a corpus smaller than the pool is the whole corpus
    assert sorted(choose_pool(ranked, [], 100)) == sorted(ranked)


def test_group_shards_is_contiguous_and_covers_every_shard():
    shards = [f"s{i}" for i in range(11)]
    groups = group_shards(shards, 2100, part_docs=500)
    assert len(groups) == 5 and [s for g in groups for s in g] == shards
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert group_shards(shards, 10) == [shards]
    assert len(group_shards(shards, 10**6)) == len(shards)


def test_doc_key_is_seeded_and_salted():
    assert doc_key("a", seed=0) == xxhash.xxh3_64_intdigest(b"a", seed=0)
    assert doc_key("a", seed=1) != doc_key("a", seed=0) != doc_key("a", seed=0, salt="s")


def test_merge_keeps_the_global_order():
    parts = [[(5, 0, 0, "a"), (9, 0, 1, "b")], [(1, 1, 0, "c"), (7, 1, 1, "d")]]
    assert [p[3] for p in merge_smallest(parts, 3)] == ["c", "a", "d"]
    assert merge_smallest(parts, 0) == []
    assert heapq.nsmallest(2, [p for part in parts for p in part]) == merge_smallest(parts, 2)


def test_derived_names_change_with_what_they_derive_from(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 10)
    before = model_fingerprint(model)
    (model / "weights.bin").write_bytes(b"\x01" * 10)  # retrained in the same folder
    assert model_fingerprint(model) != before
    pool = content_key(["d1", "d2"], ["shard-a"])
    assert pool != content_key(["d1"], ["shard-a"]) != content_key(["d1", "d2"], ["shard-b"])
    assert content_key(["d1", "d2"]) != content_key(["d1d2"])  # items are delimited
    key = embeddings_key(pool, before, backend="torch", max_seq_length=None)
    assert key == embeddings_key(pool, before, backend="torch", max_seq_length=None)
    assert key != embeddings_key(pool, before, backend="onnx", max_seq_length=None)
    assert key != embeddings_key(pool, before, backend="torch", max_seq_length=128)
