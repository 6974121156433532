"""A dataset that grows night by night: a big first night, then small nights full of copies.

    python -m bench.dataset_nights --base 1000000 --nights 30 --delta 10000 [--copies 0.2]
                                   [--work DIR] [--workers 2] [--json PATH]

Night 0 curates a titleless corpus of ``--base`` rows (``tests.fixtures.corpora.nightly_corpus``:
real BBC sentences, planted duplicates, low-quality documents and rejects) from a folder that
keeps its files. Each delta night then drops one file of ``--delta`` rows into the same folder:
``1 - copies`` of them fresh documents (a nightly chunk of another seed: its own low-quality rows
and rejects, no planted copies), the rest copies of documents earlier nights curated, half exact
(case and whitespace changed), half near (each word edited with probability 0.25% or 0.5%, as the
base corpus plants them), each drawn from ``curated`` by the bench. Every night is the real CLI
(``refinery run --stages ingest,dedup,quality``, its publish included) in a subprocess, its memory
sampled as in bench.nightly.

Per night: curation seconds (ingest + dedup + quality + publish from ``stage_runs``) and their
ratio to night 0's, peak RSS of the flow process and of the largest worker, the planted copies
dropped (and filed under the document they copy), and how long ``SELECT count(*) FROM curated``
takes in a fresh process. JSON to stdout (and ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.nightly import run_cli, write_config
from bench.output import emit_report
from tests.fixtures.corpora import (NIGHTLY_NEAR_EDIT_RATES, _pools, edit_words, nightly_chunk, nightly_corpus,
                                    perturb_case_and_space)

CURATION = ("ingest", "dedup", "quality", "publish")
DATASET = "bench"
COUNT_SQL = "SELECT count(*) FROM curated"


def _night_file(folder: Path, night: int, delta: int, copies: float, catalog: Path, seed: int) -> dict[str, Any]:
    """Write night ``night``'s file: fresh documents plus copies of curated ones; what was planted."""
    from refinery.storage import Catalog

    n_copies = int(round(delta * copies))
    n_fresh = delta - n_copies
    chunk = nightly_chunk(0, n_fresh, seed=seed + night, chunk_docs=n_fresh, exact_fraction=0.0, near_fraction=0.0)
    lines = []
    for line, record_id in zip(chunk.lines, chunk.record_ids):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a planted invalid-JSON reject: rename its id in the text
            lines.append(line.replace(record_id, f"n{night}-{record_id}"))
            continue
        row["id"] = f"n{night}-{row.get('id', record_id)}"
        lines.append(json.dumps(row, ensure_ascii=False))
    originals = Catalog(catalog).query(
        f"SELECT doc_id, text FROM curated WHERE dataset = ? USING SAMPLE reservoir({n_copies} ROWS) REPEATABLE ({night})",
        [DATASET]).to_pylist()
    rng = np.random.default_rng([seed, night, 0xC0])
    vocabulary = _pools()[3]
    planted = {}
    for i, original in enumerate(originals):
        if i % 2 == 0:
            record_id, text = f"n{night}-exact-{i}", perturb_case_and_space(original["text"], rng)
        else:
            rate = float(NIGHTLY_NEAR_EDIT_RATES[int(rng.integers(len(NIGHTLY_NEAR_EDIT_RATES)))])
            record_id, text = f"n{night}-near-{i}", edit_words(original["text"], rate, rng, vocabulary)
        planted[record_id] = original["doc_id"]
        lines.append(json.dumps({"id": record_id, "text": text}, ensure_ascii=False))
    path = folder / f"night-{night:03d}.jsonl"
    tmp = path.with_name("." + path.name)
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return {"fresh": n_fresh, "planted": planted}


def _copies_found(catalog: Path, run_id: str, planted: dict[str, str]) -> dict[str, Any]:
    """Of the planted copies: how many the night dropped, and how many it filed under their original."""
    from refinery.storage import Catalog

    rows = Catalog(catalog).query(
        "SELECT d.record_id, x.reason, c.cluster_id FROM documents d"
        " LEFT JOIN drops x ON x.run_id = d.run_id AND x.doc_id = d.doc_id"
        " LEFT JOIN dedup_clusters c ON c.run_id = d.run_id AND c.doc_id = d.doc_id"
        " WHERE d.run_id = ? AND (d.record_id LIKE '%-exact-%' OR d.record_id LIKE '%-near-%')", [run_id]).to_pylist()
    out: dict[str, Any] = {}
    for kind in ("exact", "near"):
        mine = [r for r in rows if f"-{kind}-" in r["record_id"] and r["record_id"] in planted]
        out[kind] = {
            "planted": sum(1 for k in planted if f"-{kind}-" in k),
            "dropped_as_duplicate": sum(1 for r in mine if (r["reason"] or "").startswith("dedup_")),
            "filed_under_original": sum(1 for r in mine if r["cluster_id"] == planted[r["record_id"]]),
        }
    return out


def _count_seconds(catalog: Path) -> tuple[int, float]:
    """``SELECT count(*) FROM curated`` in a fresh process (connect, plan, answer): rows, seconds."""
    code = ("import sys, time; from refinery.storage import Catalog; t = time.perf_counter(); "
            f"n = Catalog(sys.argv[1]).query({COUNT_SQL!r}).column(0)[0].as_py(); "
            "print(n, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(catalog)], capture_output=True, text=True, check=True)
    n, seconds = out.stdout.split()
    return int(n), round(float(seconds), 3)


def _night(config: Path, home: Path, log: Path) -> dict[str, Any]:
    from bench.nightly import run_figures, _known_runs

    catalog = home / "catalog.duckdb"
    before = _known_runs(catalog)
    rc, wall, peaks = run_cli(config, home=home, stages=None, log=log)
    (run_id,) = sorted(_known_runs(catalog) - before)
    figures = run_figures(catalog, run_id)
    if rc != 0 or figures["status"] != "completed":
        raise SystemExit(f"night failed (exit {rc}): see {log}")
    seconds = {s: figures["stage_seconds"].get(s, 0.0) for s in CURATION}
    count, count_s = _count_seconds(catalog)
    return {"run_id": run_id, "wall_seconds": round(wall, 2), "curation_seconds": round(sum(seconds.values()), 2),
            "stage_seconds": seconds, "books": figures["books"], "drops": figures["drops"],
            "publish": figures["stage_stats"].get("publish", {}),
            "peak_rss_mb": {"flow": peaks.as_dict()["flow"], "worker_max": peaks.as_dict()["worker_max"]},
            "curated_count": count, "count_seconds": count_s}


def _first_night(args: argparse.Namespace, work: Path, home: Path, config: Path, drop: Path
                 ) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """A fresh data home and drop folder, the base corpus linked in, and night 0 curated."""
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(drop, ignore_errors=True)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    corpus = work / f"base-{args.base}-seed{args.seed}"
    manifest = nightly_corpus(corpus, args.base, seed=args.seed)
    drop.mkdir()
    for f in sorted((corpus / "docs").iterdir()):
        os.link(f, drop / f"base-{f.name}")
    data = write_config(config, corpus_docs=drop, home=home, workers=args.workers)
    data |= {"dataset": DATASET, "stages": ["ingest", "dedup", "quality"]}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    nights = [_night(config, home, work / "logs" / "night-000.log") | {"night": 0, "docs": args.base}]
    return nights, nights[0]["curation_seconds"], manifest


def _resumed(home: Path, log: Path, base: int) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """The nights an earlier invocation published: night 0 from the catalog, the delta nights from
    its per-night lines; a night file it wrote but never published is written again."""
    from refinery.storage import Catalog

    catalog = Catalog(home / "catalog.duckdb")
    versions = catalog.query("SELECT version FROM dataset_versions WHERE dataset = ? ORDER BY seq",
                             [DATASET]).column("version").to_pylist()
    seconds = catalog.query("SELECT stage, seconds FROM stage_runs WHERE run_id = ?", [versions[0]]).to_pylist()
    full = round(sum(r["seconds"] for r in seconds if r["stage"] in CURATION), 2)
    earlier = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"night"')]
    nights = [{"night": 0, "docs": base, "run_id": versions[0], "curation_seconds": full,
               "stage_seconds": {r["stage"]: round(r["seconds"], 2) for r in seconds if r["stage"] in CURATION}}]
    nights += [n | {"run_id": v, "docs": None} for n, v in zip(earlier, versions[1:])]
    for stale in sorted((home.parent / "drop").glob("night-*.jsonl")):
        if int(stale.stem.split("-")[1]) >= len(nights):
            stale.unlink()
    return nights, full, {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=int, default=100_000, help="rows of night 0's corpus")
    ap.add_argument("--nights", type=int, default=5, help="delta nights after night 0")
    ap.add_argument("--delta", type=int, default=10_000, help="rows a delta night brings")
    ap.add_argument("--copies", type=float, default=0.2, help="share of a delta night's rows that copy curated ones")
    ap.add_argument("--work", type=Path, default=Path("/tmp/refinery-bench-dataset"))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--resume", type=Path, default=None, metavar="LOG",
                    help="go on in --work's data home from the first night not published, taking the earlier "
                         "nights' figures from the per-night lines an earlier invocation wrote to stderr (LOG)")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    home, config, drop = work / "home", work / "dataset.yaml", work / "drop"
    command = "python -m bench.dataset_nights " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.resume:
        nights, full, manifest = _resumed(home, args.resume, args.base)
    else:
        nights, full, manifest = _first_night(args, work, home, config, drop)
    for night in range(len(nights), args.nights + 1):
        wrote = _night_file(drop, night, args.delta, args.copies, home / "catalog.duckdb", args.seed)
        row = _night(config, home, work / "logs" / f"night-{night:03d}.log")
        row |= {"night": night, "docs": args.delta, "share_of_full_curation": round(row["curation_seconds"] / full, 4),
                "copies": _copies_found(home / "catalog.duckdb", row["run_id"], wrote["planted"])}
        nights.append(row)
        print(json.dumps({k: row[k] for k in ("night", "curation_seconds", "share_of_full_curation", "copies",
                                              "peak_rss_mb", "count_seconds")}), file=sys.stderr, flush=True)
    deltas = nights[1:]
    summary: dict[str, Any] = {"command": command, "base": args.base, "delta": args.delta, "copies": args.copies,
                               "full_curation_seconds": full, "corpus_build_seconds": manifest.get("build_seconds")}
    if deltas:
        exact = [n["copies"]["exact"] for n in deltas]
        near = [n["copies"]["near"] for n in deltas]
        summary |= {
            "delta_share_of_full_max": max(n["share_of_full_curation"] for n in deltas),
            "exact_copies_dropped": f"{sum(e['dropped_as_duplicate'] for e in exact)} / {sum(e['planted'] for e in exact)}",
            "near_copies_dropped": f"{sum(e['dropped_as_duplicate'] for e in near)} / {sum(e['planted'] for e in near)}",
            "filed_under_original": sum(e["filed_under_original"] for e in exact + near),
            "flow_peak_mb_max": max(n["peak_rss_mb"]["flow"] for n in deltas),
            "worker_peak_mb_max": max(n["peak_rss_mb"]["worker_max"] for n in deltas),
            "count_seconds_max": max(n["count_seconds"] for n in nights if "count_seconds" in n),
        }
        if len(deltas) >= 2:
            summary["last_over_second_night"] = round(deltas[-1]["curation_seconds"] / deltas[1]["curation_seconds"], 3)
    emit_report({"summary": summary, "nights": nights}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
