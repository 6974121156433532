"""train: contrastive fine-tuning (MultipleNegativesRankingLoss) of the sentence-embedding model."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import RunSpec, run_stage
from refinery.storage import StageMarker
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.train.shard_tasks import train_model

BASE_NAME = "all-MiniLM-L6-v2"
TUNED_NAME = "tuned"
# `metrics` rows of the stage: the dev split's scores of the base model (step 0) and of the step
# saved as the tuned model, and the loss at the first and last step.
DEV_TASK = "train_dev"
LOSS_TASK = "train_loss"


def _metric_rows(stats: dict[str, Any]) -> pa.Table:
    rows = [("tuned", LOSS_TASK, "first", stats["first_loss"]), ("tuned", LOSS_TASK, "last", stats["last_loss"])]
    dev = stats.get("dev") or []
    if dev and dev[0]["step"] == 0:
        rows += [("base", DEV_TASK, m, v) for m, v in dev[0].items() if m != "step"]
    if stats.get("saved_dev"):
        rows += [("tuned", DEV_TASK, m, v) for m, v in stats["saved_dev"].items()]
        rows.append(("tuned", DEV_TASK, "step", stats["saved_step"]))
    return pa.table({"stage": ["train"] * len(rows), "model": [r[0] for r in rows], "task": [r[1] for r in rows],
                     "metric": [r[2] for r in rows], "value": [float(r[3]) for r in rows]})


def _train(run: RunSpec, out: Path) -> dict[str, Any]:
    synth = StageMarker(run.stage_dir("synthesize")).read()
    quality = StageMarker(run.stage_dir("quality")).read()
    if synth is None or quality is None:
        raise RuntimeError(f"run {run.run_id}: train needs finished quality and synthesize stages")
    if synth.get("skipped"):
        run.catalog.replace("models", run.run_id, where={"name": TUNED_NAME})
        run.catalog.replace("metrics", run.run_id, where={"stage": "train"})
        return {"skipped": synth["skipped"]}
    stats = train_model.submit(Path(synth["pairs_path"]), quality["corpus_shards"], str(BASE_MODEL_PATH),
                               out / "model", run.config.train, out / "checkpoint").result()
    if stats.get("resumed_from_step"):
        get_run_logger().info("train: resumed a killed training from its checkpoint at step %d of %d",
                              stats["resumed_from_step"], stats["steps"])
    run.catalog.replace("models", run.run_id, where={"name": TUNED_NAME}, rows=pa.table({
        "name": [TUNED_NAME], "path": [stats["model_path"]], "base": [BASE_NAME],
        "created_at": [datetime.now(timezone.utc)]}))
    run.catalog.replace("metrics", run.run_id, where={"stage": "train"}, rows=_metric_rows(stats))
    summary = {k: v for k, v in stats.items() if not isinstance(v, (list, dict))}
    create_table_artifact(key="trained-model", table=[{"name": TUNED_NAME, "base": BASE_NAME, **summary}],
                          description=f"Run {run.run_id}: fine-tuned model.")
    if stats.get("dev"):
        create_table_artifact(key="training-dev-curve", table=stats["dev"],
                              description=f"Run {run.run_id}: the dev split's scores during training; "
                                          f"step {stats['saved_step']} is the saved model.")
    return stats


@flow(name="train", log_prints=True)
def train_flow(run: RunSpec, quality: dict[str, Any], synthesize: dict[str, Any]) -> dict[str, Any]:
    return run_stage(run, "train", lambda out: _train(run, out))
