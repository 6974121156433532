"""The ablations' results: a variant's figures, the rows that compare the variants of a comparison
(paired intervals), their ``metrics`` rows and ``ablation.md``.

The ablate flow (``refinery.flows.ablate``) runs the variants; these functions read what the
variants' runs wrote and turn it into rows, catalog rows and Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from refinery.tasks.runs import RunSpec
from refinery.storage import Catalog, StageMarker, read_shard
from refinery.storage.shards import write_text_atomic
from refinery.tasks.evaluate.bootstrap import INTERVAL_METRIC, TUNED, paired_bootstrap
from refinery.tasks.evaluate.query_sets import describe
from refinery.tasks.report.render import markdown_table

CURATION = "curation"
GENERATORS = "generators"
HARD_NEGATIVES = "hard_negatives"
COMPARISONS = (CURATION, GENERATORS, HARD_NEGATIVES)
# The `metrics` stage of the ablation rows (stored with the reference run; model: the variant).
ABLATE = "ablate"
MIX = "mix"
# The variant each other variant of a comparison is measured against (paired bootstrap).
BASELINES = {CURATION: "curated", GENERATORS: "inverse_cloze_only", HARD_NEGATIVES: "no_hard_negatives"}
TITLES = {CURATION: "Curation: curated vs uncurated corpus",
          GENERATORS: "Generators: each alone vs the mix",
          HARD_NEGATIVES: "Hard negatives: pairs vs triplets with a mined negative"}
# `metrics` rows of each variant's training budget (task 'train').
TRAIN_TASK = "train"
# The models whose nDCG@10 figures a variant's results hold.
MODELS = ("base", "bm25", "tuned")
METRIC_COLUMNS = ("pairs", "train_pairs", "steps", "ndcg@10", "ndcg@10_delta", "ndcg@10_delta_ci_low",
                  "ndcg@10_delta_ci_high", "ndcg@10_vs_baseline", "ndcg@10_vs_baseline_ci_low",
                  "ndcg@10_vs_baseline_ci_high")


def variant_results(run: RunSpec) -> dict[str, Any]:
    """What a trained and evaluated variant's run gives the comparison: its training budget, the
    nDCG@10 figures (``metrics[task][model][metric]``) and tuned's per-query nDCG@10 per task."""
    train = StageMarker(run.stage_dir("train")).read()
    evaluation = StageMarker(run.stage_dir("evaluate")).read()
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for r in run.catalog.evaluation_metrics(run.run_id):
        if r["model"] in MODELS and r["metric"].startswith("ndcg@10"):
            metrics.setdefault(r["task"], {}).setdefault(r["model"], {})[r["metric"]] = r["value"]
    per_query = {}
    for task, path in (evaluation.get("per_query") or {}).items():
        table = read_shard(path).to_pylist()
        per_query[task] = ([r["query"] for r in table if r["model"] == TUNED],
                           np.array([r[INTERVAL_METRIC] for r in table if r["model"] == TUNED]))
    return {"run_id": run.run_id, "pairs": train["examples"], "train_pairs": train.get("train_pairs"),
            "steps": train.get("steps"), "with_negatives": train.get("with_negatives"), "metrics": metrics,
            "per_query": per_query}


def comparison_rows(comparison: str, variants: dict[str, dict[str, Any]], samples: int,
                    seed: int) -> list[dict[str, Any]]:
    """One row per (variant, task): tuned nDCG@10, its interval over base, and over the comparison's
    baseline (a paired bootstrap of ``samples`` resamples, when both scored the same queries)."""
    baseline = variants.get(BASELINES[comparison])
    rows = []
    for name, v in variants.items():
        for task, models in v["metrics"].items():
            tuned = models.get(TUNED, {})
            row = {"comparison": comparison, "variant": name, "run_id": v["run_id"], "task": task,
                   "pairs": v["pairs"], "train_pairs": v["train_pairs"], "steps": v["steps"],
                   "with_negatives": v["with_negatives"],
                   "base_ndcg@10": models.get("base", {}).get(INTERVAL_METRIC),
                   "bm25_ndcg@10": models.get("bm25", {}).get(INTERVAL_METRIC),
                   "ndcg@10": tuned.get(INTERVAL_METRIC)}
            for key in ("delta", "delta_ci_low", "delta_ci_high"):
                row[f"ndcg@10_{key}"] = tuned.get(f"{INTERVAL_METRIC}_{key}")
            if baseline is not None and name != BASELINES[comparison] and samples:
                mine, theirs = v["per_query"].get(task), baseline["per_query"].get(task)
                if mine and theirs and mine[0] == theirs[0]:  # the same queries in the same order
                    iv = paired_bootstrap(mine[1], theirs[1], samples=samples, seed=seed)
                    row |= {"ndcg@10_vs_baseline": iv.delta, "ndcg@10_vs_baseline_ci_low": iv.low,
                            "ndcg@10_vs_baseline_ci_high": iv.high}
            rows.append(row)
    return rows


def store_rows(catalog: Catalog, run_id: str, rows: list[dict[str, Any]]) -> None:
    """The ``metrics`` rows of each variant (stage 'ablate', model the variant) under run ``run_id``:
    its budget under task 'train', its figures under each evaluation task. A variant measured again
    replaces its rows."""
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        out = [(TRAIN_TASK, k, mine[0][k]) for k in ("pairs", "train_pairs", "steps", "with_negatives")
               if mine[0].get(k) is not None]
        out += [(r["task"], k, r[k]) for r in mine for k in METRIC_COLUMNS[3:] if r.get(k) is not None]
        catalog.replace("metrics", run_id, where={"stage": ABLATE, "model": variant},
                        rows=pa.table({"stage": [ABLATE] * len(out), "model": [variant] * len(out),
                                       "task": [t for t, _, _ in out], "metric": [m for _, m, _ in out],
                                       "value": [float(v) for _, _, v in out]}))


def merge_earlier(run_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """These rows and those of the reference run's earlier ablations of other comparisons
    (``ablation.json`` in ``run_dir``, rewritten with the merged rows)."""
    path = run_dir / "ablation.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    measured = {r["comparison"] for r in rows}
    merged = [r for r in earlier if r["comparison"] not in measured] + rows
    write_text_atomic(json.dumps(merged, indent=1), path)
    return merged


def _interval(row: dict[str, Any], key: str) -> str:
    if row.get(key) is None:
        return ""
    return "{:+.4f} [{:+.4f}, {:+.4f}]".format(row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"])


def ablation_markdown(run_id: str, rows: list[dict[str, Any]]) -> str:
    """``ablation.md`` of reference run ``run_id``: one table per comparison and task."""
    out = [f"# Ablations of run {run_id}\n",
           "Every variant is a run started from this run's curation, trained on the same number of pairs as the "
           "other variants of its comparison (a seeded choice of the smallest variant's kept training pairs) and "
           "evaluated on the same queries and pool. Intervals: paired bootstrap 95% over the queries.\n"]
    for comparison in dict.fromkeys(r["comparison"] for r in rows):
        mine = [r for r in rows if r["comparison"] == comparison]
        out.append(f"## {TITLES[comparison]}\n")
        for task in dict.fromkeys(r["task"] for r in mine):
            table = [{"variant": r["variant"], "run": r["run_id"], "pairs": r["pairs"], "steps": r["steps"],
                      "nDCG@10": r["ndcg@10"], "tuned − base": _interval(r, "ndcg@10_delta"),
                      f"variant − {BASELINES[comparison]}": _interval(r, "ndcg@10_vs_baseline")}
                     for r in mine if r["task"] == task]
            base = next((r["base_ndcg@10"] for r in mine if r["task"] == task), None)
            bm25 = next((r["bm25_ndcg@10"] for r in mine if r["task"] == task), None)
            out.append(f"**{describe(task)}** (base {base:.4f}" + (f", BM25 {bm25:.4f}" if bm25 is not None else "")
                       + ")\n" if base is not None else f"**{describe(task)}**\n")
            out.append(markdown_table(table))
    return "\n".join(out)


def artifact_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with every column any of them has (only compared variants have the _vs_baseline ones)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{c: r.get(c) for c in columns} for r in rows]
