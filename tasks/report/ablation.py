"""The ablations' results: a variant's figures, the rows that compare the variants of a comparison
(paired intervals), their ``metrics`` rows and ``ablation.md``.

The ablate flow (``refinery.flows.ablate``) runs the variants; these functions read what the
variants' runs wrote and turn it into rows, catalog rows and Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Sequence
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
LOSSES = "losses"
TEACHER_FILTERED = "teacher_filtered_negatives"
NIGHTS = "nights"
CHOOSING = "choosing"
COMPARISONS = (CURATION, GENERATORS, HARD_NEGATIVES, LOSSES, TEACHER_FILTERED, NIGHTS, CHOOSING)
# Comparisons whose variants differ in the train section only: they train on one synthesized run's pairs.
TRAIN_ONLY = (LOSSES, TEACHER_FILTERED, NIGHTS)
# The `metrics` stage of the ablation rows (stored with the reference run; model: the variant).
ABLATE = "ablate"
MIX = "mix"
# The variant each other variant of a comparison is measured against (paired bootstrap).
BASELINES = {CURATION: "curated", GENERATORS: "inverse_cloze_only", HARD_NEGATIVES: "no_hard_negatives",
             LOSSES: "mnrl", TEACHER_FILTERED: "unfiltered", NIGHTS: "from_base", CHOOSING: "uniform"}
TITLES = {CURATION: "Curation: curated vs uncurated corpus",
          GENERATORS: "Generators: each alone vs the mix",
          HARD_NEGATIVES: "Hard negatives: pairs vs triplets with a mined negative",
          LOSSES: "Losses: MNRL vs MarginMSE with each teacher vs both",
          TEACHER_FILTERED: "Teacher-filtered negatives: hard negatives as mined vs with the teacher's false negatives dropped",
          NIGHTS: "Nights: a night from the base model vs a night from the promoted model",
          CHOOSING: "Choosing the data: uniform passages vs each method of choosing them, alone and together"}
# `metrics` rows of each variant's training budget (task 'train').
TRAIN_TASK = "train"
# The models whose nDCG@10 figures a variant's results hold.
MODELS = ("base", "bm25", "tuned")
# The training figures of a variant stored under task 'train' (teacher_used: 1 used, 0 not; absent
# without a teacher).
TRAIN_COLUMNS = ("pairs", "train_pairs", "steps", "with_negatives", "train_seconds", "teacher_seconds",
                 "teacher_used", "false_negatives_dropped", "replayed")
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
            "per_query": per_query, **training_facts(run.config.train.loss, train)}


def training_facts(asked_loss: str, train: dict[str, Any]) -> dict[str, Any]:
    """What a variant's train stage stats say it did: the loss asked for and the one trained (MNRL
    when the teacher was not used), the teacher and whether it was used (and why not), the false
    negatives it dropped, what training started from, the pairs replayed, and the minutes spent
    (teacher scoring apart: MarginMSE variants pay for it, MNRL ones do not)."""
    teacher = train.get("teacher") or {}
    replay = train.get("replay") or {}
    return {"loss_asked": asked_loss, "loss": train.get("loss"), "teacher": teacher.get("kind"),
            "teacher_used": teacher.get("used"), "teacher_reason": teacher.get("reason"),
            "false_negatives_dropped": teacher.get("false_negatives_dropped") if teacher.get("used") else None,
            "init": (train.get("init") or {}).get("name"), "replayed": replay.get("replayed"),
            "train_seconds": train.get("seconds"), "teacher_seconds": teacher.get("seconds")}


FACTS = ("loss_asked", "loss", "teacher", "teacher_used", "teacher_reason", "false_negatives_dropped", "init",
         "replayed", "train_seconds", "teacher_seconds")


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
                   **{k: v.get(k) for k in FACTS},
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
        out = [(TRAIN_TASK, k, mine[0][k]) for k in TRAIN_COLUMNS if mine[0].get(k) is not None]
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


def _minutes(*seconds: float | None) -> str:
    known = [x for x in seconds if x is not None]
    return f"{sum(known) / 60:.1f}" if known else ""


def _loss(row: dict[str, Any]) -> str | None:
    if row.get("loss") and row.get("loss_asked") and row["loss"] != row["loss_asked"]:
        return f"{row['loss']} (asked {row['loss_asked']})"
    return row.get("loss")


def _used(row: dict[str, Any]) -> str:
    return {True: "yes", False: "no"}.get(row.get("teacher_used"), "")


def _table_row(comparison: str, r: dict[str, Any], timed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"variant": r["variant"], "run": r["run_id"], "pairs": r["pairs"], "steps": r["steps"]}
    if comparison in (LOSSES, TEACHER_FILTERED):
        out |= {"loss": _loss(r), "teacher": r.get("teacher") or "", "teacher used": _used(r),
                "false negatives dropped": r.get("false_negatives_dropped")}
    if comparison == NIGHTS:
        out |= {"from": r.get("init"), "replayed": r.get("replayed")}
    if timed:
        out["train min"] = _minutes(r.get("train_seconds"), r.get("teacher_seconds"))
        if comparison in (LOSSES, TEACHER_FILTERED):
            out["of which teacher"] = _minutes(r.get("teacher_seconds"))
    return out | {"nDCG@10": r["ndcg@10"], "tuned − base": _interval(r, "ndcg@10_delta"),
                  f"variant − {BASELINES[comparison]}": _interval(r, "ndcg@10_vs_baseline")}


def ablation_markdown(run_id: str, rows: list[dict[str, Any]], skipped: Sequence[str] = ()) -> str:
    """``ablation.md`` of reference run ``run_id``: one table per comparison and task, a line per
    variant whose teacher was not used (it trained with MNRL), and the comparisons or variants
    ``skipped`` (one-line reasons)."""
    out = [f"# Ablations of run {run_id}\n",
           "Every variant is a run started from this run's curation, trained on the same number of pairs as the "
           "other variants of its comparison (a seeded choice of the smallest variant's kept training pairs) and "
           "evaluated on the same queries and pool. The variants of the losses, teacher-filtered negatives and "
           "nights comparisons differ in their train config only: they train on the pairs of one synthesized run "
           "(linked, not synthesized again). MarginMSE alone trains only on the triplets the teacher gave a margin, "
           "so it may take fewer steps; a teacher's scoring is time beside training (`of which teacher`, included "
           "in `train min`). A variant whose teacher failed its dev check trained with MNRL: `teacher used` says "
           "no and `loss` names both. Intervals: paired bootstrap 95% over the queries.\n"]
    for comparison in dict.fromkeys(r["comparison"] for r in rows):
        mine = [r for r in rows if r["comparison"] == comparison]
        timed = any(r.get("train_seconds") is not None for r in mine)
        out.append(f"## {TITLES[comparison]}\n")
        for task in dict.fromkeys(r["task"] for r in mine):
            table = [_table_row(comparison, r, timed) for r in mine if r["task"] == task]
            base = next((r["base_ndcg@10"] for r in mine if r["task"] == task), None)
            bm25 = next((r["bm25_ndcg@10"] for r in mine if r["task"] == task), None)
            out.append(f"**{describe(task)}** (base {base:.4f}" + (f", BM25 {bm25:.4f}" if bm25 is not None else "")
                       + ")\n" if base is not None else f"**{describe(task)}**\n")
            out.append(markdown_table(table))
        unused = {r["variant"]: r.get("teacher_reason") for r in mine if r.get("teacher_used") is False}
        out += [f"- `{variant}`: teacher not used: {reason or 'no reason recorded'}"
                for variant, reason in unused.items()]
        if unused:
            out.append("")
    if skipped:
        out.append("## Not measured\n")
        out += [f"- {line}" for line in skipped]
        out.append("")
    return "\n".join(out)


def artifact_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with every column any of them has (only compared variants have the _vs_baseline ones)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{c: r.get(c) for c in columns} for r in rows]
