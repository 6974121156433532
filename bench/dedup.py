"""Benchmark Refinery's dedup against datasketch and rensa on real-text corpora with known duplicates.

    python -m bench.dedup --docs 10000 --json bench/out/dedup-10k.json [--workers 1,2]

One run:
1. builds the corpus (tests/fixtures/corpora.py: BBC articles or BBC-paragraph remixes, with injected
   exact and near copies) as Parquet shards, generated in parallel by Dask workers;
2. times Refinery's signatures() in this process on up to --sample-docs docs (docs/s per core), and
   on subsamples of the same docs datasketch per-shingle update(), update_batch() and rensa, each with
   Python regex shingling in front, plus rensa given the shingles;
3. times the full dedup: Dask workers read shards and compute exact keys + signatures, then this
   process runs exact labels, LSH + connected components and survivors (total_seconds);
4. times the signature stage with each worker count of --workers on the same shards and checks the
   signatures are byte-identical across worker counts;
5. measures precision and recall of duplicate-pair detection against brute-force Jaccard of the
   shingle sets: all pairs (sparse matrix product) up to --all-pairs-max docs, else the injected
   (source, copy) pairs plus a sample of the detected pairs; and how alike each near drop is to
   the survivor it is filed under (true Jaccard of a sample, and the signature estimate of all).

--corpus overlap builds a corpus of overlapping runs of real sentences instead (4-12 consecutive
sentences of a BBC article each, no planted copies; tests/fixtures/corpora.py overlap_chunk): text
that chains. Its true pairs are sampled among runs of one article that overlap in most sentences.
--clustering components measures connected components (the behaviour before star clustering).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from tests.fixtures import corpora
from refinery.tasks.dedup import DedupConfig, deduplicate, estimated_jaccard, exact_keys, shingle_sets, signatures

DEFAULT_SAMPLE_DOCS = 50_000
DEFAULT_DATASKETCH_DOCS = 1_000
DEFAULT_RENSA_DOCS = 10_000
DEFAULT_SCALING_DOCS = 100_000
DEFAULT_ALL_PAIRS_MAX = 20_000
DEFAULT_PAIR_SAMPLE = 20_000
DEFAULT_ESTIMATE_PAIRS = 500

_TOKEN = re.compile(r"[0-9a-z\u0080-\U0010ffff]+")


# --------------------------------------------------------------------------- baselines


def python_shingles(text: str, n: int) -> list[str]:
    """Regex word n-grams, same units as Refinery's word shingles (the baselines' front end)."""
    tokens = _TOKEN.findall(text.casefold())
    if len(tokens) < n:
        return [" ".join(tokens)] if tokens else []
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def best_rate(fn, count: int, repeat: int) -> tuple[float, float]:
    """Best (docs per CPU second, docs per wall second) of `repeat` calls of fn() over `count` docs.

    CPU time of this process is what one core spent, so it is the per-core figure even when other
    processes share the machine; the wall rate is reported beside it.
    """
    best_cpu = best_wall = 0.0
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        best_cpu = max(best_cpu, _rate(count, time.process_time() - c))
        best_wall = max(best_wall, _rate(count, time.perf_counter() - w))
    return best_cpu, best_wall


def time_baselines(
    texts: Sequence[str], cfg: DedupConfig, *, datasketch_docs: int, rensa_docs: int, repeat: int
) -> dict:
    """Per-core docs/s of the reference implementations, each with regex shingling in front."""
    from datasketch import MinHash
    import rensa

    n, perm = cfg.shingle_size, cfg.num_perm
    sub = list(texts[:rensa_docs])
    ds = list(texts[:datasketch_docs])
    shingled = [python_shingles(x, n) for x in sub]

    def shingling() -> None:
        for x in sub:
            python_shingles(x, n)

    def datasketch_update() -> None:
        for text in ds:
            m = MinHash(num_perm=perm, seed=cfg.seed)
            for sh in python_shingles(text, n):
                m.update(sh.encode("utf-8"))

    def datasketch_batch() -> None:
        for text in ds:
            MinHash(num_perm=perm, seed=cfg.seed).update_batch([sh.encode("utf-8") for sh in python_shingles(text, n)])

    def rensa_shingling() -> None:
        for text in sub:
            r = rensa.RMinHash(perm, cfg.seed)
            r.update(python_shingles(text, n))
            r.digest()

    def rensa_given() -> None:
        for sh in shingled:
            r = rensa.RMinHash(perm, cfg.seed)
            r.update(sh)
            r.digest()

    out: dict = {"datasketch_sample_docs": len(ds), "rensa_sample_docs": len(sub)}
    for name, fn, count, reps in [
        ("python_shingling", shingling, len(sub), repeat),
        ("datasketch", datasketch_update, len(ds), 1),
        ("datasketch_update_batch", datasketch_batch, len(ds), 1),
        ("rensa", rensa_shingling, len(sub), repeat),
        ("rensa_given_shingles", rensa_given, len(sub), repeat),
    ]:
        cpu, wall = best_rate(fn, count, reps)
        out[f"{name}_docs_per_s"] = cpu
        out[f"{name}_wall_docs_per_s"] = wall
    return out


def estimate_errors(texts_a: Sequence[str], texts_b: Sequence[str], cfg: DedupConfig) -> dict:
    """Mean absolute error of Refinery's and datasketch's Jaccard estimates vs the true Jaccard, same pairs."""
    from datasketch import MinHash

    truth = np.array([_jaccard(a, b) for a, b in zip(shingle_sets(texts_a, cfg), shingle_sets(texts_b, cfg))])
    ours = estimated_jaccard(signatures(texts_a, cfg), signatures(texts_b, cfg))
    theirs = []
    for a, b in zip(texts_a, texts_b):
        ma, mb = MinHash(num_perm=cfg.num_perm, seed=cfg.seed), MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        ma.update_batch([s.encode() for s in python_shingles(a, cfg.shingle_size)])
        mb.update_batch([s.encode() for s in python_shingles(b, cfg.shingle_size)])
        theirs.append(ma.jaccard(mb))
    theirs = np.array(theirs)
    return {
        "estimate_pairs": len(truth),
        "estimate_mae_refinery": float(np.abs(ours - truth).mean()),
        "estimate_mae_datasketch": float(np.abs(theirs - truth).mean()),
        "estimate_bias_refinery": float((ours - truth).mean()),
        "estimate_bias_datasketch": float((theirs - truth).mean()),
    }


def _jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


# --------------------------------------------------------------------------- shards and workers


def build_shard(chunk_index: int, n_docs: int, seed: int, chunk_docs: int, directory: str, corpus: str = "synthetic") -> dict:
    """Worker task: generate one corpus chunk and write it as a Parquet shard; returns its metadata."""
    path = os.path.join(directory, f"shard-{chunk_index:05d}.parquet")
    if corpus == "overlap":
        runs = corpora.overlap_chunk(chunk_index, n_docs, seed=seed, chunk_docs=chunk_docs)
        pq.write_table(pa.table({"doc_id": runs.doc_ids, "text": runs.texts}), path)
        rows = len(runs.texts)
        return {
            "path": path, "first_row": runs.first_row, "kind": np.full(rows, "base"), "source": np.full(rows, -1),
            "edit_rate": np.zeros(rows), "article": runs.article, "start": runs.start, "count": runs.count,
            "length": np.fromiter(map(len, runs.texts), dtype=np.int64, count=rows),
        }
    chunk = corpora.synthetic_chunk(chunk_index, n_docs, seed=seed, chunk_docs=chunk_docs)
    pq.write_table(pa.table({"doc_id": chunk.doc_ids, "text": chunk.texts}), path)
    return {
        "path": path,
        "first_row": chunk.first_row,
        "kind": chunk.kind,
        "source": chunk.source,
        "edit_rate": chunk.edit_rate,
        "length": np.fromiter(map(len, chunk.texts), dtype=np.int64, count=len(chunk.texts)),
    }


def read_texts(path: str) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def sign_shard(path: str, cfg_json: str) -> dict:
    """Worker task: exact keys and signatures of one shard, with the CPU seconds spent on them
    (the task thread's own time, so heartbeats and other processes do not count) and on reading."""
    cfg = DedupConfig.model_validate_json(cfg_json)
    started = time.thread_time()
    texts = read_texts(path)
    t = time.thread_time()
    keys = exact_keys(texts)
    sigs = signatures(texts, cfg)
    done = time.thread_time()
    return {"keys": keys, "sigs": sigs, "cpu_seconds": done - t, "read_cpu_seconds": t - started}


def _peak_rss_mb() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries that across fork and exec, so a
    spawned worker would report its parent's peak; VmHWM belongs to the process's own memory map."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cluster(n_workers: int):
    import dask
    from distributed import Client, LocalCluster

    # distributed spawns workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap
    # threshold at 128 KiB: every batch-sized numpy array is then mmapped, page-faulted and unmapped,
    # and signatures() runs ~3x slower in a worker than in a plain process. Unset it.
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)

    cluster = LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="3GiB",
        silence_logs=logging.CRITICAL,  # workers closing at cluster shutdown log heartbeat errors
    )
    return cluster, Client(cluster)


def sign_shards(
    paths: Sequence[str], first_rows: Sequence[int], n_docs: int, cfg: DedupConfig, n_workers: int, *, collect: bool
) -> dict:
    """Workers read and sign the shards; wall seconds exclude cluster start-up.

    Returns wall seconds, the workers' summed CPU seconds, a digest of all signatures in row order,
    the workers' peak RSS and, with collect, the keys and signatures assembled in row order.
    """
    from distributed import as_completed

    cluster, client = _cluster(n_workers)
    try:
        client.wait_for_workers(n_workers)
        client.run(lambda: __import__("refinery.tasks.dedup") and None)  # imports happen before the clock starts
        cfg_json = cfg.model_dump_json()
        keys = np.empty(n_docs if collect else 0, dtype=np.uint64)
        sigs = np.empty((n_docs if collect else 0, cfg.num_perm), dtype=np.uint32)
        t = time.perf_counter()
        futures = client.map(sign_shard, list(paths), cfg_json=cfg_json, pure=False)
        first_of = {f.key: first for f, first in zip(futures, first_rows)}
        digests: dict[int, str] = {}
        cpu = read_cpu = 0.0
        for future, result in as_completed(futures, with_results=True):
            lo = first_of[future.key]
            digests[lo] = xxhash.xxh3_64_hexdigest(result["sigs"].tobytes())
            cpu += result["cpu_seconds"]
            read_cpu += result["read_cpu_seconds"]
            if collect:
                keys[lo : lo + result["keys"].size] = result["keys"]
                sigs[lo : lo + result["sigs"].shape[0]] = result["sigs"]
            future.release()
        seconds = time.perf_counter() - t
        rss = list(client.run(_peak_rss_mb).values())
    finally:
        client.close()
        cluster.close()
    digest = xxhash.xxh3_64_hexdigest("".join(digests[k] for k in sorted(digests)).encode())
    return {"seconds": seconds, "cpu_seconds": cpu, "read_cpu_seconds": read_cpu, "digest": digest, "rss": rss,
            "keys": keys, "sigs": sigs}


# --------------------------------------------------------------------------- accuracy


def _all_pairs_jaccard(sets: Sequence[set], min_jaccard: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute force: every pair (i < j) with Jaccard >= min_jaccard, via a sparse doc x shingle product."""
    from scipy import sparse

    vocab: dict = {}
    indptr = [0]
    indices: list[int] = []
    for s in sets:
        indices.extend(vocab.setdefault(x, len(vocab)) for x in s)
        indptr.append(len(indices))
    n = len(sets)
    mat = sparse.csr_matrix(
        (np.ones(len(indices), dtype=np.int32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(n, max(1, len(vocab))),
    )
    sizes = np.diff(mat.indptr)
    out_i, out_j, out_s = [], [], []
    block = 2000
    for lo in range(0, n, block):
        prod = (mat[lo : lo + block] @ mat.T).tocoo()
        i = prod.row.astype(np.int64) + lo
        j = prod.col.astype(np.int64)
        upper = j > i
        i, j, inter = i[upper], j[upper], prod.data[upper].astype(np.float64)
        jac = inter / (sizes[i] + sizes[j] - inter)
        keep = jac >= min_jaccard
        out_i.append(i[keep])
        out_j.append(j[keep])
        out_s.append(jac[keep])
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


def _pair_keys(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return lo.astype(np.int64) * n + hi


def _precision_recall(edge_sim: np.ndarray, truth_sim: np.ndarray, detected: np.ndarray, t: float, grey: float) -> dict:
    """Precision over detected pairs and recall over true pairs, all pairs and outside |J - t| < grey."""
    out = {}
    for suffix, e_mask, t_mask in [
        ("", np.ones(edge_sim.size, bool), np.ones(truth_sim.size, bool)),
        ("_outside_grey_zone", np.abs(edge_sim - t) >= grey, np.abs(truth_sim - t) >= grey),
    ]:
        es = edge_sim[e_mask]
        positives = (truth_sim >= t) & t_mask
        out["precision" + suffix] = float((es >= t).mean()) if es.size else 1.0
        out["recall" + suffix] = float(detected[positives].mean()) if positives.any() else 1.0
    out["grey_zone"] = grey
    return out


def _roots(source: np.ndarray) -> np.ndarray:
    """Original row each row was (transitively) copied from; itself for base rows."""
    root = np.where(source >= 0, source, np.arange(source.size))
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def _edge_breakdown(i: np.ndarray, j: np.ndarray, sim: np.ndarray, source: np.ndarray, t: float) -> dict:
    """Detected pairs by provenance (one copied from the other, same family, unrelated), with the
    share at or above the threshold, and by true-Jaccard bucket."""
    root = _roots(source)
    direct = (source[j] == i) | (source[i] == j)
    family = ~direct & (root[i] == root[j])
    out: dict = {}
    for name, mask in (("copy_of", direct), ("same_family", family), ("unrelated", ~direct & ~family)):
        out[name] = {"edges": int(mask.sum()), "precision": float((sim[mask] >= t).mean()) if mask.any() else None}
    edges = [0.0, 0.5, 0.6, 0.7, 0.75, 0.78, 0.8, 0.82, 0.85, 0.9, 0.95, 1.0001]
    out["by_jaccard"] = [
        {"jaccard": f"[{lo:.2f},{min(hi, 1.0):.2f})", "edges": int(((sim >= lo) & (sim < hi)).sum())}
        for lo, hi in zip(edges[:-1], edges[1:])
    ]
    return out


def _bucket_table(similarity: np.ndarray, detected: np.ndarray) -> list[dict]:
    edges = [0.0, 0.5, 0.6, 0.7, 0.75, 0.78, 0.8, 0.82, 0.85, 0.9, 0.95, 1.0001]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (similarity >= lo) & (similarity < hi)
        if m.any():
            rows.append({"jaccard": f"[{lo:.2f},{min(hi, 1.0):.2f}{')' if hi < 1 else ']'}", "pairs": int(m.sum()),
                         "detected": float(detected[m].mean())})
    return rows


def accuracy(
    n: int, meta: dict, edges: tuple[np.ndarray, np.ndarray], labels: np.ndarray, keep: np.ndarray,
    shard_paths: Sequence[str], cfg: DedupConfig, *, all_pairs_max: int, pair_sample: int, seed: int, grey: float,
) -> dict:
    """Precision/recall of duplicate-pair detection vs brute-force Jaccard on the same pairs.

    precision: detected pairs (verified LSH edges) whose true Jaccard >= threshold.
    recall: true pairs (Jaccard >= threshold) that are detected edges. cluster_recall: true pairs that
    end in one cluster (under star clustering a pair can be resolved without it: one member filed
    under a third document). dedup_recall: true pairs of which at most one is kept (what a user of
    the curated corpus sees: a true pair left in it is a miss). Exact duplicates are excluded (they are removed first):
    pairs are taken among exact-dedup representatives. The *_outside_grey_zone figures leave out
    pairs within `grey` of the threshold, where a 128-value signature cannot tell the sides apart
    (estimate standard deviation ~0.035 at J = 0.8).
    """
    rng = np.random.default_rng(seed)
    ei, ej = edges
    edge_keys = _pair_keys(ei, ej, n)
    reps = meta["exact_rep"]
    out: dict = {}
    if n <= all_pairs_max:
        texts = [t for p in shard_paths for t in read_texts(p)]
        rep_rows = np.flatnonzero(reps)
        sets = shingle_sets([texts[r] for r in rep_rows], cfg)
        low = min(cfg.threshold, 0.5)
        pi, pj, ps = _all_pairs_jaccard(sets, low)
        pi, pj = rep_rows[pi], rep_rows[pj]
        true_keys = _pair_keys(pi, pj, n)
        sim_of = dict(zip(true_keys.tolist(), ps.tolist()))
        edge_sim = np.array([sim_of.get(k, 0.0) for k in edge_keys.tolist()])  # below `low` counts as 0
        truth_mask = ps >= cfg.threshold
        detected = np.isin(true_keys, edge_keys)
        same_cluster = labels[pi] == labels[pj]
        out["truth"] = "all pairs"
        out["truth_pairs"] = int(truth_mask.sum())
        out |= _precision_recall(edge_sim, ps, detected, cfg.threshold, grey)
        out["cluster_recall"] = float(same_cluster[truth_mask].mean()) if truth_mask.any() else 1.0
        out["dedup_recall"] = float((~(keep[pi] & keep[pj]))[truth_mask].mean()) if truth_mask.any() else 1.0
        out["detection_by_jaccard"] = _bucket_table(ps, detected)
        out["edges_evaluated"] = int(edge_keys.size)
        out["detected_pairs"] = _edge_breakdown(ei, ej, edge_sim, meta["source"], cfg.threshold)
        return out

    # Sampled truth: injected (source, copy) pairs among representatives, or for a corpus of
    # overlapping runs, runs of one article that overlap in most sentences; and a sample of detected edges.
    if "article" in meta:
        src, copies = _overlapping_pairs(meta, reps, rng, pair_sample)
    else:
        copies = np.flatnonzero((meta["source"] >= 0) & reps & reps[np.maximum(meta["source"], 0)])
        copies = rng.choice(copies, size=min(pair_sample, copies.size), replace=False)
        src = meta["source"][copies]
    pick = rng.choice(ei.size, size=min(pair_sample, ei.size), replace=False) if ei.size else np.empty(0, int)
    rows = np.concatenate([copies, src, ei[pick], ej[pick]])
    texts = _texts_of_rows(rows, shard_paths, meta["shard_first"])
    def sims(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = []
        for lo in range(0, a.size, 1000):  # shingle sets of tuples take ~60 KB a doc: build a few at a time
            sa = shingle_sets([texts[r] for r in a[lo : lo + 1000].tolist()], cfg)
            sb = shingle_sets([texts[r] for r in b[lo : lo + 1000].tolist()], cfg)
            out += [_jaccard(x, y) for x, y in zip(sa, sb)]
        return np.array(out)
    inj_sim = sims(src, copies)
    edge_sim = sims(ei[pick], ej[pick])
    inj_keys = _pair_keys(src, copies, n)
    detected = np.isin(inj_keys, edge_keys)
    truth_mask = inj_sim >= cfg.threshold
    out["truth"] = "sampled: injected pairs + detected pairs"
    out["truth_pairs"] = int(truth_mask.sum())
    out |= _precision_recall(edge_sim, inj_sim, detected, cfg.threshold, grey)
    out["cluster_recall"] = float((labels[src] == labels[copies])[truth_mask].mean()) if truth_mask.any() else 1.0
    out["dedup_recall"] = float((~(keep[src] & keep[copies]))[truth_mask].mean()) if truth_mask.any() else 1.0
    out["detection_by_jaccard"] = _bucket_table(inj_sim, detected)
    out["edges_evaluated"] = int(pick.size)
    out["detected_pairs"] = _edge_breakdown(ei[pick], ej[pick], edge_sim, meta["source"], cfg.threshold)
    return out


def _overlapping_pairs(meta: dict, reps: np.ndarray, rng: np.random.Generator, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `sample` pairs of exact-dedup representatives that are runs of one article sharing at
    least 60% of their sentences (the candidates for true near-duplicates), one per sampled row."""
    rows = np.flatnonzero(reps)
    order = rows[np.lexsort((meta["count"][rows], meta["start"][rows], meta["article"][rows]))]
    position = rng.choice(order.size, size=min(sample, order.size), replace=False)
    a_out, b_out = [], []
    for p in position.tolist():
        a = order[p]
        near = order[max(0, p - 40) : p + 41]
        near = near[(near != a) & (meta["article"][near] == meta["article"][a])]
        lo = np.maximum(meta["start"][near], meta["start"][a])
        hi = np.minimum(meta["start"][near] + meta["count"][near], meta["start"][a] + meta["count"][a])
        union = meta["count"][near] + meta["count"][a] - np.maximum(hi - lo, 0)
        near = near[np.maximum(hi - lo, 0) / union >= 0.6]
        if near.size:
            a_out.append(a)
            b_out.append(int(rng.choice(near)))
    return np.array(a_out, dtype=np.int64), np.array(b_out, dtype=np.int64)


def survivor_similarity(result, paths: Sequence[str], shard_first: np.ndarray, cfg: DedupConfig, *,
                        sample: int, seed: int) -> dict:
    """How alike a near drop is to the survivor it is filed under: true Jaccard of the shingle sets
    on a sample of near drops (p10, median, share below 0.5 and at or above the threshold)."""
    near = np.flatnonzero(result.reasons == "dedup_near")
    if not near.size:
        return {"survivor_sample": 0}
    rng = np.random.default_rng(seed)
    picked = rng.choice(near, size=min(sample, near.size), replace=False)
    survivors = result.survivors[picked]
    texts = _texts_of_rows(np.concatenate([picked, survivors]), paths, shard_first)
    sims = []
    for lo in range(0, picked.size, 1000):
        a = shingle_sets([texts[r] for r in picked[lo : lo + 1000].tolist()], cfg)
        b = shingle_sets([texts[r] for r in survivors[lo : lo + 1000].tolist()], cfg)
        sims += [_jaccard(x, y) for x, y in zip(a, b)]
    sims = np.array(sims)
    p10, median = np.quantile(sims, [0.1, 0.5])
    return {
        "survivor_sample": int(picked.size),
        "survivor_true_jaccard_p10": float(p10),
        "survivor_true_jaccard_median": float(median),
        "survivor_true_jaccard_below_half": float((sims < 0.5).mean()),
        "survivor_true_jaccard_at_threshold": float((sims >= cfg.threshold).mean()),
    }


def _texts_of_rows(rows: np.ndarray, paths: Sequence[str], shard_first: np.ndarray) -> dict[int, str]:
    rows = np.unique(rows)
    shard = np.searchsorted(shard_first, rows, side="right") - 1
    out: dict[int, str] = {}
    for s in np.unique(shard).tolist():
        texts = read_texts(paths[s])
        for r in rows[shard == s].tolist():
            out[r] = texts[r - int(shard_first[s])]
    return out


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    cfg = DedupConfig(threshold=args.threshold, num_perm=args.num_perm, shingle=args.shingle, seed=args.seed,
                      clustering=args.clustering)
    workers = sorted({int(w) for w in args.workers.split(",")})
    n = args.docs
    report: dict = {"docs": n, "config": json.loads(cfg.model_dump_json()), "cpu_count": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()[0]}
    workdir = Path(tempfile.mkdtemp(prefix="refinery-dedup-", dir=args.tmp))
    worker_rss: list[float] = []
    try:
        # 1. corpus shards, generated by the workers
        t = time.perf_counter()
        cluster, client = _cluster(max(workers))
        try:
            futures = client.map(build_shard, range(-(-n // args.chunk_docs)), n_docs=n, seed=args.seed,
                                 chunk_docs=args.chunk_docs, directory=str(workdir), corpus=args.corpus, pure=False)
            shards = client.gather(futures)
        finally:
            client.close()
            cluster.close()
        report["corpus_build_seconds"] = time.perf_counter() - t
        paths = [sh["path"] for sh in shards]
        firsts = [sh["first_row"] for sh in shards]
        columns = ("kind", "source", "edit_rate", "length") + (("article", "start", "count") if args.corpus == "overlap" else ())
        meta = {k: np.concatenate([sh[k] for sh in shards]) for k in columns}
        meta["shard_first"] = np.array(firsts, dtype=np.int64)
        report["corpus"] = {
            "base": int((meta["kind"] == "base").sum()),
            "exact_copies": int((meta["kind"] == "exact").sum()),
            "near_copies": int((meta["kind"] == "near").sum()),
            "mean_chars": float(meta["length"].mean()),
            "name": args.corpus,
            "real_article_bases": args.corpus == "overlap" or corpora.uses_real_bases(n, chunk_docs=args.chunk_docs),
            "edit_rates": list(corpora.DEFAULT_EDIT_RATES),
        }

        # 2. per-core throughput in this process, everyone on the same docs
        sample: list[str] = []
        for p in paths:
            if len(sample) >= args.sample_docs:
                break
            sample.extend(read_texts(p))
        sample = sample[: args.sample_docs]
        signatures(sample[:200], cfg)  # warm-up: constants, imports
        cpu, wall = best_rate(lambda: signatures(sample, cfg), len(sample), args.repeat)
        report["signature_sample_docs"] = len(sample)
        report["signature_docs_per_s_per_core"] = cpu
        report["signature_wall_docs_per_s"] = wall
        report["exact_key_docs_per_s_per_core"] = best_rate(lambda: exact_keys(sample), len(sample), 1)[0]
        if not args.skip_baselines:
            report |= time_baselines(sample, cfg, datasketch_docs=args.datasketch_docs, rensa_docs=args.rensa_docs,
                                     repeat=args.repeat)
            ours = report["signature_docs_per_s_per_core"]
            for name in ("datasketch", "datasketch_update_batch", "rensa", "rensa_given_shingles"):
                report[f"ratio_vs_{name}"] = ours / report[f"{name}_docs_per_s"]
            near_rows = np.flatnonzero(meta["kind"][: len(sample)] == "near")[: args.estimate_pairs]
            report |= estimate_errors([sample[meta["source"][r]] for r in near_rows], [sample[r] for r in near_rows], cfg)
        del sample

        # 3. full dedup with the largest worker count: shards -> keys + signatures -> labels -> survivors
        signed = sign_shards(paths, firsts, n, cfg, max(workers), collect=True)
        worker_rss += signed["rss"]
        t = time.perf_counter()
        result = deduplicate(signed["keys"], signed["sigs"], meta["length"], cfg)
        dedup_seconds = time.perf_counter() - t
        report["stage_seconds"] = {"read_and_sign_shards": signed["seconds"], "exact_near_clusters_survivors": dedup_seconds}
        report["worker_cpu_seconds"] = {"exact_keys_and_signatures": signed["cpu_seconds"],
                                        "read_shards": signed["read_cpu_seconds"]}
        report["signature_and_key_docs_per_worker_cpu_s"] = _rate(n, signed["cpu_seconds"])
        report["total_seconds"] = signed["seconds"] + dedup_seconds
        report["dedup_workers"] = max(workers)
        report |= {f"result_{k}": v for k, v in result.stats().items()}
        sigs = signed.pop("sigs")
        del signed, sigs

        # 4. Dask scaling of the signature stage on the same shards
        scale_shards = max(1, -(-min(args.scaling_docs, n) // args.chunk_docs))
        scaling, cpu_by_workers, digests = {}, {}, set()
        for w in workers:
            run_w = sign_shards(paths[:scale_shards], firsts[:scale_shards], 0, cfg, w, collect=False)
            scaling[str(w)] = run_w["seconds"]
            cpu_by_workers[str(w)] = run_w["cpu_seconds"]
            digests.add(run_w["digest"])
            worker_rss += run_w["rss"]
        report["scaling_docs"] = int(min(n, scale_shards * args.chunk_docs))
        report["signature_stage_seconds_by_workers"] = scaling
        report["signature_stage_worker_cpu_seconds_by_workers"] = cpu_by_workers
        if len(workers) > 1 and scale_shards >= 2 * max(workers):
            report["dask_speedup"] = scaling[str(workers[0])] / scaling[str(workers[-1])]
        report["scaling_shards"] = scale_shards
        report["signatures_identical_across_workers"] = len(digests) == 1

        # ru_maxrss only grows: read it before the brute-force truth, which is not part of dedup
        report["peak_rss_mb"] = _peak_rss_mb()

        # 5. accuracy against brute-force Jaccard
        meta["exact_rep"] = result.exact_labels == np.arange(n)
        all_pairs_max = 0 if args.corpus == "overlap" else args.all_pairs_max  # its truth is sampled by design
        report |= accuracy(n, meta, result.edges, result.labels, result.keep, paths, cfg, all_pairs_max=all_pairs_max,
                           pair_sample=args.pair_sample, seed=args.seed, grey=args.grey_zone)
        report |= survivor_similarity(result, paths, meta["shard_first"], cfg, sample=args.survivor_sample, seed=args.seed)
        report["peak_rss_with_truth_mb"] = _peak_rss_mb()
        report["worker_peak_rss_mb"] = max(worker_rss) if worker_rss else 0.0
        report["load_average_at_end"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["command"] = "python -m bench.dedup " + " ".join(sys.argv[1:])
    return report


def print_table(report: dict) -> None:
    def f(key: str, fmt: str = "{:,.0f}") -> str:
        return fmt.format(report[key]) if key in report else "-"

    lines = [
        f"docs                          {f('docs')}",
        f"refinery signatures docs/s/core {f('signature_docs_per_s_per_core')}  (on {f('signature_sample_docs')} docs)",
        f"datasketch update() docs/s    {f('datasketch_docs_per_s')}  ratio {f('ratio_vs_datasketch', '{:.1f}x')}",
        f"datasketch update_batch docs/s {f('datasketch_update_batch_docs_per_s')}",
        f"rensa (python shingling) docs/s {f('rensa_docs_per_s')}  ratio {f('ratio_vs_rensa', '{:.1f}x')}",
        f"rensa given shingles docs/s   {f('rensa_given_shingles_docs_per_s')}",
        f"python shingling alone docs/s {f('python_shingling_docs_per_s')}",
        f"full dedup seconds            {f('total_seconds', '{:.1f}')}  ({report.get('dedup_workers')} workers)",
        f"peak RSS MB main / worker     {f('peak_rss_mb')} / {f('worker_peak_rss_mb')}",
        f"signature stage s by workers  {report.get('signature_stage_seconds_by_workers')}  speedup {f('dask_speedup', '{:.2f}x')}",
        f"precision / recall            {f('precision', '{:.4f}')} / {f('recall', '{:.4f}')}  cluster recall {f('cluster_recall', '{:.4f}')}  ({report.get('truth')}, {f('truth_pairs')} true pairs)",
        f"  outside |J-t| < {report.get('grey_zone')}          {f('precision_outside_grey_zone', '{:.4f}')} / {f('recall_outside_grey_zone', '{:.4f}')}",
        f"estimate MAE refinery / datasketch {f('estimate_mae_refinery', '{:.4f}')} / {f('estimate_mae_datasketch', '{:.4f}')}",
        f"lsh bands x rows              {report.get('result_lsh_bands')} x {report.get('result_lsh_rows')}  P(candidate | J=threshold) {f('result_lsh_candidate_probability_at_threshold', '{:.3f}')}",
        f"kept / exact / near dropped   {f('result_kept')} / {f('result_dropped_dedup_exact')} / {f('result_dropped_dedup_near')}",
        f"largest cluster               {f('result_largest_cluster')}  ({report.get('config', {}).get('clustering')} clustering)  dedup recall {f('dedup_recall', '{:.4f}')}",
        f"near drop ~ survivor Jaccard  estimated min / p10 / median {f('result_near_survivor_jaccard_min', '{:.3f}')} / "
        f"{f('result_near_survivor_jaccard_p10', '{:.3f}')} / {f('result_near_survivor_jaccard_median', '{:.3f}')}",
        f"  true (sample of {f('survivor_sample')})        p10 / median {f('survivor_true_jaccard_p10', '{:.3f}')} / "
        f"{f('survivor_true_jaccard_median', '{:.3f}')}  below 0.5 {f('survivor_true_jaccard_below_half', '{:.3f}')}  "
        f">= threshold {f('survivor_true_jaccard_at_threshold', '{:.3f}')}",
    ]
    print("\n".join(lines))
    for row in report.get("detection_by_jaccard", []):
        print(f"  J {row['jaccard']:<13} pairs {row['pairs']:>7,}  detected {row['detected']:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, required=True, help="corpus size")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--workers", default="1,2", help="Dask worker counts for the scaling test; the largest runs the dedup")
    parser.add_argument("--threshold", type=float, default=DedupConfig().threshold)
    parser.add_argument("--num-perm", type=int, default=DedupConfig().num_perm)
    parser.add_argument("--shingle", choices=["word", "char"], default="word")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk-docs", type=int, default=corpora.DEFAULT_CHUNK_DOCS)
    parser.add_argument("--sample-docs", type=int, default=DEFAULT_SAMPLE_DOCS, help="docs for the per-core timing")
    parser.add_argument("--datasketch-docs", type=int, default=DEFAULT_DATASKETCH_DOCS)
    parser.add_argument("--rensa-docs", type=int, default=DEFAULT_RENSA_DOCS)
    parser.add_argument("--estimate-pairs", type=int, default=DEFAULT_ESTIMATE_PAIRS)
    parser.add_argument("--scaling-docs", type=int, default=DEFAULT_SCALING_DOCS)
    parser.add_argument("--all-pairs-max", type=int, default=DEFAULT_ALL_PAIRS_MAX)
    parser.add_argument("--pair-sample", type=int, default=DEFAULT_PAIR_SAMPLE)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings (Refinery, rensa)")
    parser.add_argument("--grey-zone", type=float, default=0.05, help="half-width around the threshold for the *_outside_grey_zone figures")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--corpus", choices=["synthetic", "overlap"], default="synthetic",
                        help="synthetic: BBC-based with planted copies; overlap: overlapping runs of real sentences")
    parser.add_argument("--clustering", choices=["star", "components"], default=DedupConfig().clustering)
    parser.add_argument("--survivor-sample", type=int, default=2000, help="near drops whose true Jaccard with their survivor is measured")
    parser.add_argument("--tmp", default=None, help="directory for the corpus shards")
    args = parser.parse_args(argv)
    report = run(args)
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
