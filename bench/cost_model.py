"""What curation costs at 10M and 100M documents on N workers, from runs measured here.

    python -m bench.cost_model FIT.json [CHECK.json ...] [--docs 10000000,100000000] [--workers 2,8,32]
                               [--json PATH]

Each file is a ``bench.nightly`` JSON of a curation run (``--stages ingest,dedup,quality``) with
``--workers N``. The model is fitted on FIT alone:

- **time**: each stage's rate in documents per second per worker (``docs_in / seconds / workers``);
  a stage on D documents and N workers takes ``D / (rate x N)``, plus the run's fixed cost outside
  the stages (CLI, Prefect and cluster start, books, report) as measured;
- **memory per worker**: the largest worker's peak RSS. Shard tasks hold one shard, but dedup's
  global step (exact keys, LSH bands, clusters of every document, on one worker) grows with D, so
  the peak is a line ``a + b x D`` through the smallest and the largest run given (FIT and the
  largest CHECK: fitted on two sizes, not checked);
- **bytes**: the run folder, the published dataset and its dedup index (MinHash keys, LSH bands)
  per input document, times D.

Every CHECK run is then predicted from FIT and the prediction printed beside what was measured:
that ratio is the model's error (on more documents, on more workers). The model half (synthesize,
train, evaluate) is not in it: a night's budget (``budget.minutes``) sizes it, whatever the corpus.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.output import emit_report

STAGES = ("ingest", "dedup", "quality", "publish")
GB = 1024**3


def _workers(run: dict[str, Any]) -> int:
    """The run's Dask workers: from its command line (``--workers N``), else Refinery's default 2."""
    words = run["command"].split()
    return int(words[words.index("--workers") + 1]) if "--workers" in words else 2


def fit(run: dict[str, Any]) -> dict[str, Any]:
    """Per-stage rates (documents / s / worker), fixed seconds, worker memory and bytes per document."""
    docs, workers = run["books"]["docs_in"], _workers(run)
    seconds = run["stage_seconds"]
    home = run.get("home_bytes", {})
    return {
        "from": run["command"], "docs": docs, "workers": workers,
        "docs_per_s_per_worker": {s: docs / seconds[s] / workers for s in STAGES if seconds.get(s)},
        "fixed_seconds": run["outside_stages_seconds"],
        "worker_peak_mb": run["peak_rss_mb"]["worker_max"],
        "flow_peak_mb": run["peak_rss_mb"]["flow"],
        "bytes_per_doc": {"run_folder": run["catalog"]["run_dir_bytes"] / docs,
                          "catalog": max(run["catalog"]["bytes_per_run"], 0) / docs,
                          "dataset": home.get("datasets", 0) / docs,
                          "dataset_index": home.get("dataset_index", 0) / docs},
    }


def memory_line(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Worker peak MB as base + per_doc x documents, through the smallest and the largest run."""
    points = sorted((r["books"]["docs_in"], r["peak_rss_mb"]["worker_max"]) for r in runs)
    (d0, m0), (d1, m1) = points[0], points[-1]
    per_doc = (m1 - m0) / (d1 - d0) if d1 > d0 else 0.0
    return {"base_mb": m0 - per_doc * d0, "per_doc_mb": per_doc, "from_docs": [d0, d1]}


def predict(model: dict[str, Any], docs: int, workers: int) -> dict[str, Any]:
    stage_seconds = {s: docs / (rate * workers) for s, rate in model["docs_per_s_per_worker"].items()}
    memory = model.get("worker_memory")
    return {"docs": docs, "workers": workers, "stage_seconds": stage_seconds,
            "curation_seconds": sum(stage_seconds.values()) + model["fixed_seconds"],
            "worker_peak_mb": memory["base_mb"] + memory["per_doc_mb"] * docs if memory else model["worker_peak_mb"],
            "bytes": {k: v * docs for k, v in model["bytes_per_doc"].items()}}


def check(model: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The model's prediction for a measured run beside the measurement (ratio = predicted / measured)."""
    measured = fit(run)
    guess = predict(model, measured["docs"], measured["workers"])
    rows = {}
    for stage in guess["stage_seconds"]:
        got = run["stage_seconds"].get(stage)
        if got:
            rows[stage] = {"predicted_s": round(guess["stage_seconds"][stage], 1), "measured_s": got,
                           "ratio": round(guess["stage_seconds"][stage] / got, 3)}
    total = sum(run["stage_seconds"].get(s, 0) for s in rows) + run["outside_stages_seconds"]
    rows["curation"] = {"predicted_s": round(guess["curation_seconds"], 1), "measured_s": round(total, 1),
                        "ratio": round(guess["curation_seconds"] / total, 3)}
    rows["worker_peak_mb"] = {"predicted": guess["worker_peak_mb"], "measured": measured["worker_peak_mb"],
                              "ratio": round(guess["worker_peak_mb"] / measured["worker_peak_mb"], 3)}
    return {"run": run["command"], "docs": measured["docs"], "workers": measured["workers"], "rows": rows}


def _table(projections: list[dict[str, Any]]) -> str:
    head = "| documents | workers | " + " | ".join(f"{s} h" for s in STAGES) + \
        " | curation h | memory per worker GB | run folder GB | dataset GB | dedup index GB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in projections:
        stages = " | ".join(f"{p['stage_seconds'].get(s, 0) / 3600:.2f}" for s in STAGES)
        b = p["bytes"]
        lines.append(f"| {p['docs']:,} | {p['workers']} | {stages} | {p['curation_seconds'] / 3600:.2f} | "
                     f"{p['worker_peak_mb'] / 1024:.1f} | {b['run_folder'] / GB:.1f} | {b['dataset'] / GB:.1f} | "
                     f"{b['dataset_index'] / GB:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fit", type=Path, help="bench.nightly JSON the model is fitted on")
    ap.add_argument("check", type=Path, nargs="*", help="bench.nightly JSONs the model predicts, to compare")
    ap.add_argument("--docs", default="10000000,100000000", help="corpus sizes to project (comma-separated)")
    ap.add_argument("--workers", default="2,8,32", help="worker counts to project (comma-separated)")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON object here")
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in (args.fit, *args.check)]
    for path, run in zip((args.fit, *args.check), runs):
        if run.get("status") != "completed":
            raise SystemExit(f"bench.cost_model: {path} is not a completed run ({run.get('status')})")
    model = fit(runs[0])
    model["worker_memory"] = memory_line(runs)
    projections = [predict(model, int(d), int(w)) for d in args.docs.split(",") for w in args.workers.split(",")]
    report = {"model": model, "checks": [check(model, run) for run in runs[1:]], "projections": projections,
              "projection_table": _table(projections)}
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
