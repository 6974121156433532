"""nightly: ingest → dedup → quality → publish → [budget] → synthesize → train → evaluate → promote, one run
in the catalog (budget: with ``budget.minutes``, the model half sized to it)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect_dask import DaskTaskRunner

from refinery.flows.alerts import announce_failure
from refinery.flows.budget import budget_flow, planned_config
from refinery.flows.dedup import dedup_flow
from refinery.flows.evaluate import evaluate_flow
from refinery.flows.ingest import ingest_flow
from refinery.flows.promote import promote_flow
from refinery.flows.publish import publish_flow
from refinery.flows.quality import quality_flow
from refinery.tasks.report.run_report import write_report
from refinery.flows.runtime import dask_cluster, stage_budget
from refinery.tasks.runs import RunSpec, new_run_id
from refinery.flows.synthesize import synthesize_flow
from refinery.flows.train import train_flow
from refinery.storage import DataHome, sweep_partial_writes, write_text_atomic
from refinery.tasks.books import books_so_far, check_books
from refinery.tasks.budget.record import actual_rows, plan_rows
from refinery.tasks.budget.plan import BudgetPlan
from refinery.tasks.config import CURATION_STAGES, RefineryConfig, dump_config, load_config, parse_config
from refinery.tasks.evaluate.queries import validate_query_sets
from refinery.tasks.runs import reuse_curation
from refinery.tasks.exceptions import ConfigError, DropRateError, InputError
from refinery.tasks.ingest.duplicates import id_scope_line
from refinery.tasks.dataset_version import model_corpus
from refinery.tasks.quality.guard import guard_message, warning_line


def prepare_run(config: RefineryConfig, run_id: str | None = None, stages: list[str] | None = None,
                from_run: str | None = None) -> RunSpec:
    """Create (or reopen, to resume) a run: data home, catalog tables, the run's config file.

    ``stages`` overrides the config's; on a resumed run it may extend a curation-only run.
    ``from_run`` starts a new run from another run's finished curation stages (see
    :func:`refinery.tasks.runs.reuse_curation`); the new run's config takes that run's curation sections.
    """
    home = DataHome.resolve(config.home, config.catalog).ensure()
    resuming = run_id is not None
    if resuming and from_run:
        raise ConfigError("--resume and --from-run do not go together: a resumed run keeps what it started from")
    for name, given in (("resume", run_id), ("reuse", from_run)):
        if given is not None and not home.run_config_path(given).exists():
            raise InputError(f"no run {given} to {name} under {home.root} (`refinery runs` lists the runs)")
    if resuming:
        # a resumed run keeps the config it started with, so finished stages stay valid
        config = load_config(home.run_config_path(run_id))
    if from_run:
        source = load_config(home.run_config_path(from_run)).model_dump(mode="json")
        config = parse_config({**config.model_dump(mode="json"), **{s: source[s] for s in CURATION_STAGES}},
                              f"the curation config of run {from_run}")
    if stages is not None:
        config = parse_config({**config.model_dump(mode="json"), "stages": list(stages)}, "--stages")
    validate_query_sets(config)  # a missing, malformed or unmatched query set fails before any stage
    run = RunSpec(run_id=run_id or new_run_id(), home=str(home.root), config=config)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if resuming:  # the caller holds the home's run lock: nothing else writes here
        sweep_partial_writes(run.run_dir)
    if not resuming or stages is not None:
        write_text_atomic(dump_config(config), home.run_config_path(run.run_id))
    catalog = run.catalog.ensure_schema()
    catalog.mark_interrupted()  # the caller holds the home's run lock: a `running` run is a dead one
    catalog.start_run(run.run_id, config=config.model_dump(mode="json"), run_dir=run.run_dir)
    if from_run:
        reused = reuse_curation(home, run.run_id, from_run)
        get_run_logger().info("run %s: reusing %s of run %s", run.run_id, ", ".join(reused), from_run)
    return run


def run_chain(run: RunSpec, dask_address: str | None = None) -> dict[str, Any]:
    """The config's stages in order, each given what the earlier ones returned, then the books and
    the report.

    A failed stage marks the run failed with the figures known so far and still publishes a report
    saying where it failed; the stage's own error is what the caller gets.
    """
    logger = get_run_logger()
    stats: dict[str, Any] = {}
    current = ["setup"]  # the stage running now, for the failure's message
    try:
        with dask_cluster(run.config.dask, dask_address) as address:
            logger.info("run %s: Dask scheduler at %s; outputs under %s", run.run_id, address, run.run_dir)
            runner = DaskTaskRunner(address=address)

            def stage(name: str, stage_flow: Any, *inputs: dict[str, Any]) -> dict[str, Any]:
                current[0] = name
                planned = (stats.get("budget") or {}).get("plan") or {}
                with stage_budget(name, planned.get("stage_minutes", {}).get(name)):
                    stats[name] = stage_flow.with_options(task_runner=runner)(run, *inputs)
                return stats[name]

            # the config's stages are the chain up to one stage, at least up to quality
            chosen = run.config.stages
            ingest = stage("ingest", ingest_flow)
            dedup = stage("dedup", dedup_flow, ingest)
            quality = stage("quality", quality_flow, ingest, dedup)
            stats["books"] = check_books(run, ingest, quality).as_dict()
            current[0] = "quality (drop-rate guard)"
            _guard(run, quality)
            published = stage("publish", publish_flow, ingest, dedup, quality)
            corpus = model_corpus(quality, published)  # the model half reads the night's dataset version
            if "synthesize" in chosen and run.config.budget.minutes is not None:
                # sized once: a resumed run reads the plan from the stage's marker and its config.yaml
                run = run.model_copy(update={"config": planned_config(run, stage("budget", budget_flow, ingest,
                                                                                   corpus))})
            if "synthesize" in chosen:
                synthesize = stage("synthesize", synthesize_flow, ingest, corpus)
            if "train" in chosen:
                train = stage("train", train_flow, corpus, synthesize)
            if "evaluate" in chosen:
                evaluation = stage("evaluate", evaluate_flow, corpus, synthesize, train)
                if run.promotes:
                    stage("promote", promote_flow, train, evaluation)
            _record_budget(run, stats)
    except BaseException as exc:
        logger.error("run %s failed in %s\n%s", run.run_id, current[0], traceback.format_exc())
        _record_failure(run, current[0], exc, stats)
        raise
    run.catalog.finish_run(run.run_id, status="completed", **stats["books"])
    stats["report"] = str(write_report(run))
    for warning in stats["ingest"].get("id_scope_warnings") or []:  # the end of the run says it again
        logger.warning("run %s: %s", run.run_id, id_scope_line(warning))
    for warning in stats["quality"].get("warnings") or []:
        logger.warning("run %s: %s", run.run_id, warning_line(warning))
    return stats


def _record_budget(run: RunSpec, stats: dict[str, Any]) -> None:
    """A budgeted run's plan beside what its stages did, as ``metrics`` rows of stage ``budget``."""
    plan = (stats.get("budget") or {}).get("plan")
    if not plan:
        return
    seconds = {r["stage"]: r["seconds"] for r in run.catalog.stage_timings(run.run_id)}
    rows = plan_rows(BudgetPlan.from_dict(plan)) + actual_rows(seconds, stats.get("synthesize") or {},
                                                               stats.get("train") or {})
    run.catalog.put_metrics(run.run_id, "budget", rows)


def _guard(run: RunSpec, quality: dict[str, Any]) -> None:
    """Record the quality stage's drop-rate warnings in ``runs``; under ``quality.guard.action: fail``,
    fail the run on them (the stage's outputs are written: a refilter can re-decide it)."""
    warnings = quality.get("warnings") or []
    run.catalog.record_warnings(run.run_id, warnings)
    if warnings and run.config.quality.guard.action == "fail":
        raise DropRateError(guard_message(run.run_id, warnings))


def _record_failure(run: RunSpec, stage: str, exc: BaseException, stats: dict[str, Any]) -> None:
    """Mark the run failed, with the figures known so far (``stats``: what the stages that finished
    returned), and publish its report.

    Each step is guarded: nothing here may replace the stage's error with one of its own.
    """
    logger = get_run_logger()
    error = f"{stage}: {type(exc).__name__}: {exc}"
    try:
        books = books_so_far(run, stats.get("ingest"), stats.get("quality"))
    except Exception:
        logger.exception("run %s: could not count the books of the failed run", run.run_id)
        books = {}
    try:
        run.catalog.finish_run(run.run_id, status="failed", error=error, **books)
    except Exception:
        logger.exception("run %s: could not mark the run failed in the catalog", run.run_id)
    try:
        path = write_report(run, failed_stage=stage, error=error)
        logger.info("run %s: report of the failed run at %s", run.run_id, path)
    except Exception:
        logger.exception("run %s: could not write the report of the failed run", run.run_id)


def check_deployment_config(config_path: str | None) -> None:
    """A run started from a deployment (the UI's Run button takes any parameters) may only read a
    config under the folder of the deployment's own config, or under ``REFINERY_CONFIG_DIR`` (a
    ``:``-separated list, set where the deployment runs)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment

    if config_path is None or deployment.id is None:
        return
    allowed = [Path(p).resolve() for p in os.environ.get("REFINERY_CONFIG_DIR", "").split(os.pathsep) if p]
    with get_client(sync_client=True) as client:
        default = (client.read_deployment(deployment.id).parameters or {}).get("config_path")
    if default:
        allowed.append(Path(default).resolve().parent)
    path = Path(config_path).resolve()
    if not any(path.is_relative_to(folder) for folder in allowed):
        raise InputError(f"config_path {config_path} is outside the folders this deployment may read config from "
                         f"({', '.join(map(str, allowed)) or 'none'}); set REFINERY_CONFIG_DIR where the "
                         "deployment runs to allow another")


def with_default_budget(config: RefineryConfig, minutes: float | None) -> RefineryConfig:
    """``config`` with ``budget.minutes`` set to ``minutes`` where the config sets none; ``minutes``
    None or 0 leaves the config as it is."""
    if config.budget.minutes is not None or not minutes:
        return config
    return parse_config({**config.model_dump(mode="json"), "budget": {"minutes": minutes}}, "the default budget")


@flow(name="nightly", log_prints=True, on_failure=[announce_failure])
def nightly(config_path: str | None = None, dask_address: str | None = None,
            run_id: str | None = None, stages: list[str] | None = None,
            from_run: str | None = None, default_budget_minutes: float | None = None) -> dict[str, Any]:
    """The chain (the config's ``stages``, or ``stages``). ``run_id`` of an unfinished run resumes it;
    finished stages are skipped. ``from_run`` starts a new run from that run's curated corpus.
    ``default_budget_minutes`` is the budget of a run whose config sets no ``budget.minutes`` (the
    nightly window `refinery serve`/`deploy` give their runs)."""
    check_deployment_config(config_path)
    config = with_default_budget(load_config(config_path), default_budget_minutes)
    with DataHome.resolve(config.home, config.catalog).run_lock("a nightly run"):
        run = prepare_run(config, run_id, stages, from_run)
        stats = run_chain(run, dask_address)
    stats["run_id"] = run.run_id
    stats["run_dir"] = str(run.run_dir)
    return stats
