"""Benchmark the ingest stage: docs/s of the real ingest flow on Dask workers, on a JSONL folder.

    python -m bench.ingest --docs 150000 --files 1 --json bench/out/ingest-150k.json [--split-bytes N]

One run:
1. writes a JSONL folder of --docs records ``{"id", "text"}`` in --files files under a temporary
   folder (deleted afterwards unless --keep). The texts are tests/fixtures/corpora.py's synthetic
   corpus: real BBC News headlines and sentences in BBC-like articles (~2.2 KB), with its near and
   exact copies;
2. times the reader in this process (``ingest_unit_to_shards`` on the first file's first
   --sample-docs records, in CPU seconds, so other load on the machine does not count);
3. runs the real ingest flow (Prefect, a 2-worker Dask LocalCluster as ``refinery run`` starts it,
   shards written and registered in a DuckDB catalog) and reports the stage's wall seconds
   (``stage_runs.seconds``, cluster start-up excluded), docs/s, the workers' CPU seconds during it
   (docs per worker CPU second is what the machine's other load does not change), the number of
   ingest units and the peak RSS of this process and of each worker.

``--split-bytes`` sets ``ingest.split_bytes`` (0 turns splitting off); left out, the default applies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures import corpora
from bench.output import emit_report

DEFAULT_DOCS = 150_000
DEFAULT_SAMPLE_DOCS = 20_000


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: ru_maxrss carries a parent's peak across fork)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def write_folder(folder: Path, n_docs: int, n_files: int, seed: int) -> int:
    """Write the corpus as ``part-NNN.jsonl`` files of near-equal record counts; returns bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-n_docs // n_files)
    handles = [open(folder / f"part-{k:03d}.jsonl", "w", encoding="utf-8") for k in range(n_files)]
    row = 0
    try:
        for chunk in corpora.synthetic_corpus(n_docs, seed=seed):
            for doc_id, text in zip(chunk.doc_ids, chunk.texts):
                handles[row // per_file].write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                row += 1
    finally:
        for fh in handles:
            fh.close()
    return sum(p.stat().st_size for p in folder.iterdir())


def reader_rate(path: Path, sample_docs: int, out: Path) -> dict[str, float]:
    """Docs per CPU second of reading, normalizing and writing shards, in this process."""
    from refinery.tasks.ingest.config import IngestConfig, SourceConfig
    from refinery.tasks.ingest.readers import plan_units
    from refinery.tasks.ingest.shard_tasks import ingest_unit_to_shards

    cfg = IngestConfig(sources=[SourceConfig(path=str(path))], limit=sample_docs)
    unit = plan_units(cfg)[0]
    started = time.process_time()
    stats = ingest_unit_to_shards(unit, out, cfg)
    cpu = time.process_time() - started
    return {"reader_docs": stats["docs"], "reader_cpu_seconds": cpu, "reader_docs_per_cpu_s": stats["docs"] / cpu}


def run_ingest_flow(config_path: Path) -> dict[str, Any]:
    """The ingest stage as the nightly flow runs it: inside a parent flow, on a LocalCluster."""
    from distributed import Client
    from prefect import flow
    from prefect_dask import DaskTaskRunner

    from refinery.flows.ingest import ingest_flow
    from refinery.flows.nightly import prepare_run
    from refinery.flows.runtime import dask_cluster
    from refinery.tasks.config import load_config

    @flow(name="bench-ingest")
    def bench_ingest() -> dict[str, Any]:
        run = prepare_run(load_config(str(config_path)))
        with dask_cluster(run.config.dask) as address:
            with Client(address) as client:
                client.run(lambda: __import__("refinery.tasks.ingest.shard_tasks") and None)
                cpu_before = client.run(time.process_time)
                started = time.perf_counter()
                stats = ingest_flow.with_options(task_runner=DaskTaskRunner(address=address))(run)
                wall = time.perf_counter() - started
                cpu_after = client.run(time.process_time)
                worker_rss = sorted(client.run(_peak_rss_mb).values())
        worker_cpu = sum(cpu_after[w] - cpu_before[w] for w in cpu_after)
        seconds = run.catalog.query("SELECT seconds FROM stage_runs WHERE run_id = ? AND stage = 'ingest'",
                                    [run.run_id]).to_pylist()[0]["seconds"]
        return {"units": stats["units"], "documents": stats["docs"], "rejects": stats["rejects"],
                "shards": len(stats["shards"]), "stage_seconds": seconds, "flow_wall_seconds": wall,
                "worker_cpu_seconds": worker_cpu, "docs_per_worker_cpu_s": stats["docs"] / worker_cpu,
                "worker_peak_rss_mb": worker_rss}

    return bench_ingest()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS)
    parser.add_argument("--files", type=int, default=1, help="JSONL files the docs are spread over")
    parser.add_argument("--split-bytes", type=int, default=None, help="ingest.split_bytes (0: no splitting)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-docs", type=int, default=DEFAULT_SAMPLE_DOCS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the corpus (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the corpus and data home")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    root = Path(args.dir or tempfile.mkdtemp(prefix="refinery-bench-ingest-"))
    try:
        t = time.perf_counter()
        folder = root / "corpus"
        n_bytes = write_folder(folder, args.docs, args.files, args.seed)
        report: dict[str, Any] = {"load_avg_start": os.getloadavg(), "docs": args.docs, "files": args.files, "input_bytes": n_bytes,
                                  "bytes_per_doc": n_bytes / args.docs, "workers": args.workers,
                                  "split_bytes": args.split_bytes, "corpus_build_seconds": time.perf_counter() - t}
        report.update(reader_rate(sorted(folder.iterdir())[0], args.sample_docs, root / "reader-shards"))
        ingest: dict[str, Any] = {"sources": [{"path": str(folder), "name": "bench"}]}
        if args.split_bytes is not None:
            ingest["split_bytes"] = args.split_bytes
        config = {"home": str(root / "home"), "dask": {"n_workers": args.workers}, "ingest": ingest}
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        report.update(run_ingest_flow(root / "config.yaml"))
        report["docs_per_s"] = report["documents"] / report["stage_seconds"]
        report["flow_peak_rss_mb"] = _peak_rss_mb()
        report["load_avg_end"] = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    emit_report(report, args.json)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
