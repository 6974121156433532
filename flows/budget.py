"""budget: measure this machine's rates and size the model half to ``budget.minutes`` (before synthesize).

The plan is applied to the run's config (its synthesize and train sections) and written to the
run's config.yaml, so a resumed run reads the same sizes; the stage's marker holds the plan, so a
resumed run does not measure or plan again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import HOUR, run_stage
from refinery.storage import write_text_atomic
from refinery.tasks.books import NO_CORPUS, corpus_is_empty
from refinery.tasks.budget.calibrate import measure_encoder, measure_generator, measure_training_step, worker_slots
from refinery.tasks.budget.plan import (
    LLM_GENERATORS, BudgetPlan, Rates, Workload, apply_plan, below_minimum_line, plan_budget,
)
from refinery.tasks.budget.record import plan_rows
from refinery.tasks.config import RefineryConfig, dump_config, load_config
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.runs import RunSpec

# Each measurement takes seconds to a minute (a first run also de-quantizes the generator's model).
slots_task = task(worker_slots, name="count-worker-slots", retries=1, timeout_seconds=300)
generator_task = task(measure_generator, name="calibrate-generator", task_run_name="calibrate {generator}",
                      retries=1, timeout_seconds=HOUR)
encoder_task = task(measure_encoder, name="calibrate-encoder", task_run_name="calibrate the encoder", retries=1,
                    timeout_seconds=HOUR)
training_task = task(measure_training_step, name="calibrate-training", task_run_name="calibrate a training step",
                     retries=1, timeout_seconds=HOUR)
# The run's config before the plan, in the stage's folder: a stage redone after a kill plans from it.
UNPLANNED_CONFIG = "config-unplanned.yaml"


@flow(name="budget", log_prints=True)
def budget_flow(run: RunSpec, ingest: dict[str, Any], quality: dict[str, Any]) -> dict[str, Any]:
    """Plan the model half of ``run`` to its ``budget.minutes`` on the corpus synthesize will read
    (``quality``'s, or ``ingest``'s with ``synthesize.corpus: uncurated``); the stage's stats hold
    the plan (``plan``) and what the calibration measured (``calibration``)."""
    return run_stage(run, "budget", lambda out: _plan(run, ingest, quality, out))


def planned_config(run: RunSpec, budget: dict[str, Any]) -> RefineryConfig:
    """The run's config with the budget stage's plan applied (itself when the stage planned nothing)."""
    if not budget.get("plan"):
        return run.config
    return apply_plan(run.config, BudgetPlan.from_dict(budget["plan"]))


def _plan(run: RunSpec, ingest: dict[str, Any], quality: dict[str, Any], out: Path) -> dict[str, Any]:
    logger = get_run_logger()
    if corpus_is_empty(quality):
        run.catalog.put_metrics(run.run_id, "budget", [])
        return {"skipped": NO_CORPUS}
    unplanned = out / UNPLANNED_CONFIG
    if unplanned.exists():  # redone after a kill: the config file may hold a plan already
        config = load_config(unplanned)
    else:
        config = run.config
        write_text_atomic(dump_config(config), unplanned)
    shards, docs = quality["corpus_shards"], quality["kept"]
    if config.synthesize.corpus == "uncurated":
        shards, docs = ingest["shards"], ingest["docs"]
    cache = str(run.data_home.cache_dir)
    started = time.monotonic()
    slots = slots_task.submit()
    generators = {g: generator_task.submit(shards, g, config.synthesize, cache)
                  for g in config.synthesize.generators if g in LLM_GENERATORS}
    encoder = encoder_task.submit(shards, str(BASE_MODEL_PATH), config.evaluate, cache).result()
    generated = {g: f.result() for g, f in generators.items()}
    # alone on its worker's cores, as training runs (after the generators, which share them)
    step = training_task.submit(shards, str(BASE_MODEL_PATH), config.train,
                                hard_negatives=config.synthesize.hard_negatives).result()
    rates = Rates(slots=slots.result(), encode_docs_per_s=encoder["docs_per_second"],
                  train_step_s=step["seconds_per_step"],
                  llm_s_per_passage={g: r["seconds_per_passage"] for g, r in generated.items()},
                  calibration_s=round(time.monotonic() - started, 1))
    scores_promoted = run.promotes and run.catalog.promoted_model(config.dataset) is not None
    plan = plan_budget(config.budget.minutes, rates, Workload(docs, scores_promoted=scores_promoted), config)
    if (warning := below_minimum_line(plan)) is not None:
        logger.warning("run %s: %s", run.run_id, warning)
    planned = apply_plan(config, plan)
    write_text_atomic(dump_config(planned), run.data_home.run_config_path(run.run_id))
    run.catalog.update_run_config(run.run_id, planned.model_dump(mode="json"))
    run.catalog.put_metrics(run.run_id, "budget", plan_rows(plan))
    create_table_artifact(key="budget-plan", table=[{"stage": s, "planned minutes": m}
                                                    for s, m in plan.stage_minutes.items()],
                          description=f"Run {run.run_id}: the model half planned to {plan.minutes:g} minutes "
                                      f"({plan.reserve_minutes:g} in reserve): {plan.llm_passages} LLM passages x "
                                      f"{plan.candidates_per_passage} samples, {plan.inverse_cloze_passages} "
                                      f"inverse-cloze passages, {plan.steps} training steps over {plan.epochs} "
                                      "epoch(s).")
    logger.info("budget: %g minutes on %d slots (a step %.1f s, %.0f docs/s a slot%s): %d LLM passages x %d samples, "
                "%d inverse-cloze passages, %d steps (%d epochs); planned minutes %s", plan.minutes, rates.slots,
                rates.train_step_s, rates.encode_docs_per_s,
                "".join(f", {g} {s:.1f} s a passage" for g, s in rates.llm_s_per_passage.items()),
                plan.llm_passages, plan.candidates_per_passage, plan.inverse_cloze_passages, plan.steps, plan.epochs,
                plan.stage_minutes)
    return {"plan": plan.as_dict(), "calibration": {"generators": generated, "encoder": encoder, "training": step}}
