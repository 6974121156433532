"""train: contrastive fine-tuning (MultipleNegativesRankingLoss) of the sentence-embedding model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import run_stage
from refinery.storage.location import location
from refinery.tasks.runs import RunSpec
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.train.cartography import HARD, STAGE
from refinery.tasks.train.shard_tasks import train_model
from refinery.tasks.train.summary import BASE_NAME, TUNED_NAME, training_artifacts, training_metric_rows

# One retry: a training killed with its worker goes on from its last checkpoint (train.checkpoint_every
# steps), not from step 0. Minutes on the bundled corpus; hours for a large train.max_pairs on CPU.
train_task = task(train_model, name="fine-tune", task_run_name="fine-tune on {pairs_path.name}", retries=1,
                  timeout_seconds=12 * 3600)


@flow(name="train", log_prints=True)
def train_flow(run: RunSpec, quality: dict[str, Any], synthesize: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune the base model on synthesize's kept training pairs (hard negatives read from
    ``quality``'s corpus shards); the stage's stats, with the tuned model's path."""
    return run_stage(run, "train", lambda out: _train(run, quality, synthesize, out))


def _train(run: RunSpec, quality: dict[str, Any], synthesize: dict[str, Any], out: Path) -> dict[str, Any]:
    catalog, run_id = run.catalog, run.run_id
    if synthesize.get("skipped"):
        catalog.put_model(run_id, TUNED_NAME)
        catalog.put_metrics(run_id, "train", [])
        return {"skipped": synthesize["skipped"]}
    cfg, logger = run.config.train, get_run_logger()
    base_path, init = _initial_model(run)
    replay = catalog.earlier_pair_shards(run.config.dataset, run_id) if cfg.replay_ratio else []
    # at most train.cartography.pairs ids a mapped run, the hard-to-learn share of them
    hard = catalog.latest_map_region(run_id, HARD) if cfg.cartography.drop_hard_to_learn else {}
    stats = train_task.submit(location(synthesize["pairs_path"]), quality["corpus_shards"], base_path,
                              out / "model", cfg, out / "checkpoint", [r["path"] for r in replay],
                              str(run.data_home.cache_dir), hard).result()
    stats["init"] = init
    carto = stats.get("cartography") or {}
    catalog.put_pair_drops(run_id, STAGE, carto.get("drops_path"))
    catalog.put_pair_map(run_id, carto.get("map_path"))
    if carto.get("dropped"):
        logger.info("train: left out %d pairs an earlier data map put in %s (pair_drops, reason cartography)",
                    carto["dropped"], HARD)
    if stats.get("skipped"):
        logger.warning("train: no model trained tonight: %s", stats["skipped"])
        catalog.put_model(run_id, TUNED_NAME)
        catalog.put_metrics(run_id, "train", [])
        return stats
    if stats.get("resumed_from_step"):
        logger.info("train: resumed a killed training from its checkpoint at step %d of %d",
                    stats["resumed_from_step"], stats["planned_steps"])
    logger.info("train: from %s, on %d pairs (%d replayed from %d earlier nights)", init["name"], stats["examples"],
                stats["replay"]["replayed"], len(replay))
    if (fit := stats.get("replanned")) and fit["to"] != fit["from"]:
        logger.info("train: re-planned from %d to %d steps after step %d, at the %.1f s a step measured so far "
                    "(train.fit_minutes %g)", fit["from"], fit["to"], fit["at_step"], fit["seconds_per_step"],
                    cfg.fit_minutes)
    if stats.get("stopped_early"):
        logger.warning("train: stopped early, %s; the best scored step so far is the model", stats["stopped_early"])
    catalog.put_model(run_id, TUNED_NAME, stats["model_path"], base=init["name"])
    catalog.put_metrics(run_id, "train", training_metric_rows(stats))
    for key, artifact in training_artifacts(run_id, stats).items():
        create_table_artifact(key=key, **artifact)
    return stats


def _initial_model(run: RunSpec) -> tuple[str, dict[str, Any]]:
    """What the night trains from (``train.init``): the folder, and its name and run for the records."""
    if run.config.train.init == "promoted":
        promoted = run.catalog.promoted_model(run.config.dataset)
        folder = run.data_home.promoted_model_dir(run.config.dataset)
        if promoted is not None and folder.is_dir():
            return str(folder), {"name": f"promoted:{promoted['run_id']}", "run_id": promoted["run_id"]}
    return str(BASE_MODEL_PATH), {"name": BASE_NAME, "run_id": None}
