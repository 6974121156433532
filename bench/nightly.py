"""The nightly chain on a corpus of your size: time, memory and catalog bytes per stage.

    python -m bench.nightly --docs 20000 --stages ingest,dedup,quality [--work DIR] [--workers 2]
                            [--json PATH] [--keep-corpus] [--fresh-home | --from-run RUN_ID]
                            [--set evaluate.max_queries=200]

Builds (or reuses, when its manifest matches) a titleless JSONL corpus of ``--docs`` rows from
real BBC sentences with planted exact and near duplicates, low-quality documents and rejects
(``tests.fixtures.corpora.nightly_corpus``), writes a config for it, and runs the real CLI,
``refinery run --config ... [--stages ...]``, as a subprocess with its default LocalCluster. While
it runs, the resident memory of the flow process (the CLI process, where the nightly flow runs) and
of each of its descendants (Dask workers, Prefect's temporary server) is sampled every
SAMPLE_INTERVAL_S. Afterwards the catalog gives per-stage seconds (``stage_runs``), the books
(``runs``), drop counts by reason and by planted kind; the JSON object goes to stdout (and
``--json``). The exit status is non-zero when the run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.fixtures.corpora import nightly_corpus, overlap_corpus
from bench.output import emit_report

DEFAULT_WORK = Path("/tmp/refinery-bench-nightly")
DEFAULT_DOCS = 20_000
SAMPLE_INTERVAL_S = 0.2
MB = 1024 * 1024


# ----------------------------------------------------------------------------------- memory


@dataclass
class MemoryPeaks:
    """Peak RSS of the flow process and of its descendants, grouped by what they are."""

    flow: int = 0
    worker_max: int = 0  # the largest single Dask worker
    workers_total: int = 0  # all workers at one sample
    prefect_server: int = 0
    other_max: int = 0  # resource tracker, anything else the run started
    tree_total: int = 0  # flow process and every descendant at one sample
    worker_pids: set[int] = field(default_factory=set)
    other_commands: dict[str, int] = field(default_factory=dict)  # peak RSS by command line (cut)
    samples: int = 0
    # (unix time, flow RSS, largest worker RSS, all workers' RSS) per sample, to split peaks by stage
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)

    def by_window(self, start: float, end: float) -> dict[str, float]:
        """Peaks (MB) over the samples taken between two unix times."""
        inside = [t for t in self.timeline if start <= t[0] <= end]
        return {name: round(max((t[i] for t in inside), default=0) / MB, 1)
                for i, name in ((1, "flow"), (2, "worker_max"), (3, "workers_total"))}

    def as_dict(self) -> dict[str, Any]:
        return {"flow": round(self.flow / MB, 1), "worker_max": round(self.worker_max / MB, 1),
                "workers_total": round(self.workers_total / MB, 1),
                "prefect_server": round(self.prefect_server / MB, 1), "other_max": round(self.other_max / MB, 1),
                "process_tree_total": round(self.tree_total / MB, 1),
                "workers_seen": len(self.worker_pids), "samples": self.samples,
                "other_processes": {cmd: round(rss / MB, 1) for cmd, rss in self.other_commands.items()}}


OTHER_COMMAND_CHARS = 120


def _role(proc: psutil.Process, parent_cmd: str) -> tuple[str, str]:
    """What a descendant of the flow process is, from its command line; and the line, cut."""
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "other", "?"
    if cmd == parent_cmd:
        # a fork about to exec (subprocess.Popen): its pages are the flow's, shared, not its own
        role = "fork"
    elif "uvicorn" in cmd or "prefect.server" in cmd:
        role = "prefect_server"  # `refinery run` without PREFECT_API_URL starts a temporary server
    elif "spawn_main" in cmd and "resource_tracker" not in cmd:
        role = "worker"  # LocalCluster's nannies spawn their workers with multiprocessing
    else:
        role = "other"
    return role, cmd[:OTHER_COMMAND_CHARS]


class MemorySampler:
    """Samples a process tree's RSS on a thread until stopped."""

    def __init__(self, pid: int, *, interval: float = SAMPLE_INTERVAL_S):
        self.root = psutil.Process(pid)
        self._root_cmd = " ".join(self.root.cmdline())
        self.interval = interval
        self.peaks = MemoryPeaks()
        self._roles: dict[int, tuple[str, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        p = self.peaks
        try:
            flow = self.root.memory_info().rss
            children = self.root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return
        workers = tree = largest = 0
        for child in children:
            try:
                rss = child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            known = self._roles.get(child.pid)
            role, cmd = known or _role(child, self._root_cmd)
            if role == "fork":
                continue  # asked again next sample, once it has exec'd
            if known is None:
                self._roles[child.pid] = (role, cmd)
            tree += rss
            if role == "worker":
                workers += rss
                p.worker_pids.add(child.pid)
                largest = max(largest, rss)
            elif role == "prefect_server":
                p.prefect_server = max(p.prefect_server, rss)
            else:
                p.other_max = max(p.other_max, rss)
                p.other_commands[cmd] = max(p.other_commands.get(cmd, 0), rss)
        p.flow = max(p.flow, flow)
        p.worker_max = max(p.worker_max, largest)
        p.timeline.append((time.time(), flow, largest, workers))
        p.workers_total = max(p.workers_total, workers)
        p.tree_total = max(p.tree_total, flow + tree)
        p.samples += 1


# ----------------------------------------------------------------------------------- config


def _set_dotted(config: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b=value`` (value parsed as YAML) to the config dict."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"--set wants KEY=VALUE, got {assignment!r}")
    *parents, leaf = key.strip().split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(raw)


def write_config(path: Path, *, corpus_docs: Path, home: Path, workers: int | None,
                 overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The run's config (validated by Refinery's own loader): the corpus folder as the only source,
    read as titleless JSONL under the name the planted doc ids were computed with."""
    from tests.fixtures.corpora import NIGHTLY_SOURCE
    from refinery.tasks.config import ConfigError, parse_config

    config: dict[str, Any] = {
        "home": str(home),
        "ingest": {"sources": [{"path": str(corpus_docs), "format": "jsonl", "name": NIGHTLY_SOURCE,
                                "text_field": "text", "id_field": "id", "title_field": None, "label_field": None}]},
    }
    if workers is not None:
        config["dask"] = {"n_workers": workers}
    for assignment in overrides:
        _set_dotted(config, assignment)
    try:
        parse_config(config, "--set")  # a bad option fails here, before anything runs
    except ConfigError as exc:
        raise SystemExit(f"bench.nightly: {exc}") from None
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


# ----------------------------------------------------------------------------------- the run


def _refinery_command() -> list[str]:
    script = Path(sys.executable).parent / "refinery"
    if script.exists():
        return [str(script)]
    found = shutil.which("refinery")
    if found is None:
        raise SystemExit("no `refinery` command next to this Python or on PATH: install Refinery first")
    return [found]


def run_cli(config: Path, *, home: Path, stages: str | None, log: Path,
            from_run: str | None = None) -> tuple[int, float, MemoryPeaks]:
    """``refinery run`` in a subprocess, its output to ``log``; exit status, wall seconds, peaks."""
    command = [*_refinery_command(), "run", "--config", str(config)]
    if stages:
        command += ["--stages", stages]
    if from_run:
        command += ["--from-run", from_run]
    # REFINERY_HOME would override the config's home; PREFECT_API_URL (if set) passes through
    env = {**os.environ, "REFINERY_HOME": str(home), "REFINERY_NO_PROGRESS": "1"}
    with open(log, "w") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            with MemorySampler(proc.pid) as sampler:
                rc = proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait(30)
            raise
    return rc, time.perf_counter() - started, sampler.peaks


def _catalog_bytes(path: Path) -> int:
    """The catalog file and its write-ahead log, if one was left."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())


def _bytes_under(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _known_runs(catalog_path: Path) -> set[str]:
    from refinery.storage import Catalog

    if not catalog_path.exists():
        return set()
    return set(Catalog(catalog_path).query("SELECT run_id FROM runs").column("run_id").to_pylist())


# ----------------------------------------------------------------------------------- figures


def run_figures(catalog_path: Path, run_id: str) -> dict[str, Any]:
    """Status, books, per-stage seconds and drop counts of one run, from the catalog."""
    from refinery.storage import Catalog

    catalog = Catalog(catalog_path)
    run = catalog.query(
        "SELECT status, error, docs_in, docs_kept, docs_dropped, docs_rejected,"
        " epoch(finished_at - started_at) AS seconds FROM runs WHERE run_id = ?", [run_id]).to_pylist()[0]
    stages = catalog.query("SELECT stage, status, seconds, stats, epoch(started_at) AS started,"
                           " epoch(finished_at) AS finished FROM stage_runs WHERE run_id = ? ORDER BY started_at",
                           [run_id]).to_pylist()
    metrics = catalog.query("SELECT model, task, metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate'"
                            " ORDER BY task, model, metric", [run_id]).to_pylist()
    drops = catalog.query("SELECT stage, reason, count(*) AS n FROM drops WHERE run_id = ? GROUP BY ALL"
                          " ORDER BY stage, n DESC, reason", [run_id]).to_pylist()
    rejects = catalog.query("SELECT reason, count(*) AS n FROM rejects WHERE run_id = ? GROUP BY ALL"
                            " ORDER BY n DESC, reason", [run_id]).to_pylist()
    books = {k: run[k] for k in ("docs_in", "docs_kept", "docs_dropped", "docs_rejected")}
    if None not in books.values():
        books["balanced"] = books["docs_in"] == books["docs_kept"] + books["docs_dropped"] + books["docs_rejected"]
    by_stage: dict[str, dict[str, int]] = {}
    for row in drops:
        by_stage.setdefault(row["stage"], {})[row["reason"]] = row["n"]
    return {
        "status": run["status"], "error": run["error"], "run_seconds": run["seconds"], "books": books,
        # stages this run did; a stage reused from another run (--from-run) keeps that run's seconds
        # and times in the catalog, so they are reported apart and left out of this run's totals
        "stage_seconds": {s["stage"]: round(s["seconds"], 2) for s in stages
                          if s["seconds"] is not None and s["status"] != "reused"},
        "reused_stage_seconds": {s["stage"]: round(s["seconds"], 2) for s in stages
                                 if s["seconds"] is not None and s["status"] == "reused"},
        "stage_status": {s["stage"]: s["status"] for s in stages},
        "stage_stats": {s["stage"]: _scalars(s["stats"]) for s in stages},
        "stage_windows": {s["stage"]: (s["started"], s["finished"]) for s in stages
                          if s["finished"] is not None and s["status"] != "reused"},
        "drops": by_stage, "rejects": {r["reason"]: r["n"] for r in rejects},
        "evaluation": _nested(metrics),
    }


def _scalars(stats: str | dict | None) -> dict[str, Any]:
    """A stage's stats without its lists and paths (shard lists grow with the corpus)."""
    stats = json.loads(stats) if isinstance(stats, str) else (stats or {})
    return {k: v for k, v in stats.items() if isinstance(v, (int, float, bool)) or (isinstance(v, str) and "/" not in v)}


def _nested(metrics: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """evaluate's metrics as {task: {model: {metric: value}}}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m in metrics:
        out.setdefault(m["task"] or "", {}).setdefault(m["model"], {})[m["metric"]] = round(m["value"], 4)
    return out


def planted_vs_found(catalog_path: Path, run_id: str, planted_csv: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """What was planted against what the run found, joined on doc ids in SQL (no corpus in memory).

    A planted copy is found when it and its original end in one dedup cluster (whichever of them
    survives); a drop elsewhere is a duplicate nobody planted (e.g. two crafted foreign-language
    documents drawn from the same few sentences).
    """
    from refinery.storage import Catalog

    catalog = Catalog(catalog_path)
    planted = "(SELECT * FROM read_csv(?, header = true, all_varchar = true))"
    copies = catalog.query(
        f"""
        WITH p AS {planted}, c AS (SELECT doc_id, cluster_id FROM dedup_clusters WHERE run_id = ?)
        SELECT p.kind, count(*) AS planted, count(*) FILTER (c1.cluster_id = c2.cluster_id) AS found
        FROM p LEFT JOIN c c1 ON c1.doc_id = p.doc_id LEFT JOIN c c2 ON c2.doc_id = p.source_doc_id
        WHERE p.kind IN ('exact', 'near') GROUP BY p.kind ORDER BY p.kind
        """, [str(planted_csv), run_id]).to_pylist()
    dropped = catalog.query(
        f"""
        WITH p AS {planted},
             originals AS (SELECT DISTINCT source_doc_id AS doc_id FROM p WHERE source_doc_id <> '')
        SELECT d.stage,
               CASE WHEN p.kind IS NOT NULL THEN p.kind
                    WHEN o.doc_id IS NOT NULL THEN 'original_of_copy' ELSE 'base' END AS kind,
               count(*) AS n
        FROM drops d LEFT JOIN p ON p.doc_id = d.doc_id LEFT JOIN originals o ON o.doc_id = d.doc_id
        WHERE d.run_id = ? GROUP BY ALL ORDER BY d.stage, kind
        """, [str(planted_csv), run_id]).to_pylist()
    low = catalog.query(
        f"""
        WITH p AS {planted}
        SELECT p.variant, count(*) AS planted,
               count(*) FILTER (d.stage = 'quality') AS quality_dropped,
               count(*) FILTER (d.stage = 'dedup') AS dedup_dropped
        FROM p LEFT JOIN (SELECT * FROM drops WHERE run_id = ?) d ON d.doc_id = p.doc_id
        WHERE p.kind = 'low_quality' GROUP BY ALL ORDER BY p.variant
        """, [str(planted_csv), run_id]).to_pylist()
    drops_by_kind: dict[str, dict[str, int]] = {}
    for row in dropped:
        drops_by_kind.setdefault(row["stage"], {})[row["kind"]] = row["n"]
    count = manifest["planted"]
    dedup = drops_by_kind.get("dedup", {})
    quality = drops_by_kind.get("quality", {})
    return {
        "planted": count,
        # each planted copy adds one document to a cluster, so a perfect dedup drops one per copy
        "dedup": {"planted_copies": count["exact"] + count["near"], "dropped": sum(dedup.values()),
                  "copies_found": {r["kind"]: {"planted": r["planted"], "found": r["found"]} for r in copies},
                  "dropped_by_kind": dedup},
        "quality": {"planted_low_quality": count["low_quality"], "dropped": sum(quality.values()),
                    "low_quality_dropped": quality.get("low_quality", 0),
                    "low_quality_dropped_by_dedup": dedup.get("low_quality", 0),
                    "dropped_by_kind": quality,
                    "low_quality_by_variant": {r["variant"]: {k: r[k] for k in ("planted", "quality_dropped",
                                                                                   "dedup_dropped")} for r in low}},
        "rejects": {"planted": count["reject"]},
    }


def survivor_similarity(catalog_path: Path, run_id: str, sample: int, seed: int) -> dict[str, Any]:
    """How alike dedup_near drops are to the survivor each is filed under: the true Jaccard of their
    word 5-gram sets (as dedup shingles them) on a random sample, next to the estimates the run stored."""
    from refinery.storage import Catalog
    from refinery.tasks.dedup import DedupConfig, shingle_sets

    catalog = Catalog(catalog_path)
    rows = catalog.query("""
        WITH near AS (SELECT c.doc_id, c.cluster_id, c.jaccard FROM dedup_clusters c
                      JOIN drops d ON d.run_id = c.run_id AND d.doc_id = c.doc_id AND d.reason = 'dedup_near'
                      WHERE c.run_id = $1 ORDER BY hash(c.doc_id, $3) LIMIT $2)
        SELECT n.doc_id, n.jaccard, m.text, s.text AS survivor_text FROM near n
        JOIN documents m ON m.run_id = $1 AND m.doc_id = n.doc_id
        JOIN documents s ON s.run_id = $1 AND s.doc_id = n.cluster_id""", [run_id, sample, seed]).to_pylist()
    clusters = catalog.query("""SELECT count(*) AS n FROM dedup_clusters WHERE run_id = ? GROUP BY cluster_id
                                ORDER BY n DESC LIMIT 1""", [run_id]).to_pylist()
    if not rows:
        return {"sample": 0, "largest_cluster": clusters[0]["n"] if clusters else 0}
    cfg = DedupConfig()
    a, b = shingle_sets([r["text"] for r in rows], cfg), shingle_sets([r["survivor_text"] for r in rows], cfg)
    true = sorted(len(x & y) / len(x | y) if x | y else 1.0 for x, y in zip(a, b))
    estimated = sorted(r["jaccard"] for r in rows if r["jaccard"] is not None)

    def q(values: list[float], p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 4) if values else float("nan")

    return {"sample": len(rows), "largest_cluster": clusters[0]["n"],
            "true_jaccard_p10": q(true, 0.1), "true_jaccard_median": q(true, 0.5),
            "true_below_half": round(sum(v < 0.5 for v in true) / len(true), 4),
            "true_at_threshold": round(sum(v >= cfg.threshold for v in true) / len(true), 4),
            "estimated_min": estimated[0] if estimated else None, "estimated_p10": q(estimated, 0.1)}


# ----------------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.nightly", description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=DEFAULT_DOCS, help="rows of the corpus (documents + planted rejects)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="folder for the corpus, data home, config, logs")
    ap.add_argument("--stages", default=None, help="passed to `refinery run --stages` (default: the whole chain)")
    ap.add_argument("--workers", type=int, default=None, help="dask.n_workers of the run's LocalCluster")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a config option for the run (dotted key, YAML value), e.g. evaluate.max_queries=200")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed")
    ap.add_argument("--corpus", choices=["nightly", "overlap"], default="nightly",
                    help="nightly: BBC-sentence bodies with planted copies, low quality and rejects; overlap: "
                         "overlapping runs of 4-12 real sentences (text that chains), with a sampled measure of "
                         "how alike near drops are to their survivors")
    ap.add_argument("--survivor-sample", type=int, default=400, help="near drops sampled for --corpus overlap")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON object here")
    ap.add_argument("--keep-corpus", action="store_true", help="keep the corpus for the next run (default: delete it)")
    ap.add_argument("--fresh-home", action="store_true", help="delete the work folder's data home before the run")
    ap.add_argument("--from-run", default=None, metavar="RUN_ID",
                    help="start from that run's finished curation (`refinery run --from-run`): times the model "
                         "half on a corpus curated before; the reused stages' seconds (the source run's) are "
                         "reported apart, as reused_stage_seconds")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = args.work.resolve()
    prefix = "corpus" if args.corpus == "nightly" else "overlap"
    home, corpus = work / "home", work / f"{prefix}-{args.docs}-seed{args.seed}"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    if args.fresh_home and args.from_run:
        raise SystemExit("--fresh-home deletes the run that --from-run would start from")
    if args.fresh_home:
        shutil.rmtree(home, ignore_errors=True)
    config_path = work / f"nightly-{args.docs}.yaml"
    write_config(config_path, corpus_docs=corpus / "docs", home=home, workers=args.workers, overrides=args.overrides)
    build = nightly_corpus if args.corpus == "nightly" else overlap_corpus
    manifest = build(corpus, args.docs, seed=args.seed)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    catalog_path = home / "catalog.duckdb"
    before_runs, catalog_before = _known_runs(catalog_path), _catalog_bytes(catalog_path)
    log = work / "logs" / f"run-{args.docs}-{stamp}.log"
    load_before = os.getloadavg()
    rc, wall, peaks = run_cli(config_path, home=home, stages=args.stages, log=log, from_run=args.from_run)
    load_after = os.getloadavg()
    catalog_after = _catalog_bytes(catalog_path)
    new_runs = sorted(_known_runs(catalog_path) - before_runs)
    result: dict[str, Any] = {
        "docs": args.docs,
        "command": "python -m bench.nightly " + " ".join(argv if argv is not None else sys.argv[1:]),
        "stages_requested": args.stages.split(",") if args.stages else "all",
        "exit_status": rc, "wall_seconds": round(wall, 2), "log": str(log),
        "peak_rss_mb": peaks.as_dict(),
    }
    if len(new_runs) == 1:
        run_id = new_runs[0]
        figures = run_figures(catalog_path, run_id)
        windows = figures.pop("stage_windows")
        result.update(run_id=run_id, **figures)
        result["peak_rss_mb_by_stage"] = {stage: peaks.by_window(*w) for stage, w in windows.items()}
        result["stage_seconds_total"] = round(sum(figures["stage_seconds"].values()), 2)
        # CLI start, Prefect server and Dask cluster start-up, books and report
        result["outside_stages_seconds"] = round(wall - result["stage_seconds_total"], 2)
        if "dedup" in figures["stage_seconds"]:
            result["planted_vs_found"] = planted_vs_found(catalog_path, run_id, corpus / "planted.csv", manifest)
            if args.corpus == "overlap":
                result["near_drop_vs_survivor"] = survivor_similarity(catalog_path, run_id, args.survivor_sample,
                                                                      args.seed)
        run_dir = home / "runs" / run_id
        result["catalog"] = {
            "bytes_before": catalog_before, "bytes_after": catalog_after, "bytes_per_run": catalog_after - catalog_before,
            "input_text_bytes": manifest["text_bytes"],
            "per_run_share_of_input_text": round((catalog_after - catalog_before) / manifest["text_bytes"], 4),
            "run_dir_bytes": _bytes_under(run_dir),
            "run_dir_bytes_by_stage": {p.name: _bytes_under(p) for p in sorted(run_dir.iterdir()) if p.is_dir()},
        }
        # what the data home holds after the run: the published datasets and their dedup index
        # (MinHash keys and LSH bands of every document kept), for bench.cost_model's storage figures
        datasets = home / "datasets"
        result["home_bytes"] = {"total": _bytes_under(home), "datasets": _bytes_under(datasets),
                                "dataset_index": sum(_bytes_under(d / "index") for d in datasets.glob("dataset=*"))}
    else:
        result.update(status="failed before a run was recorded", run_id=None)
    result["corpus"] = {"path": str(corpus), "reused": manifest["reused"], "build_seconds": manifest["build_seconds"],
                        "documents": manifest["documents"], "bytes": manifest["bytes"],
                        "avg_text_bytes": round(manifest["avg_text_bytes"], 1),
                        "files": [{k: f[k] for k in ("name", "docs", "bytes")} for f in manifest["files"]]}
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_start": [round(x, 2) for x in load_before],
                         "load_avg_end": [round(x, 2) for x in load_after], "python": platform.python_version(),
                         "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1)}
    if not args.keep_corpus:
        shutil.rmtree(corpus, ignore_errors=True)
    emit_report(result, args.json)
    failed = rc != 0 or result.get("status") != "completed"
    if failed:
        sys.stderr.write(f"the run failed (exit status {rc}, status {result.get('status')}); log: {log}\n"
                         + "".join(log.read_text().splitlines(keepends=True)[-30:]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
