"""Semantic dedup (SemDeDup, Abbas et al. 2023) of the documents the quality rules kept.

Five steps, each a plain function over files (flows/quality.py maps them on the Dask workers):

1. :func:`embed_kept`: embed one corpus shard (reusing an earlier file's rows by doc id);
2. :func:`fit_centroids`: spherical k-means on a seeded sample of at most ``sample_docs`` rows;
3. :func:`assign_shard`: every document to its nearest centroid, written out per group of clusters;
4. :func:`dedup_group`: within each cluster of a group, :func:`greedy_keep` decides;
5. :func:`apply_drops`: a corpus shard less the documents step 4 dropped.

Within a cluster the members are visited from the least to the most typical (ascending cosine to
the centroid, then doc id), as SemDeDup keeps the least prototypical copy; each one whose cosine to
a document kept before it is above ``1 - epsilon`` is dropped and filed under that document.

A dataset's later nights build on its first: they assign their documents to the centroids its
first semdedup night fitted (so ``semantic_cluster`` names the same cluster on every night) and
compare them with the documents earlier nights kept in their cluster (the dataset's *semantic
index*: each night's kept documents with their cluster and embedding, ``kept-g<j>.parquet``),
which are kept by definition: a night's document that repeats one of them is dropped under it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from refinery.storage import fixed_size_list, read_shard, to_matrix, write_shard
from refinery.storage.location import location
from refinery.tasks.embedding import encode
from refinery.tasks.embedding_tasks import cached_encoder, embed_shard
from refinery.tasks.quality.config import DEFAULT_SEMDEDUP_DOCS_PER_CLUSTER, SemDedupConfig
from refinery.tasks.quality.shard_tasks import attributes_table

REASON = "semdedup"
KIND = "semantic"
# doc_attributes names: the k-means cluster index (another stage caps passages per cluster by it),
# and the highest cosine to a document kept before it in its cluster (NULL for the first).
CLUSTER_ATTRIBUTE = "semantic_cluster"
MAX_COSINE_ATTRIBUTE = "semdedup_max_cosine"
# The file of a night's semantic index that names what it was built with (index_settings).
SEMANTIC_SETTINGS = "settings.json"
# Lloyd iterations of the k-means fit (it stops earlier once no sample row changes cluster).
KMEANS_ITERATIONS = 20
# Clusters one dedup_group task decides: ~16 x 1,000 documents x 384 floats, ~25 MB.
CLUSTERS_PER_TASK = 16
# Rows of a cluster compared at once against the whole cluster (bounds the cosine block in memory).
COSINE_BLOCK = 512

DROPS_SCHEMA = pa.schema([("doc_id", pa.string()), ("stage", pa.string()), ("reason", pa.string())])
CLUSTERS_SCHEMA = pa.schema([("cluster_id", pa.string()), ("doc_id", pa.string()), ("is_survivor", pa.bool_()),
                             ("kind", pa.string()), ("cosine", pa.float64())])


# -- the pure parts --------------------------------------------------------------------------------

def spherical_kmeans(x: np.ndarray, k: int, *, seed: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """``k`` unit centroids of the unit rows ``x`` (cosine k-means, k-means++ seeding); ``k`` is
    capped at the rows given. Deterministic for a seed and the rows' order."""
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(x)))
    centroids = np.empty((k, x.shape[1]), dtype=np.float32)
    centroids[0] = x[rng.integers(len(x))]
    distance = np.maximum(1.0 - x @ centroids[0], 0.0)
    for i in range(1, k):
        total = distance.sum()
        pick = rng.choice(len(x), p=distance / total) if total > 0 else rng.integers(len(x))
        centroids[i] = x[pick]
        distance = np.minimum(distance, np.maximum(1.0 - x @ centroids[i], 0.0))
    labels = None
    for _ in range(iterations):
        new = np.argmax(x @ centroids.T, axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):  # an emptied cluster keeps its centroid
                mean = members.sum(axis=0)
                norm = np.linalg.norm(mean)
                centroids[c] = mean / norm if norm > 0 else centroids[c]
    return centroids


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster index, cosine to its centroid) of each row of ``x``."""
    if not len(x):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    sims = x @ centroids.T
    labels = np.argmax(sims, axis=1)
    return labels, sims[np.arange(len(x)), labels]


@dataclass(frozen=True)
class Kept:
    """What :func:`greedy_keep` decided, per member in the order given: ``kept_by`` the index of
    the kept member a dropped one duplicates (-1 for a kept one), ``max_cosine`` its highest cosine
    to a member kept before it (NaN for the first visited)."""

    kept_by: np.ndarray
    max_cosine: np.ndarray

    @property
    def dropped(self) -> np.ndarray:
        return self.kept_by >= 0


def visit_order(doc_ids: list[str], centroid_cosine: np.ndarray) -> np.ndarray:
    """The order :func:`greedy_keep` visits a cluster's members in: least typical first
    (ascending cosine to the centroid), doc id breaking ties."""
    return np.lexsort((np.array(doc_ids, dtype=object), np.round(centroid_cosine.astype(np.float64), 6)))


def greedy_keep(x: np.ndarray, epsilon: float, *, fixed: int = 0) -> Kept:
    """Visit the unit rows ``x`` in order; drop each whose cosine to a row kept before it is above
    ``1 - epsilon`` (filed under the most similar kept row), keep the others. The first ``fixed``
    rows are kept whatever they resemble (documents earlier nights kept) and not compared."""
    n = len(x)
    kept_by = np.full(n, -1, dtype=np.int64)
    max_cosine = np.full(n, np.nan)
    kept = np.zeros(n, dtype=bool)
    kept[:fixed] = True
    for start in range(fixed, n, COSINE_BLOCK):
        sims = x[start:start + COSINE_BLOCK] @ x[:start + COSINE_BLOCK].T
        for i in range(start, min(start + COSINE_BLOCK, n)):
            earlier = np.flatnonzero(kept[:i])
            if earlier.size:
                row = sims[i - start, earlier]
                best = int(np.argmax(row))
                max_cosine[i] = float(row[best])
                if row[best] > 1.0 - epsilon:
                    kept_by[i] = earlier[best]
                    continue
            kept[i] = True
    return Kept(kept_by, max_cosine)


def cluster_count(cfg: SemDedupConfig, docs: int, sample: int) -> int:
    """k: ``cfg.clusters``, or one per DEFAULT_SEMDEDUP_DOCS_PER_CLUSTER documents; never more than the sample."""
    k = cfg.clusters or -(-docs // DEFAULT_SEMDEDUP_DOCS_PER_CLUSTER)
    return max(1, min(k, sample))


def index_settings(cfg: SemDedupConfig, embeddings: str) -> dict[str, Any]:
    """What a dataset's semantic index must share across nights: the clustering (``epsilon`` may
    change: it decides only a night's own documents) and the embeddings' model and encoder."""
    return {"clusters": cfg.clusters, "sample_docs": cfg.sample_docs, "seed": cfg.seed, "embeddings": embeddings}


def work_key(corpus_shards: list[str], cfg: SemDedupConfig, embeddings_dir: Path, prior: list[str] = ()) -> str:
    """Names the files of one semdedup pass by what they derive from: the corpus shards (named by
    their decisions), the options, the embeddings and the dataset's earlier nights it builds on
    (``prior``); a rerun of the same pass finds them."""
    blob = json.dumps({"corpus": sorted(Path(p).name for p in corpus_shards), "cfg": cfg.model_dump(mode="json"),
                       "embeddings": embeddings_dir.name, **({"prior": list(prior)} if prior else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- the shard steps (one Prefect task each) -------------------------------------------------------

def embed_kept(shard: Path, *, earlier: Path | None, model_path: str, out_dir: Path, batch_size: int,
               max_seq_length: int | None, backend: str, cache_dir: str | None) -> str:
    """:func:`tasks.embedding_tasks.embed_shard` of a corpus shard; with ``earlier`` (the embeddings
    of the same input shard's corpus under earlier decisions, same encoder) only the documents it
    lacks are encoded, so a refilter re-embeds nothing it already embedded."""
    out = out_dir / f"embeddings-{shard.stem}.parquet"
    if out.exists() or earlier is None or not earlier.exists() or earlier == out:
        return embed_shard(shard, model_path=model_path, model_name="semdedup", out_dir=out_dir,
                           batch_size=batch_size, max_seq_length=max_seq_length, backend=backend, cache_dir=cache_dir)
    docs = read_shard(shard, ["doc_id", "text"])
    ids = docs.column("doc_id").combine_chunks()
    old = read_shard(earlier)
    old = old.filter(pc.is_in(old.column("doc_id"), value_set=ids))
    missing = docs.filter(pc.invert(pc.is_in(ids, value_set=old.column("doc_id").combine_chunks())))
    emb = encode(cached_encoder(model_path, max_seq_length, backend, cache_dir), missing.column("text").to_pylist(),
                 batch_size=batch_size, show_progress=False)
    matrix = np.concatenate([to_matrix(old.column("embedding")).astype(np.float32), emb]) if old.num_rows else emb
    order = pa.array(np.argsort(np.concatenate([
        _positions(ids, old.column("doc_id")), _positions(ids, missing.column("doc_id"))]), kind="stable"))
    both = pa.table({"doc_id": pa.concat_arrays([old.column("doc_id").combine_chunks().cast(pa.string()),
                                                 missing.column("doc_id").combine_chunks().cast(pa.string())]),
                     "embedding": fixed_size_list(matrix)})
    return str(write_shard(both.take(order), out))


def _positions(ids: pa.Array, of: pa.ChunkedArray) -> np.ndarray:
    return pc.index_in(of, value_set=ids).to_numpy(zero_copy_only=False).astype(np.int64)


def fit_centroids(embeddings: list[str], cfg: SemDedupConfig, out: Path, reuse: str | None = None) -> dict[str, Any]:
    """Fit k-means on the ``cfg.sample_docs`` documents with the smallest seeded hash of their doc
    id (the same sample whatever the shards' order), reading one shard at a time; the centroids to
    ``out`` (.npy). With ``reuse`` (the dataset's centroids, from its first semdedup night) those are
    copied to ``out`` instead of fitted. Returns its path, k, the documents seen and the sample."""
    if reuse is not None:
        docs = sum(read_shard(p, ["doc_id"]).num_rows for p in embeddings)
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".partial.npy")
            np.save(tmp, np.load(reuse))
            tmp.replace(out)
        return {"centroids": str(out), "clusters": len(np.load(out)) if docs else 0, "docs": docs, "sample": 0}
    docs = 0
    sample_keys = np.zeros(0, dtype=np.uint64)
    sample = np.zeros((0, 0), dtype=np.float32)
    for path in sorted(embeddings):
        table = read_shard(path)
        docs += table.num_rows
        if not table.num_rows:
            continue
        keys = np.array([xxhash.xxh64_intdigest(d.encode(), seed=cfg.seed % 2**64) for d in table.column("doc_id").to_pylist()],
                        dtype=np.uint64)
        rows = to_matrix(table.column("embedding")).astype(np.float32)
        keys, rows = np.concatenate([sample_keys, keys]), (np.concatenate([sample, rows]) if len(sample) else rows)
        keep = np.argsort(keys, kind="stable")[:cfg.sample_docs]
        sample_keys, sample = keys[keep], rows[keep]
    if not out.exists() and len(sample):
        k = cluster_count(cfg, docs, len(sample))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial.npy")
        np.save(tmp, spherical_kmeans(sample, k, seed=cfg.seed))
        tmp.replace(out)
    k = len(np.load(out)) if out.exists() else 0
    return {"centroids": str(out), "clusters": k, "docs": docs, "sample": len(sample)}


def groups_of(clusters: int) -> int:
    """How many dedup_group tasks ``clusters`` clusters are decided in."""
    return max(1, -(-clusters // CLUSTERS_PER_TASK))


def assign_shard(embeddings: Path, centroids: Path, out_dir: Path) -> list[str]:
    """Each document of an embeddings shard with its nearest centroid: one file per group of
    clusters (``assign-<stem>-g<j>.parquet``: doc_id, cluster, centroid_cosine, embedding)."""
    cent = np.load(centroids)
    groups = groups_of(len(cent))
    stem = embeddings.stem.removeprefix("embeddings-")
    paths = [out_dir / f"assign-{stem}-g{j}.parquet" for j in range(groups)]
    if all(p.exists() for p in paths):
        return [str(p) for p in paths]
    table = read_shard(embeddings)
    x = to_matrix(table.column("embedding")).astype(np.float32) if table.num_rows else np.zeros((0, cent.shape[1]),
                                                                                               np.float32)
    labels, cosine = nearest_centroid(x, cent)
    for j, path in enumerate(paths):
        rows = np.flatnonzero(labels % groups == j)
        write_shard(pa.table({
            "doc_id": table.column("doc_id").take(pa.array(rows, pa.int64())).cast(pa.string()),
            "cluster": pa.array(labels[rows], pa.int64()),
            "centroid_cosine": pa.array(cosine[rows].astype(np.float64), pa.float64()),
            "embedding": fixed_size_list(x[rows]) if rows.size else pa.array([], pa.list_(pa.float32(), x.shape[1])),
        }), path)
    return [str(p) for p in paths]


def prior_rows(prior: list[tuple[str, str]], group: int, retired: str | None) -> pa.Table:
    """The documents earlier nights kept in the clusters of ``group`` (doc_id, cluster, embedding):
    ``prior`` is (version, its semantic index folder) per earlier night; ``retired`` a shard of the
    (doc_id, added_in) pairs the dataset has retired since, which are left out."""
    tables = []
    gone = read_shard(retired) if retired else None
    for version, folder in prior:
        path = location(folder) / f"kept-g{group}.parquet"
        if not path.exists():
            continue
        table = read_shard(path, ["doc_id", "cluster", "embedding"])
        if not table.num_rows:
            continue
        if gone is not None and gone.num_rows:
            ids = gone.filter(pc.equal(gone.column("added_in"), version)).column("doc_id")
            table = table.filter(pc.invert(pc.is_in(table.column("doc_id"), value_set=ids.combine_chunks())))
        tables.append(table)
    return pa.concat_tables(tables) if tables else pa.table({"doc_id": pa.array([], pa.string())})


def dedup_group(assigned: list[str], cfg: SemDedupConfig, out_dir: Path, group: int,
                prior: list[tuple[str, str]] = (), retired: str | None = None) -> dict[str, str]:
    """Decide every cluster of one group (``assigned``: its files from every shard) against the
    documents the dataset's earlier nights kept in it (``prior``, see :func:`prior_rows`): drops
    (reason ``semdedup``), dedup_clusters rows (each kept document that others duplicate, named as
    the cluster, and those with their cosine to it), the two attributes of every document, and the
    night's part of the semantic index (``kept``: its kept documents' cluster and embedding)."""
    paths = {k: out_dir / f"{k}-g{group}.parquet" for k in ("drops", "clusters", "attributes", "kept")}
    if all(p.exists() for p in paths.values()):
        return {k: str(v) for k, v in paths.items()}
    table = pa.concat_tables([read_shard(p) for p in sorted(assigned)], promote_options="permissive")
    ids = np.array(table.column("doc_id").to_pylist(), dtype=object)
    cluster = table.column("cluster").to_numpy()
    cosine = table.column("centroid_cosine").to_numpy()
    x = to_matrix(table.column("embedding")).astype(np.float32) if table.num_rows else np.zeros((0, 1), np.float32)
    earlier = prior_rows(list(prior), group, retired)
    earlier_ids = np.array(earlier.column("doc_id").to_pylist(), dtype=object)
    earlier_cluster = earlier.column("cluster").to_numpy() if earlier.num_rows else np.zeros(0, np.int64)
    earlier_x = to_matrix(earlier.column("embedding")).astype(np.float32) if earlier.num_rows else None
    max_cosine = np.full(len(ids), np.nan)
    dropped = np.zeros(len(ids), dtype=bool)
    drops: list[str] = []
    clusters: dict[str, list] = {name: [] for name in CLUSTERS_SCHEMA.names}
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        members = members[visit_order(ids[members].tolist(), cosine[members])]
        before = np.flatnonzero(earlier_cluster == c)
        before = before[np.argsort(earlier_ids[before].astype(str), kind="stable")]
        rows = np.concatenate([earlier_x[before], x[members]]) if before.size else x[members]
        names = np.concatenate([earlier_ids[before], ids[members]])
        decided = greedy_keep(rows, cfg.epsilon, fixed=before.size)
        max_cosine[members] = decided.max_cosine[before.size:]
        dropped[members] = decided.dropped[before.size:]
        for survivor in np.unique(decided.kept_by[decided.dropped]):
            filed = np.flatnonzero(decided.kept_by == survivor)
            named = names[survivor]
            clusters["cluster_id"] += [named] * (filed.size + 1)
            clusters["doc_id"] += [named, *names[filed]]
            clusters["is_survivor"] += [True] + [False] * filed.size
            clusters["cosine"] += [None, *np.round(decided.max_cosine[filed], 4).tolist()]
            drops += names[filed].tolist()
    clusters["kind"] = [KIND] * len(clusters["doc_id"])
    keep = np.flatnonzero(~dropped)
    write_shard(pa.table({
        "doc_id": pa.array(ids[keep].tolist(), pa.string()), "cluster": pa.array(cluster[keep], pa.int64()),
        "embedding": fixed_size_list(x[keep]) if keep.size else pa.array([], pa.list_(pa.float32(), x.shape[1])),
    }), paths["kept"])
    write_shard(pa.table({"doc_id": drops, "stage": ["quality"] * len(drops), "reason": [REASON] * len(drops)},
                         schema=DROPS_SCHEMA), paths["drops"])
    write_shard(pa.table(clusters, schema=CLUSTERS_SCHEMA), paths["clusters"])
    write_shard(attributes_table(pa.array(ids.tolist(), pa.string()), {
        CLUSTER_ATTRIBUTE: cluster.astype(np.float64), MAX_COSINE_ATTRIBUTE: np.round(max_cosine, 4)}),
        paths["attributes"])
    return {k: str(v) for k, v in paths.items()}


def apply_drops(corpus: Path, drops: list[str], out_dir: Path) -> dict[str, Any]:
    """The corpus shard less the documents semdedup dropped, as ``<corpus stem>.<digest>.parquet``
    under ``out_dir`` (the digest of those dropped from it): (corpus, kept, dropped)."""
    dropped_ids = pa.concat_arrays([read_shard(p, ["doc_id"]).column("doc_id").combine_chunks().cast(pa.string())
                                    for p in drops]) if drops else pa.array([], pa.string())
    docs = read_shard(corpus)
    gone = pc.is_in(docs.column("doc_id"), value_set=dropped_ids)
    names = sorted(docs.column("doc_id").filter(gone).to_pylist())
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    out = out_dir / f"{corpus.stem}.{digest}.parquet"
    if not out.exists():
        write_shard(docs.filter(pc.invert(gone)), out)
    return {"corpus": str(out), "kept": docs.num_rows - len(names), "dropped": len(names)}
