"""train: contrastive fine-tuning (MultipleNegativesRankingLoss) of the sentence-embedding model."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import RunSpec, run_stage
from refinery.storage import StageMarker
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.train.shard_tasks import train_model

BASE_NAME = "all-MiniLM-L6-v2"
TUNED_NAME = "tuned"


def _train(run: RunSpec, out: Path) -> dict[str, Any]:
    synth = StageMarker(run.stage_dir("synthesize")).read()
    quality = StageMarker(run.stage_dir("quality")).read()
    if synth is None or quality is None:
        raise RuntimeError(f"run {run.run_id}: train needs finished quality and synthesize stages")
    if synth.get("skipped"):
        run.catalog.replace("models", run.run_id, where={"name": TUNED_NAME})
        return {"skipped": synth["skipped"]}
    stats = train_model.submit(Path(synth["pairs_path"]), quality["corpus_shards"], str(BASE_MODEL_PATH),
                               out / "model", run.config.train).result()
    run.catalog.replace("models", run.run_id, where={"name": TUNED_NAME}, rows=pa.table({
        "name": [TUNED_NAME], "path": [stats["model_path"]], "base": [BASE_NAME],
        "created_at": [datetime.now(timezone.utc)]}))
    create_table_artifact(key="trained-model", table=[{"name": TUNED_NAME, "base": BASE_NAME, **stats}],
                          description=f"Run {run.run_id}: fine-tuned model.")
    return stats


@flow(name="train", log_prints=True)
def train_flow(run: RunSpec) -> dict[str, Any]:
    return run_stage(run, "train", lambda out: _train(run, out))
