"""promote: the promotion gate on the night's model, and the dataset's promoted model folder."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from refinery.flows.runtime import HOUR, run_stage
from refinery.tasks.runs import RunSpec
from refinery.tasks.train.promotion import BASE, PROMOTED, gate, publish_promoted
from refinery.tasks.train.summary import BASE_NAME

# A copy of the model folder and two ONNX exports (the int8 one usually cached by evaluate): a minute.
publish_task = task(publish_promoted, name="publish-promoted-model", retries=1, timeout_seconds=HOUR)


@flow(name="promote", log_prints=True)
def promote_flow(run: RunSpec, train: dict[str, Any], evaluate: dict[str, Any]) -> dict[str, Any]:
    """Promote the night's model when the gate finds it not worse than the dataset's promoted model
    (the base model on the first night); the stage's stats: the decision and why."""
    return run_stage(run, "promote", lambda out: _promote(run, train, evaluate))


def _promote(run: RunSpec, train: dict[str, Any], evaluate: dict[str, Any]) -> dict[str, Any]:
    if train.get("skipped") or not train.get("model_path"):
        return {"skipped": train.get("skipped") or "no model was trained"}
    if evaluate.get("skipped"):
        return {"skipped": f"evaluate skipped: {evaluate['skipped']}"}
    catalog, dataset, logger = run.catalog, run.config.dataset, get_run_logger()
    current = catalog.promoted_model(dataset)
    decision = gate(evaluate, compared_with=PROMOTED if current else BASE, cfg=run.config.train.promotion)
    decision["replaces"] = current["run_id"] if current else None
    stats: dict[str, Any] = {"dataset": dataset, **decision}
    if decision["promote"]:
        folder = run.data_home.promoted_model_dir(dataset)
        stats["path"] = publish_task.submit(train["model_path"], str(folder), _facts(run, train, evaluate, decision),
                                            str(run.data_home.cache_dir)).result()
    catalog.decide_model(run.run_id, dataset, promoted=decision["promote"], gate=decision)
    logger.info("promote: dataset %s: %s", dataset, decision["reason"])
    create_markdown_artifact(key="promotion", markdown=f"**Dataset `{dataset}`, run {run.run_id}**: "
                             f"{decision['reason']}" + (f"; promoted model at `{stats['path']}`." if "path" in stats
                                                        else "."))
    return stats


def _facts(run: RunSpec, train: dict[str, Any], evaluate: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """What the model card says: base, start, dataset version, training, evaluation, the gate."""
    by_task = {t: v.get("metrics") or {} for t, v in (evaluate.get("by_task") or {}).items()}
    fusion = (evaluate.get("fusion") or {}).get("weight")  # the hybrid's, fitted on the dev split
    version = run.run_id if evaluate.get("corpus_of") else f"none (run {run.run_id} curated its own corpus)"
    return {"dataset": run.config.dataset, "version": version,
            "run_id": run.run_id, "base": BASE_NAME, "init": (train.get("init") or {}).get("name", BASE_NAME),
            "train": {k: train.get(k) for k in ("examples", "with_negatives", "steps", "saved_step", "replay")},
            "loss": _loss(train), "teacher": _teacher(train),
            "metrics": by_task, "fusion_weight": fusion, "gate": decision,
            "model_path": train["model_path"]}


def _loss(train: dict[str, Any]) -> str:
    return {"mnrl": "MultipleNegativesRankingLoss (in-batch and mined hard negatives)",
            "marginmse": "MarginMSELoss on the teacher's margins",
            "mnrl+marginmse": "MultipleNegativesRankingLoss + MarginMSELoss on the teacher's margins"
            }.get(train.get("loss") or "mnrl", str(train.get("loss")))


def _teacher(train: dict[str, Any]) -> str | None:
    teacher = train.get("teacher")
    if not teacher:
        return None
    figures = (f"dev nDCG@10 {teacher['ndcg@10_teacher']:.4f} reranking the starting model's "
               f"{teacher['ndcg@10_start']:.4f}" if "ndcg@10_teacher" in teacher else teacher.get("reason", ""))
    return f"{teacher['kind']} ({'used' if teacher['used'] else 'not used'}: {figures})"
