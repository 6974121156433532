"""Semantic dedup's decisions on crafted unit vectors: near-identical ones collapse to one kept
document named by the others, distinct ones all stay, the 1 - epsilon boundary, and k-means and
the whole group step repeatable for a seed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from refinery.storage import fixed_size_list, read_shard, to_matrix, write_shard
from refinery.tasks.quality.config import SemDedupConfig
from refinery.tasks.quality.semdedup import (
    apply_drops,
    assign_shard,
    dedup_group,
    embed_kept,
    fit_centroids,
    greedy_keep,
    spherical_kmeans,
)


def unit(*rows: list[float]) -> np.ndarray:
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def at_cosine(c: float) -> list[float]:
    """A 2-d unit vector whose cosine to (1, 0) is ``c``."""
    return [c, float(np.sqrt(1 - c * c))]


def test_near_identical_vectors_collapse_to_the_first_visited():
    x = unit([1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0, 1, 0])
    kept = greedy_keep(x, epsilon=0.05)
    assert kept.kept_by.tolist() == [-1, 0, 0, -1]


def test_distinct_vectors_all_stay():
    x = unit([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0])  # the last at cosine 0.707 to two others
    assert greedy_keep(x, epsilon=0.05).kept_by.tolist() == [-1, -1, -1, -1]


def test_epsilon_boundary_drops_only_above_one_minus_epsilon():
    x = unit([1, 0], at_cosine(0.91), at_cosine(0.89))
    assert greedy_keep(x, epsilon=0.1).kept_by.tolist() == [-1, 0, -1]
    # (0.91, 0.41) and (0.89, 0.46) are themselves at cosine ~0.999: only a kept one counts, and the
    # second is not compared with the dropped first
    assert greedy_keep(x, epsilon=0.08).kept_by.tolist() == [-1, -1, 1]


def test_a_duplicate_is_filed_under_its_most_similar_kept_document():
    x = unit([1, 0, 0], [0, 1, 0], [0.1, 1, 0])
    kept = greedy_keep(x, epsilon=0.05)
    assert kept.kept_by.tolist() == [-1, -1, 1]
    assert kept.max_cosine[2] == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert np.isnan(kept.max_cosine[0])


def test_earlier_nights_documents_are_kept_and_a_new_copy_of_one_is_filed_under_it():
    # rows 0-1: documents earlier nights kept, themselves at cosine ~1 (never re-decided);
    # row 2 repeats row 1, row 3 is new
    x = unit([1, 0, 0], [1, 0.01, 0], [1, 0.012, 0], [0, 1, 0])
    kept = greedy_keep(x, epsilon=0.05, fixed=2)
    assert kept.kept_by.tolist() == [-1, -1, 1, -1]
    assert np.isnan(kept.max_cosine[:2]).all() and kept.max_cosine[2] > 0.99


def test_kmeans_separates_two_groups_and_repeats_for_a_seed():
    rng = np.random.default_rng(3)
    a = unit(*(np.array([1, 0, 0]) + rng.normal(0, 0.05, 3) for _ in range(20)))
    b = unit(*(np.array([0, 0, 1]) + rng.normal(0, 0.05, 3) for _ in range(20)))
    x = np.concatenate([a, b])
    first = spherical_kmeans(x, 2, seed=7)
    labels = np.argmax(x @ first.T, axis=1)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[20]
    np.testing.assert_array_equal(first, spherical_kmeans(x, 2, seed=7))


def doc_ids(n: int, start: int = 0) -> list[str]:
    return [f"{i:016x}" for i in range(start, start + n)]


def test_the_steps_drop_copies_name_the_kept_one_and_repeat(tmp_path):
    """Two shards; shard b holds a near copy of a document of shard a: the copy goes from b's
    corpus, dedup_clusters names the kept one, every document gets its attributes."""
    ids = doc_ids(6)
    vectors = unit([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0.02, 0, 0], [0, 0, 1, 1])
    corpus, embeddings = [], []
    for name, rows in (("a", [0, 1, 2]), ("b", [3, 4, 5])):
        corpus.append(write_shard(pa.table({"doc_id": [ids[i] for i in rows], "text": [f"t{i}" for i in rows]}),
                                  tmp_path / f"corpus-{name}.parquet"))
        embeddings.append(str(write_shard(pa.table({"doc_id": [ids[i] for i in rows],
                                                    "embedding": fixed_size_list(vectors[rows])}),
                                          tmp_path / f"embeddings-corpus-{name}.parquet")))
    cfg = SemDedupConfig(enabled=True, clusters=1, epsilon=0.05)

    def run(work):
        fit = fit_centroids(embeddings, cfg, work / "centroids.npy")
        assigned = [assign_shard(tmp_path / p, work / "centroids.npy", work) for p in embeddings]
        group = dedup_group([files[0] for files in assigned], cfg, work, 0)
        return fit, group, [apply_drops(c, [group["drops"]], work) for c in corpus]

    fit, group, kept = run(tmp_path / "one")
    assert fit["clusters"] == 1 and fit["docs"] == 6
    # one cluster: visited least typical first, so of the two copies the one farther from the
    # centroid is kept; either way exactly one of {ids[0], ids[4]} goes
    drops = read_shard(group["drops"]).to_pylist()
    assert len(drops) == 1 and drops[0]["doc_id"] in (ids[0], ids[4])
    assert drops[0]["reason"] == "semdedup" and drops[0]["stage"] == "quality"
    gone, stays = drops[0]["doc_id"], ({ids[0], ids[4]} - {drops[0]["doc_id"]}).pop()
    clusters = read_shard(group["clusters"]).to_pylist()
    assert sorted((c["cluster_id"], c["doc_id"], c["is_survivor"], c["kind"]) for c in clusters) == sorted(
        [(stays, stays, True, "semantic"), (stays, gone, False, "semantic")])
    assert [c["cosine"] for c in clusters if c["doc_id"] == gone][0] > 0.95
    attrs = read_shard(group["attributes"]).to_pylist()
    assert sorted({a["doc_id"] for a in attrs if a["name"] == "semantic_cluster"}) == ids
    assert {a["value"] for a in attrs if a["name"] == "semantic_cluster"} == {0.0}
    kept_ids = [read_shard(k["corpus"], ["doc_id"]).column("doc_id").to_pylist() for k in kept]
    assert sorted(kept_ids[0] + kept_ids[1]) == sorted(set(ids) - {gone})
    assert sum(k["dropped"] for k in kept) == 1

    _, again, _ = run(tmp_path / "two")
    for name in ("drops", "clusters", "attributes"):
        assert read_shard(again[name]).equals(read_shard(group[name]))


def test_embed_kept_reuses_earlier_rows_and_embeds_only_the_new(tmp_path):
    """A refilter's corpus shard: rows the earlier embeddings hold are copied (here stand-in
    vectors no encoder gives), only the new document is encoded; rows in the shard's order."""
    from refinery.tasks.embedding import BASE_MODEL_PATH

    ids = doc_ids(3)
    shard = write_shard(pa.table({"doc_id": [ids[2], ids[0], ids[1]],
                                  "text": ["new text about trains", "old one", "old two"]}), tmp_path / "corpus-a.x.parquet")
    stand_in = np.zeros((2, 384), np.float32)
    stand_in[0, 0] = stand_in[1, 1] = 1.0
    earlier = write_shard(pa.table({"doc_id": [ids[0], ids[1]], "embedding": fixed_size_list(stand_in)}),
                          tmp_path / "embeddings-corpus-a.parquet")
    out = embed_kept(shard, earlier=earlier, model_path=str(BASE_MODEL_PATH), out_dir=tmp_path, batch_size=8,
                     max_seq_length=None, backend="torch", cache_dir=None)
    table = read_shard(out)
    assert table.column("doc_id").to_pylist() == [ids[2], ids[0], ids[1]]
    x = to_matrix(table.column("embedding"))
    np.testing.assert_array_equal(x[1:], stand_in)
    assert abs(np.linalg.norm(x[0]) - 1) < 1e-4 and np.count_nonzero(x[0]) > 100


def test_a_later_night_reuses_the_centroids_and_drops_a_copy_of_an_earlier_nights_document(tmp_path):
    """Night 1 fits two clusters and keeps its documents; night 2's documents go to night 1's
    clusters, and its copy of a night-1 document is dropped and filed under it, unless the dataset
    retired that document since (then the copy is the one kept)."""
    cfg = SemDedupConfig(enabled=True, clusters=2, epsilon=0.05, seed=1)
    one, two = tmp_path / "one", tmp_path / "two"
    first = doc_ids(4)
    write_shard(pa.table({"doc_id": first, "embedding": fixed_size_list(
        unit([1, 0, 0], [1, 0.7, 0], [0, 0, 1], [0, 0.7, 1]))}), one / "embeddings-corpus-a.parquet")
    fit_one = fit_centroids([str(one / "embeddings-corpus-a.parquet")], cfg, one / "centroids.npy")
    assigned = assign_shard(one / "embeddings-corpus-a.parquet", one / "centroids.npy", one)
    night_one = dedup_group(assigned, cfg, one, 0)
    assert fit_one["clusters"] == 2 and not read_shard(night_one["drops"]).num_rows
    assert sorted(read_shard(night_one["kept"]).column("doc_id").to_pylist()) == first
    cluster_of = dict(zip(read_shard(night_one["kept"]).column("doc_id").to_pylist(),
                          read_shard(night_one["kept"]).column("cluster").to_pylist()))

    # night 2: a copy of first[2], and a document near first[0]'s group but no copy
    second = doc_ids(2, start=10)
    write_shard(pa.table({"doc_id": second, "embedding": fixed_size_list(unit([0, 0.001, 1], [1, -0.5, 0]))}),
                two / "embeddings-corpus-b.parquet")

    def night_two(work, retired=None):
        fit = fit_centroids([str(two / "embeddings-corpus-b.parquet")], cfg, work / "centroids.npy",
                            reuse=str(one / "centroids.npy"))
        files = assign_shard(two / "embeddings-corpus-b.parquet", work / "centroids.npy", work)
        return fit, dedup_group(files, cfg, work, 0, prior=[("v1", str(one))], retired=retired)

    fit, group = night_two(two / "work")
    assert fit["sample"] == 0 and np.array_equal(np.load(fit["centroids"]), np.load(one / "centroids.npy"))
    assert read_shard(group["drops"]).column("doc_id").to_pylist() == [second[0]]
    assert sorted((c["cluster_id"], c["doc_id"], c["is_survivor"]) for c in read_shard(group["clusters"]).to_pylist()) \
        == sorted([(first[2], first[2], True), (first[2], second[0], False)])
    attrs = {(a["doc_id"], a["name"]): a["value"] for a in read_shard(group["attributes"]).to_pylist()}
    # the same cluster numbers as night 1's: the copy in its original's, the other in first[0]'s
    assert attrs[(second[0], "semantic_cluster")] == cluster_of[first[2]]
    assert attrs[(second[1], "semantic_cluster")] == cluster_of[first[0]]
    assert {d for d, _ in attrs} == set(second)  # night 1's documents get no new rows
    assert read_shard(group["kept"]).column("doc_id").to_pylist() == [second[1]]

    retired = write_shard(pa.table({"doc_id": [first[2]], "added_in": ["v1"]}), tmp_path / "retired.parquet")
    _, after_retirement = night_two(two / "work-retired", retired=str(retired))
    assert not read_shard(after_retirement["drops"]).num_rows
    assert sorted(read_shard(after_retirement["kept"]).column("doc_id").to_pylist()) == second
