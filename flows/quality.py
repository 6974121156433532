"""quality: heuristic rules, language ID and an optional trained classifier on dedup survivors.

Every score goes to ``doc_attributes`` and every drop (first failing rule) to ``drops``.
``refilter_flow`` re-decides a finished run under new thresholds from the stored scores alone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import RunSpec, gather, run_stage
from refinery.storage import StageMarker, write_shard
from refinery.tasks.config import dump_config
from refinery.tasks.quality import QualityConfig, decision_sql, family_fingerprints

CLASSIFIER_NAME = "quality_classifier"
DOWNSTREAM = ("synthesize", "train", "evaluate")


def _positives(run: RunSpec, out: Path) -> str:
    """The classifier's positives: a path as configured, or the answer to its SQL as a shard."""
    source = run.config.quality.classifier.positives
    if not source:
        raise ValueError("quality.classifier.enabled needs quality.classifier.positives (a file, a folder or sql:...)")
    if not source.startswith("sql:"):
        return source
    answer = run.catalog.user_query(source.removeprefix("sql:"))
    if "text" not in answer.column_names:
        raise ValueError("quality.classifier.positives SQL must return a `text` column")
    return str(write_shard(answer.select(["text"]), out / "classifier" / "positives.parquet"))


def _train_classifier(run: RunSpec, out: Path, shards: list[str], dedup_drops: Path) -> str:
    from refinery.tasks.quality.shard_tasks import train_quality_classifier

    cfg = run.config.quality.classifier
    report = train_quality_classifier.submit(_positives(run, out), shards, dedup_drops, cfg,
                                             out / "classifier" / "model.bin").result()
    catalog = run.catalog
    catalog.replace("models", run.run_id, where={"name": CLASSIFIER_NAME}, rows=pa.table({
        "name": [CLASSIFIER_NAME], "path": [report["path"]], "base": ["fasttext"],
        "created_at": [datetime.now(timezone.utc)]}))
    catalog.replace("metrics", run.run_id, where={"stage": "quality"}, rows=pa.table({
        "stage": ["quality"] * 2, "model": [CLASSIFIER_NAME] * 2, "task": ["classifier_holdout"] * 2,
        "metric": ["accuracy", "auc"], "value": [report["accuracy"], report["auc"]]}))
    get_run_logger().info("quality classifier: held-out accuracy %.3f, AUC %.3f (%d positives, %d negatives)",
                          report["accuracy"], report["auc"], report["positives"], report["negatives"])
    return report["path"]


def _quality(run: RunSpec, out: Path) -> dict[str, Any]:
    from refinery.tasks.quality.shard_tasks import quality_shard

    ingest = StageMarker(run.stage_dir("ingest")).read()
    dedup = StageMarker(run.stage_dir("dedup")).read()
    if ingest is None or dedup is None:
        raise RuntimeError(f"run {run.run_id}: quality needs finished ingest and dedup stages")
    shards = [Path(p) for p in ingest["shards"]]
    dedup_drops = Path(dedup["drops_path"])
    classifier = (_train_classifier(run, out, ingest["shards"], dedup_drops)
                  if run.config.quality.classifier.enabled else None)
    results = gather(
        quality_shard.map(shards, dedup_drops=unmapped(dedup_drops), out_dir=unmapped(out),
                          cfg=unmapped(run.config.quality), classifier=unmapped(classifier)),
        "quality shards",
    )
    catalog = run.catalog
    catalog.replace("doc_attributes", run.run_id, parquet=[r["attributes"] for r in results])
    catalog.replace("drops", run.run_id, parquet=[r["drops"] for r in results], where={"stage": "quality"})
    return _summarize(run, {
        "docs": sum(r["docs"] for r in results),
        "kept": sum(r["kept"] for r in results),
        "dropped": sum(r["dropped"] for r in results),
        "corpus_shards": [r["corpus"] for r in results],
        "classifier": classifier,
        "fingerprints": family_fingerprints(run.config.quality),
    })


def _summarize(run: RunSpec, stats: dict[str, Any]) -> dict[str, Any]:
    by_reason = run.catalog.query(
        "SELECT reason, count(*) AS docs FROM drops WHERE run_id = ? AND stage = 'quality'"
        " GROUP BY reason ORDER BY docs DESC, reason", [run.run_id]).to_pylist()
    stats["drops_by_reason"] = {r["reason"]: r["docs"] for r in by_reason}
    create_table_artifact(
        key="quality-drops", table=by_reason or [{"reason": "(none)", "docs": 0}],
        description=f"Run {run.run_id}: {stats['kept']} of {stats['docs']} dedup survivors kept; drops by rule.",
    )
    return stats


@flow(name="quality", log_prints=True)
def quality_flow(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any]) -> dict[str, Any]:
    return run_stage(run, "quality", lambda out: _quality(run, out))


class RefilterError(ValueError):
    """The new config changes how scores are computed, not only thresholds: a new run is needed."""


@flow(name="refilter", log_prints=True)
def refilter_flow(run: RunSpec, quality: QualityConfig) -> dict[str, Any]:
    """Re-decide a finished quality stage under new thresholds, in DuckDB, from stored attributes.

    No rule is evaluated again. The quality drops and corpus shards are replaced, the run's config
    is updated, and the later stages are marked unfinished so ``refinery run --resume`` redoes them
    on the new corpus.
    """
    from refinery.tasks.quality.shard_tasks import write_corpus_shard

    done = StageMarker(run.stage_dir("quality")).read()
    ingest = StageMarker(run.stage_dir("ingest")).read()
    dedup = StageMarker(run.stage_dir("dedup")).read()
    if done is None or ingest is None or dedup is None:
        raise RefilterError(f"run {run.run_id} has no finished quality stage to re-decide")
    old, new = done["fingerprints"], family_fingerprints(quality)
    changed = sorted(f for f in set(old) | set(new) if f in new and old.get(f) != new[f])
    if changed:
        raise RefilterError(f"these families compute different scores under the new config and need a new run: "
                            f"{', '.join(changed)}")
    catalog = run.catalog
    scored = f"(SELECT doc_id, name, value FROM doc_attributes WHERE run_id = '{run.run_id}')"
    decisions = catalog.query(f"SELECT doc_id, reason FROM ({decision_sql(quality, attributes=scored)}) "
                              "WHERE reason IS NOT NULL ORDER BY doc_id")
    out = run.stage_dir("quality")
    drops_path = write_shard(decisions.append_column("stage", pa.array(["quality"] * decisions.num_rows, pa.string())),
                             out / "drops-refilter.parquet")
    corpus = gather(write_corpus_shard.map([Path(p) for p in ingest["shards"]],
                                           dedup_drops=unmapped(Path(dedup["drops_path"])),
                                           quality_drops=unmapped(drops_path), out_dir=unmapped(out)),
                    "rewrite corpus shards")
    catalog.replace("drops", run.run_id, parquet=[drops_path], where={"stage": "quality"})
    config = run.config.model_copy(update={"quality": quality})
    refiltered = RunSpec(run_id=run.run_id, home=run.home, config=config)
    stats = _summarize(refiltered, {**done, "kept": sum(c["kept"] for c in corpus), "dropped": decisions.num_rows,
                                    "corpus_shards": [c["corpus"] for c in corpus], "refiltered": True})
    (run.run_dir / "config.yaml").write_text(dump_config(config))
    catalog.execute_write("UPDATE runs SET config = ? WHERE run_id = ?",
                          [config.model_dump_json(), run.run_id])
    for stage in DOWNSTREAM:
        StageMarker(run.stage_dir(stage)).path.unlink(missing_ok=True)
    StageMarker(out).write(stats)
    return stats
