"""What the train stage records of a training: the model's row, ``metrics`` rows, the artifacts."""

from __future__ import annotations

from typing import Any

BASE_NAME = "all-MiniLM-L6-v2"
TUNED_NAME = "tuned"
# `metrics` rows of the stage: the dev split's scores of the base model (step 0) and of the step
# saved as the tuned model, and the loss at the first and last step.
DEV_TASK = "train_dev"
LOSS_TASK = "train_loss"
# The teacher's dev check: nDCG@10 of the starting model's top passages per dev query, as it ranked
# them (model 'start') and as the teacher reranked them (model 'teacher').
TEACHER_TASK = "teacher_dev"


def training_metric_rows(stats: dict[str, Any]) -> list[tuple[str, str, str, float]]:
    """(model, task, metric, value) of a training's stats (:func:`tasks.train.shard_tasks.train_model`)."""
    rows = [("tuned", LOSS_TASK, "first", stats["first_loss"]), ("tuned", LOSS_TASK, "last", stats["last_loss"])]
    dev = stats.get("dev") or []
    if dev and dev[0]["step"] == 0:
        rows += [("base", DEV_TASK, m, v) for m, v in dev[0].items() if m != "step"]
    if stats.get("saved_dev"):
        rows += [("tuned", DEV_TASK, m, v) for m, v in stats["saved_dev"].items()]
        rows.append(("tuned", DEV_TASK, "step", stats["saved_step"]))
    teacher = stats.get("teacher") or {}
    if "ndcg@10_teacher" in teacher:
        rows += [("start", TEACHER_TASK, "ndcg@10", teacher["ndcg@10_start"]),
                 ("teacher", TEACHER_TASK, "ndcg@10", teacher["ndcg@10_teacher"]),
                 ("teacher", TEACHER_TASK, "used", float(teacher["used"])),
                 ("teacher", TEACHER_TASK, "false_negatives_dropped", teacher.get("false_negatives_dropped", 0))]
    return [(model, task, metric, float(value)) for model, task, metric, value in rows]


def training_artifacts(run_id: str, stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The stage's table artifacts by key (``table``, ``description`` each): the model, the dev
    split's curve when there is one, and the data map's regions when there is one."""
    summary = {k: v for k, v in stats.items() if not isinstance(v, (list, dict))}
    teacher = stats.get("teacher") or {}
    summary |= {f"teacher_{k}": v for k, v in teacher.items() if k in ("kind", "used", "reason", "ndcg@10_start",
                                                                         "ndcg@10_teacher", "false_negatives_dropped")}
    out = {"trained-model": {"table": [{"name": TUNED_NAME, "base": BASE_NAME, **summary}],
                             "description": f"Run {run_id}: fine-tuned model."}}
    if stats.get("dev"):
        out["training-dev-curve"] = {"table": stats["dev"],
                                     "description": f"Run {run_id}: the dev split's scores during training; "
                                                    f"step {stats['saved_step']} is the saved model."}
    carto = stats.get("cartography") or {}
    if carto.get("regions") or carto.get("dropped"):
        rows = [{"region": r, "pairs": n} for r, n in (carto.get("regions") or {}).items()]
        if carto.get("dropped"):
            rows.append({"region": "left out (hard_to_learn in an earlier map)", "pairs": carto["dropped"]})
        out["training-data-map"] = {"table": rows,
                                    "description": f"Run {run_id}: the data map's pairs per region over "
                                                   f"{carto.get('checkpoints', 0)} checkpoints (`pair_map`), and "
                                                   "the pairs left out by an earlier one (`pair_drops`)."}
    return out
