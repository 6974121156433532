"""quality: heuristic rules, language ID and an optional trained classifier on dedup survivors.

Every score goes to ``doc_attributes`` and every drop (first failing rule) to ``drops``.
``refilter_flow`` re-decides a finished run under new thresholds from the stored scores alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from refinery.flows.runtime import dask_cluster, gather, run_stage
from refinery.storage.location import location
from refinery.tasks.runs import RunSpec
from refinery.storage import DataHome, StageMarker, sweep_partial_writes, write_shard
from refinery.storage.shards import write_text_atomic
from refinery.tasks.books import check_books
from refinery.tasks.config import RefineryConfig, dump_config, load_config
from refinery.tasks.quality import QualityConfig, family_fingerprints
from refinery.tasks.quality.guard import SNIPPET_CHARS, drop_rate_warnings_by_source, warning_line
from refinery.tasks.quality.refilter import LATER_STAGES, remove_stale_decisions, rescored_families, unfinish
from refinery.tasks.quality.shard_tasks import quality_shard, refilter_shard, train_quality_classifier
from refinery.tasks.exceptions import ConfigError, InputError, RefilterError

CLASSIFIER_NAME = "quality_classifier"

# CPU work on one shard (scoring ~40 values a document, or reading them back): one retry, since a
# shard task skips what it already wrote; timeouts far above a large shard's minutes.
quality_shard_task = task(quality_shard, name="quality-shard", task_run_name="quality {shard.name}",
                          retries=1, timeout_seconds=3 * 3600)
refilter_shard_task = task(refilter_shard, name="refilter-shard", task_run_name="refilter {shard.name}",
                           retries=1, timeout_seconds=3600)
# fastText trains in minutes on the whole corpus's negatives; a retry trains again from scratch.
train_classifier_task = task(train_quality_classifier, name="train-quality-classifier",
                             task_run_name="train fastText quality classifier", retries=1, timeout_seconds=3 * 3600)


@flow(name="quality", log_prints=True)
def quality_flow(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any]) -> dict[str, Any]:
    """Score and decide every shard ingest wrote, less what dedup dropped."""
    return run_stage(run, "quality", lambda out: _quality(run, ingest, dedup, out))


def _quality(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any], out: Path) -> dict[str, Any]:
    dedup_drops = location(dedup["drops_path"])
    classifier = (_train_classifier(run, out, ingest["shards"], dedup_drops)
                  if run.config.quality.classifier.enabled else None)
    results = gather(
        quality_shard_task.map([location(p) for p in ingest["shards"]], dedup_drops=unmapped(dedup_drops),
                               out_dir=unmapped(out), cfg=unmapped(run.config.quality),
                               classifier=unmapped(classifier)),
        "quality shards",
    )
    run.catalog.replace("doc_attributes", run.run_id, parquet=[r["attributes"] for r in results])
    run.catalog.replace("drops", run.run_id, parquet=[r["drops"] for r in results], where={"stage": "quality"})
    return _summarize(run, {
        "docs": sum(r["docs"] for r in results),
        "kept": sum(r["kept"] for r in results),
        "dropped": sum(r["dropped"] for r in results),
        "corpus_shards": [r["corpus"] for r in results],
        "classifier": classifier,
        "fingerprints": family_fingerprints(run.config.quality),
    })


def _positives(run: RunSpec, out: Path) -> str:
    """The classifier's positives: a path as configured, or the answer to its SQL as a shard."""
    source = run.config.quality.classifier.positives
    if not source:
        raise ConfigError("quality.classifier.enabled needs quality.classifier.positives (a file, a folder or sql:...)")
    if not source.startswith("sql:"):
        return source
    answer = run.catalog.user_query(source.removeprefix("sql:"))
    if "text" not in answer.column_names:
        raise InputError("quality.classifier.positives SQL must return a `text` column")
    return str(write_shard(answer.select(["text"]), out / "classifier" / "positives.parquet"))


def _train_classifier(run: RunSpec, out: Path, shards: list[str], dedup_drops: Path) -> str:
    report = train_classifier_task.submit(_positives(run, out), shards, dedup_drops, run.config.quality.classifier,
                                          out / "classifier" / "model.bin").result()
    run.catalog.put_quality_classifier(run.run_id, name=CLASSIFIER_NAME, path=report["path"],
                                       accuracy=report["accuracy"], auc=report["auc"])
    get_run_logger().info("quality classifier: held-out accuracy %.3f, AUC %.3f (%d positives, %d negatives)",
                          report["accuracy"], report["auc"], report["positives"], report["negatives"])
    return report["path"]


def _summarize(run: RunSpec, stats: dict[str, Any]) -> dict[str, Any]:
    """The drops by reason, the drop-rate guard's warnings (``stats["warnings"]``) and the table artifact."""
    by_reason = run.catalog.drops_by_reason(run.run_id, "quality")
    stats["drops_by_reason"] = {r["reason"]: r["docs"] for r in by_reason}
    reached, drops = run.catalog.quality_reach_by_source(run.run_id)
    stats["warnings"] = drop_rate_warnings_by_source(
        reached, drops, run.config.quality,
        example=lambda reason, attribute, source: run.catalog.drop_example(
            run.run_id, "quality", reason, attribute, SNIPPET_CHARS * 2, source if len(reached) > 1 else None))
    for warning in stats["warnings"]:
        get_run_logger().warning("run %s: %s", run.run_id, warning_line(warning))
    create_table_artifact(
        key="quality-drops", table=by_reason or [{"reason": "(none)", "docs": 0}],
        description=f"Run {run.run_id}: {stats['kept']} of {stats['docs']} dedup survivors kept; drops by rule.",
    )
    return stats




@flow(name="refilter", log_prints=True)
def refilter_flow(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any], quality: dict[str, Any],
                  thresholds: QualityConfig) -> dict[str, Any]:
    """Re-decide a finished quality stage (``quality``: its stats) under ``thresholds``, shard by
    shard, from the stored attributes; no rule is scored again.

    The later stages are marked unfinished first, so a refilter stopped anywhere leaves none of
    them marked finished on a corpus that is no longer the run's. The quality stage's marker is
    written last, after the drops, the corpus shards and the run's config: until then it names the
    old decisions, whose files stay. A refilter run again after a stop keeps the shards it already
    wrote (they are named by their decisions) and finishes; ``refinery run --resume`` then redoes
    the later stages on the new corpus.
    """
    changed = rescored_families(quality["fingerprints"], thresholds)
    if changed:
        raise RefilterError(f"these families compute different scores under the new config and need a new run: "
                            f"{', '.join(changed)}")
    unfinish(run.stage_dir(stage) for stage in LATER_STAGES)
    out = run.stage_dir("quality")
    results = gather(
        refilter_shard_task.map([location(p) for p in ingest["shards"]], dedup_drops=unmapped(location(dedup["drops_path"])),
                                out_dir=unmapped(out), cfg=unmapped(thresholds)),
        "refilter shards",
    )
    refiltered = RunSpec(run_id=run.run_id, home=run.home, config=run.config.model_copy(update={"quality": thresholds}))
    run.catalog.replace("drops", run.run_id, parquet=[r["drops"] for r in results], where={"stage": "quality"})
    stats = _summarize(refiltered, {**quality, "kept": sum(r["kept"] for r in results),
                                    "dropped": sum(r["dropped"] for r in results),
                                    "corpus_shards": [r["corpus"] for r in results], "refiltered": True})
    write_text_atomic(dump_config(refiltered.config), run.run_dir / "config.yaml")
    run.catalog.update_run_config(run.run_id, refiltered.config.model_dump(mode="json"))
    StageMarker(out).write(stats)
    remove_stale_decisions(out, [*stats["corpus_shards"], *(r["drops"] for r in results)])
    return stats


@flow(name="refilter-run", log_prints=True)
def refilter_run(run_id: str, config: RefineryConfig, dask_address: str | None = None) -> dict[str, Any]:
    """Re-decide the quality stage of ``run_id`` with ``config.quality`` (see ``refilter_flow``),
    holding the data home's run lock, then balance the run's books again."""
    home = DataHome.resolve(config.home, config.catalog)
    if not (home.run_dir(run_id) / "config.yaml").exists():
        raise InputError(f"no run {run_id} under {home.root}")
    run = RunSpec(run_id=run_id, home=str(home.root), config=load_config(home.run_dir(run_id) / "config.yaml"))
    with home.run_lock(f"a refilter of run {run_id}"), dask_cluster(run.config.dask, dask_address) as address:
        run.catalog.add_new_columns()  # a catalog made by older code gains runs.warnings
        ingest, dedup, quality = (StageMarker(run.stage_dir(s)).read() for s in ("ingest", "dedup", "quality"))
        if ingest is None or dedup is None or quality is None:
            raise RefilterError(f"run {run_id} has no finished quality stage to re-decide")
        sweep_partial_writes(run.stage_dir("quality"))  # what a stopped refilter was writing
        stats = refilter_flow.with_options(task_runner=DaskTaskRunner(address=address))(
            run, ingest, dedup, quality, config.quality)
        refiltered = RunSpec(run_id=run_id, home=run.home, config=load_config(run.run_dir / "config.yaml"))
        stats["books"] = check_books(refiltered, ingest, stats).as_dict()
        run.catalog.record_warnings(run_id, stats["warnings"])
        run.catalog.finish_run(run_id, status="refiltered", **stats["books"])
    return stats
