"""Semantic dedup cost (issue 25 item 1): embed + k-means + dedup, per 100k documents.

    nice -n 10 python -m bench.semdedup --docs 3000 --json bench/out/semdedup.json

The steps of ``quality.semdedup`` (tasks/quality/semdedup.py) run in this one process, in order, on
``--docs`` documents of the synthetic benchmark corpus (real BBC articles as bases, 20% near and
5% exact copies: tests/fixtures/corpora.py) written as corpus shards of ``--shard-docs``: embed each
shard (the default ``evaluate.encoder``, onnx-int8, exported into a fresh cache first; the export is
timed apart, being once per model and data home), fit k-means on the sample, assign, decide each
group of clusters, write the corpus less the drops. Each step's seconds are scaled linearly to
100,000 documents: true for embedding, assigning and writing (per document); the k-means fit
reads a sample bounded by ``sample_docs`` (so it is overstated) and the dedup step grows with
cluster size, which ``clusters: None`` holds near 1,000 documents (so ~linear).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from bench.output import emit_report

DEFAULT_DOCS = 3000
DEFAULT_SHARD_DOCS = 500
PER = 100_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS)
    parser.add_argument("--shard-docs", type=int, default=DEFAULT_SHARD_DOCS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fixtures.corpora import synthetic_chunk

    from refinery.storage import write_shard
    from refinery.tasks.embedding import BASE_MODEL_PATH, all_cores
    from refinery.tasks.embedding_tasks import cached_encoder
    from refinery.tasks.evaluate.config import EvaluateConfig
    from refinery.tasks.quality.config import SemDedupConfig
    from refinery.tasks.quality.semdedup import (apply_drops, assign_shard, dedup_group, embed_kept, fit_centroids,
                                                 groups_of)

    enc, cfg = EvaluateConfig(), SemDedupConfig(enabled=True)
    chunk = synthetic_chunk(0, args.docs, chunk_docs=args.docs)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, all_cores() as threads:
        root = Path(tmp)
        corpus = [write_shard(pa.table({"doc_id": chunk.doc_ids[i:i + args.shard_docs],
                                        "text": chunk.texts[i:i + args.shard_docs]}),
                              root / f"corpus-{i // args.shard_docs:04d}.parquet")
                  for i in range(0, args.docs, args.shard_docs)]
        cache = str(root / "cache")
        started = time.perf_counter()
        cached_encoder(str(BASE_MODEL_PATH), enc.max_seq_length, enc.encoder, cache)
        export = time.perf_counter() - started

        def timed(step: str, fn):
            start = time.perf_counter()
            out = fn()
            seconds[step] = time.perf_counter() - start
            return out

        embeddings = timed("embed", lambda: [embed_kept(
            c, earlier=None, model_path=str(BASE_MODEL_PATH), out_dir=root / "emb", batch_size=enc.encode_batch_size,
            max_seq_length=enc.max_seq_length, backend=enc.encoder, cache_dir=cache) for c in corpus])
        fit = timed("kmeans_fit", lambda: fit_centroids(embeddings, cfg, root / "work" / "centroids.npy"))
        assigned = timed("assign", lambda: [assign_shard(Path(e), Path(fit["centroids"]), root / "work")
                                            for e in embeddings])
        groups = timed("dedup", lambda: [dedup_group([files[j] for files in assigned], cfg, root / "work", j)
                                         for j in range(groups_of(fit["clusters"]))])
        kept = timed("apply", lambda: [apply_drops(c, [g["drops"] for g in groups], root / "work") for c in corpus])
    total = sum(seconds.values())
    report = {
        "docs": args.docs, "shards": len(corpus), "encoder": enc.encoder, "threads": threads,
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "clusters": fit["clusters"],
        "sample": fit["sample"], "epsilon": cfg.epsilon, "dropped": sum(k["dropped"] for k in kept),
        "planted_copies": int((chunk.kind != "base").sum()), "onnx_export_seconds": round(export, 1),
        "seconds": {k: round(v, 2) for k, v in seconds.items()}, "seconds_total": round(total, 1),
        "seconds_per_100k_docs": {k: round(v * PER / args.docs) for k, v in {**seconds, "total": total}.items()},
        "extrapolation": "linear in documents",
    }
    emit_report(report, args.json)


if __name__ == "__main__":
    main()
