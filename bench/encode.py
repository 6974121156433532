"""Encoder benchmark: sentence-transformers on PyTorch vs the ONNX Runtime backends, on real text.

    python -m bench.encode --docs 256 --json bench/out/encode.json [--rounds 8] [--threads 2]

All three backends (``torch``, ``onnx``, ``onnx-int8``; ``evaluate.encoder``) embed BBC News
bodies at max_seq_length 256 (all-MiniLM-L6-v2's own limit and the evaluate stage's), loaded as
the pipeline loads them (:func:`tasks.embedding.load_encoder`; the ONNX graphs are exported from
the packaged model into a fresh cache folder, whose export time is reported apart).

1. **Throughput, 1 process x ``--threads``** (as a task that runs alone inside ``all_cores()``):
   ``--rounds`` rounds; each round every backend embeds the same ``--docs`` bodies, in an order
   that rotates from round to round, so the machine's other load hits all alike. Reported per
   backend: median texts/s (wall), and the median over rounds of the paired ratio
   (torch seconds / backend seconds of the same round), with its min and max; texts per CPU
   second of the process beside them. ``torch`` is today's encode (64 texts a forward pass, the
   ``evaluate.encode_batch_size`` default); the ONNX encoder runs at most ``RUN_BATCH_SIZE`` (16)
   texts a call, so ``torch@run_batch``, torch at that batch size, is reported beside it.
2. **2 processes x 1 thread** (as two Dask workers, torch at one thread): each process embeds half
   of the bodies at the same moment; texts/s over both, and the ONNX session's thread count each
   process used (must be 1).
3. **Retrieval**: the headline task of the bundled corpus, as the evaluate stage scores it: each
   distinct headline queries the distinct bodies (every body of an article with that headline
   relevant), ranked by dot product (``dense_rankings``) and scored by ``evaluate_rankings``.
   ``ndcg_diff_vs_torch`` per backend, and the cosine of each body's embedding to torch's.

The JSON has ``texts_per_s``, ``ratio_vs_torch``, ``workers_2x1``, ``retrieval`` and ``export_seconds``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.output import emit_report

BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
# Reference beside today's torch encode: torch at the texts-per-call the ONNX encoder runs.
TORCH_SMALL = "torch@run_batch"
MAX_SEQ_LENGTH = 256
DEFAULT_DOCS = 256
DEFAULT_ROUNDS = 8
DEFAULT_THREADS = 2
BATCH_SIZE = 64
SEED = 0


def bodies_sample(n: int) -> list[str]:
    """``n`` BBC bodies drawn without replacement by a seeded permutation (all five sections mixed)."""
    from tests.fixtures.corpora import load_bbc

    bodies = [a.body for a in load_bbc()]
    pick = np.random.default_rng(SEED).permutation(len(bodies))[: min(n, len(bodies))]
    return [bodies[i] for i in pick]


def headline_task() -> tuple[list[str], list[str], list[set[int]]]:
    """Distinct headlines, distinct bodies, and per headline the bodies of its articles."""
    from tests.fixtures.corpora import load_bbc

    body_index: dict[str, int] = {}
    relevant: dict[str, set[int]] = {}
    for a in load_bbc():
        j = body_index.setdefault(a.body, len(body_index))
        relevant.setdefault(a.headline, set()).add(j)
    return list(relevant), list(body_index), list(relevant.values())


def load(backend: str, cache_dir: str) -> Any:
    from refinery.tasks.embedding import load_encoder

    return load_encoder(max_seq_length=MAX_SEQ_LENGTH, backend=backend, cache_dir=cache_dir)  # type: ignore[arg-type]


def timed_encode(encoder: Any, texts: list[str], batch_size: int = BATCH_SIZE) -> tuple[float, float, np.ndarray]:
    from refinery.tasks.embedding import encode

    wall, cpu = time.perf_counter(), time.process_time()
    emb = encode(encoder, texts, batch_size=batch_size, show_progress=False)
    return time.perf_counter() - wall, time.process_time() - cpu, emb


def throughput(encoders: dict[str, Any], texts: list[str], rounds: int) -> dict[str, Any]:
    from refinery.tasks.onnx_encoder import RUN_BATCH_SIZE

    runs = {b: (encoders[b], BATCH_SIZE) for b in encoders} | {TORCH_SMALL: (encoders["torch"], RUN_BATCH_SIZE)}
    wall: dict[str, list[float]] = {b: [] for b in runs}
    cpu: dict[str, list[float]] = {b: [] for b in runs}
    names = list(runs)
    for r in range(rounds):
        for b in names[r % len(names):] + names[: r % len(names)]:
            encoder, batch_size = runs[b]
            w, c, _ = timed_encode(encoder, texts, batch_size)
            wall[b].append(w)
            cpu[b].append(c)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{b} {len(texts) / wall[b][-1]:.1f}/s" for b in names),
              file=sys.stderr)
    ratios = {b: [t / s for t, s in zip(wall["torch"], wall[b])] for b in names}
    return {
        "texts_per_s": {b: round(len(texts) / float(np.median(wall[b])), 2) for b in names},
        "texts_per_cpu_s": {b: round(len(texts) / float(np.median(cpu[b])), 2) for b in names},
        "ratio_vs_torch": {b: round(float(np.median(ratios[b])), 3) for b in names},
        "ratio_vs_torch_min": {b: round(min(ratios[b]), 3) for b in names},
        "ratio_vs_torch_max": {b: round(max(ratios[b]), 3) for b in names},
        "cpu_ratio_vs_torch": {b: round(float(np.median(cpu["torch"]) / np.median(cpu[b])), 3) for b in names},
        "round_seconds": {b: [round(x, 3) for x in wall[b]] for b in names},
    }


def _worker(backend: str, cache_dir: str, texts: list[str], barrier: Any, out: Any) -> None:
    # As a Dask worker: its nanny starts it with OMP_NUM_THREADS=1, so torch runs one thread.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    encoder = load(backend, cache_dir)
    timed_encode(encoder, texts[:BATCH_SIZE])  # warm-up: sessions and allocator at full batch size
    barrier.wait()
    start = time.time()
    timed_encode(encoder, texts)
    threads = encoder.session().get_session_options().intra_op_num_threads if backend != "torch" else torch.get_num_threads()
    out.put((start, time.time(), threads))


def two_workers(backends: list[str], cache_dir: str, texts: list[str]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    result = {}
    halves = [texts[0::2], texts[1::2]]
    for backend in backends:
        barrier, out = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(backend, cache_dir, half, barrier, out)) for half in halves]
        for p in procs:
            p.start()
        got = [out.get() for _ in procs]
        for p in procs:
            p.join()
        seconds = max(g[1] for g in got) - min(g[0] for g in got)
        result[backend] = {"texts_per_s": round(len(texts) / seconds, 2), "threads_per_process": [g[2] for g in got]}
        print(f"2 x 1 thread: {backend} {result[backend]}", file=sys.stderr)
    return result


def retrieval(encoders: dict[str, Any], max_docs: int | None) -> dict[str, Any]:
    from refinery.tasks.evaluate.retrieval import RANKING_DEPTH, dense_rankings, evaluate_rankings

    queries, docs, relevant = headline_task()
    if max_docs is not None and max_docs < len(docs):  # a quick look: keep the queries of the first docs
        keep = [i for i, rel in enumerate(relevant) if max(rel) < max_docs]
        queries, relevant, docs = [queries[i] for i in keep], [relevant[i] for i in keep], docs[:max_docs]
    out: dict[str, Any] = {"queries": len(queries), "docs": len(docs), "metrics": {}, "seconds": {}}
    doc_emb = {}
    for b, encoder in encoders.items():
        w, _, d = timed_encode(encoder, docs)
        _, _, q = timed_encode(encoder, queries)
        doc_emb[b] = d
        out["seconds"][b] = round(w, 1)
        out["metrics"][b] = {k: round(v, 5) for k, v in
                             evaluate_rankings(dense_rankings(q, d, RANKING_DEPTH), relevant).items()}
        print(f"retrieval {b}: {out['metrics'][b]} (docs embedded in {w:.0f} s)", file=sys.stderr)
    ref = out["metrics"]["torch"]
    out["ndcg_diff_vs_torch"] = {b: round(m["ndcg@10"] - ref["ndcg@10"], 5) for b, m in out["metrics"].items()}
    cos = {b: np.sum(doc_emb[b] * doc_emb["torch"], axis=1) for b in encoders}
    out["doc_cosine_to_torch"] = {b: {"min": round(float(c.min()), 5), "mean": round(float(c.mean()), 5)}
                                  for b, c in cos.items()}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS, help="bodies per throughput round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch (and ONNX Runtime) threads")
    parser.add_argument("--retrieval-docs", type=int, default=None, help="limit the retrieval corpus (default: all)")
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as cache_dir:  # ~150 MB of exports
        report = run(args, argv, cache_dir)
    emit_report(report, args.json)
    return report


def run(args: argparse.Namespace, argv: list[str] | None, cache_dir: str) -> dict[str, Any]:
    encoders, export_seconds = {}, {}
    for b in BACKENDS:
        start = time.perf_counter()
        encoders[b] = load(b, cache_dir)
        export_seconds[b] = round(time.perf_counter() - start, 1)
    texts = bodies_sample(args.docs)
    for encoder in encoders.values():
        timed_encode(encoder, texts[:BATCH_SIZE])  # warm-up
    report: dict[str, Any] = {
        "command": "python -m bench.encode " + " ".join(argv if argv is not None else sys.argv[1:]),
        "docs": len(texts), "rounds": args.rounds, "threads": args.threads, "max_seq_length": MAX_SEQ_LENGTH,
        "batch_size": BATCH_SIZE, "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                                              "load_avg_at_start": os.getloadavg()},
        "export_seconds": export_seconds,
    }
    report |= throughput(encoders, texts, args.rounds)
    if not args.skip_workers:
        report["workers_2x1"] = two_workers(list(BACKENDS), cache_dir, texts)
    if not args.skip_retrieval:
        report["retrieval"] = retrieval(encoders, args.retrieval_docs)
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    return report


if __name__ == "__main__":
    main()
