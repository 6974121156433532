"""quality: heuristic rules, language ID and an optional trained classifier on dedup survivors.

Every score goes to ``doc_attributes`` and every drop (first failing rule) to ``drops``. With
``quality.semdedup`` the documents the rules kept are then semantically deduplicated
(:mod:`tasks.quality.semdedup`, reason ``semdedup``).
``refilter_flow`` re-decides a finished run under new thresholds from the stored scores alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from refinery.flows.runtime import dask_cluster, gather, run_stage
from refinery.storage.location import location
from refinery.tasks.runs import RunSpec
from refinery.storage import DataHome, StageMarker, sweep_partial_writes, write_shard
from refinery.storage.shards import write_json_atomic, write_text_atomic
from refinery.tasks.books import check_books
from refinery.tasks.config import RefineryConfig, dump_config, load_config
from refinery.tasks.quality import QualityConfig, family_fingerprints
from refinery.tasks.quality.guard import SNIPPET_CHARS, drop_rate_warnings_by_source, warning_line
from refinery.tasks.quality.refilter import LATER_STAGES, remove_stale_decisions, rescored_families, unfinish
from refinery.tasks.quality.semdedup import (SEMANTIC_SETTINGS, apply_drops, assign_shard, dedup_group, embed_kept,
                                             fit_centroids, groups_of, index_settings, work_key)
from refinery.tasks.quality.shard_tasks import quality_shard, refilter_shard, shard_paths, train_quality_classifier
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.evaluate.names import embeddings_key, model_fingerprint
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
# Semantic dedup (tasks/quality/semdedup.py): embedding a shard is the long step (~30 docs/s a core
# with torch); the others read a shard or a group of clusters once.
semdedup_embed_task = task(embed_kept, name="semdedup-embed", task_run_name="embed {shard.name}", retries=1,
                           timeout_seconds=2 * 3600)
semdedup_fit_task = task(fit_centroids, name="semdedup-kmeans", task_run_name="k-means on a sample", retries=1,
                         timeout_seconds=3600)
semdedup_assign_task = task(assign_shard, name="semdedup-assign", task_run_name="assign {embeddings.name}",
                            retries=1, timeout_seconds=3600)
semdedup_group_task = task(dedup_group, name="semdedup-group", task_run_name="semdedup cluster group {group}",
                           retries=1, timeout_seconds=3600)
semdedup_apply_task = task(apply_drops, name="semdedup-apply", task_run_name="semdedup {corpus.name}", retries=1,
                           timeout_seconds=3600)


@flow(name="quality", log_prints=True)
def quality_flow(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any]) -> dict[str, Any]:
    """Score and decide every shard ingest wrote, less what dedup dropped."""
    return run_stage(run, "quality", lambda out: _quality(run, ingest, dedup, out))


def _quality(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any], out: Path) -> dict[str, Any]:
    prior = _semantic_prior(run, run.config.quality, out)  # a semdedup the dataset cannot build on fails first
    dedup_drops = location(dedup["drops_path"])
    classifier = (_train_classifier(run, out, ingest["shards"], dedup_drops)
                  if run.config.quality.classifier.enabled else None)
    results = gather(
        quality_shard_task.map([location(p) for p in ingest["shards"]], dedup_drops=unmapped(dedup_drops),
                               out_dir=unmapped(out), cfg=unmapped(run.config.quality),
                               classifier=unmapped(classifier)),
        "quality shards",
    )
    sem = _semdedup(run, run.config.quality, out, [r["shard"] for r in results], [r["corpus"] for r in results],
                    prior)
    run.catalog.replace("doc_attributes", run.run_id, parquet=[r["attributes"] for r in results] + sem["attributes"])
    _register_decisions(run, [r["drops"] for r in results], sem)
    return _summarize(run, {
        "docs": sum(r["docs"] for r in results),
        "kept": sum(r["kept"] for r in results) - sem["dropped"],
        "dropped": sum(r["dropped"] for r in results) + sem["dropped"],
        "corpus_shards": sem["corpus_shards"],
        "semdedup_dropped": sem["dropped"],
        "semdedup_index": sem.get("index"),
        "classifier": classifier,
        "fingerprints": family_fingerprints(run.config.quality),
    })


def _embeddings_dir(run: RunSpec, out: Path) -> Path:
    enc = run.config.evaluate
    return out / "semdedup" / "embeddings-{}".format(embeddings_key(
        "semdedup", model_fingerprint(BASE_MODEL_PATH), backend=enc.encoder, max_seq_length=enc.max_seq_length))


def _semantic_prior(run: RunSpec, cfg: QualityConfig, out: Path) -> dict[str, Any] | None:
    """What semdedup builds on in the run's dataset: the semantic index folders of the versions
    published before this run (oldest first), the first one's centroids and a shard of the
    documents the dataset retired since. None when semdedup is off or no earlier night ran it; a
    ConfigError when the config would cluster or embed differently from those nights."""
    if not cfg.semdedup.enabled:
        return None
    home, dataset = run.data_home, run.config.dataset
    versions = [v["version"] for v in run.catalog.dataset_versions_of(dataset)]
    if run.run_id in versions:  # a refilter of a published night builds on the nights before it
        versions = versions[:versions.index(run.run_id)]
    folders = [(v, home.dataset_semantic_dir(dataset, v)) for v in versions]
    folders = [(v, f) for v, f in folders if (f / SEMANTIC_SETTINGS).exists()]
    if not folders:
        return None
    settings = json.loads((folders[-1][1] / SEMANTIC_SETTINGS).read_text())
    wanted = index_settings(cfg.semdedup, _embeddings_dir(run, out).name)
    if settings != wanted:
        differ = ", ".join(f"{k}: {settings.get(k)!r} -> {wanted[k]!r}" for k in wanted if settings.get(k) != wanted[k])
        raise ConfigError(f"dataset {dataset}'s earlier nights ran semantic dedup with other settings ({differ}); "
                          "keep them (quality.semdedup, evaluate.encoder), or use another dataset name")
    _, retired, _ = run.catalog.dataset_index(dataset)
    return {"folders": [(v, str(f)) for v, f in folders], "centroids": str(folders[0][1] / "centroids.npy"),
            "retired": str(write_shard(retired, out / "semdedup" / "retired.parquet")) if retired.num_rows else None}


def _semdedup(run: RunSpec, cfg: QualityConfig, out: Path, shards: list[str], corpus: list[str],
              prior: dict[str, Any] | None) -> dict[str, Any]:
    """Semantic dedup of the rules' ``corpus`` shards (those of the ingest ``shards``) under
    ``cfg.semdedup``, building on the dataset's earlier nights (``prior``, :func:`_semantic_prior`):
    the corpus shards less its drops, how many it dropped, its drops, dedup_clusters and
    doc_attributes files, and the night's semantic index (``index``: what publish links under the
    dataset). Off: the same shards, nothing dropped."""
    if not cfg.semdedup.enabled:
        return {"corpus_shards": corpus, "dropped": 0, "drops": [], "clusters": [], "attributes": []}
    enc = run.config.evaluate
    embeddings_dir = _embeddings_dir(run, out)
    folders = prior["folders"] if prior else []
    work = out / "semdedup" / work_key(corpus, cfg.semdedup, embeddings_dir, [v for v, _ in folders])
    # a refilter's corpus shard reuses the embeddings of the scoring run's corpus of the same shard
    earlier = [embeddings_dir / f"embeddings-{shard_paths(location(s), out)['corpus'].stem}.parquet" for s in shards]
    embeddings = gather(semdedup_embed_task.map(
        [location(p) for p in corpus], earlier=earlier, model_path=unmapped(str(BASE_MODEL_PATH)),
        out_dir=unmapped(embeddings_dir), batch_size=unmapped(enc.encode_batch_size),
        max_seq_length=unmapped(enc.max_seq_length), backend=unmapped(enc.encoder),
        cache_dir=unmapped(str(run.data_home.cache_dir))), "semdedup: embed")
    fit = semdedup_fit_task.submit(embeddings, cfg.semdedup, work / "centroids.npy",
                                   prior["centroids"] if prior else None).result()
    if not fit["clusters"]:  # nothing kept to deduplicate
        return {"corpus_shards": corpus, "dropped": 0, "drops": [], "clusters": [], "attributes": []}
    assigned = gather(semdedup_assign_task.map([Path(p) for p in embeddings], centroids=unmapped(Path(fit["centroids"])),
                                               out_dir=unmapped(work)), "semdedup: assign clusters")
    groups = gather(semdedup_group_task.map(
        [[files[j] for files in assigned] for j in range(groups_of(fit["clusters"]))], cfg=unmapped(cfg.semdedup),
        out_dir=unmapped(work), group=list(range(groups_of(fit["clusters"]))), prior=unmapped(folders),
        retired=unmapped(prior["retired"] if prior else None)), "semdedup: clusters")
    drops = [g["drops"] for g in groups]
    kept = gather(semdedup_apply_task.map([location(p) for p in corpus], drops=unmapped(drops), out_dir=unmapped(work)),
                  "semdedup: corpus")
    how = (f"the dataset's {fit['clusters']} clusters; compared with what {len(folders)} earlier nights kept" if prior
           else f"{fit['clusters']} clusters fitted on {fit['sample']}")
    get_run_logger().info("semdedup: %d of %d kept documents dropped (%s)", sum(k["dropped"] for k in kept),
                          fit["docs"], how)
    settings = write_json_atomic(index_settings(cfg.semdedup, embeddings_dir.name), work / SEMANTIC_SETTINGS)
    return {"corpus_shards": [k["corpus"] for k in kept], "dropped": sum(k["dropped"] for k in kept), "drops": drops,
            "clusters": [g["clusters"] for g in groups], "attributes": [g["attributes"] for g in groups],
            "index": [str(settings), fit["centroids"], *(g["kept"] for g in groups)]}


def _register_decisions(run: RunSpec, rule_drops: list[str], sem: dict[str, Any]) -> None:
    """The quality stage's drops (the rules' and semdedup's) and semdedup's dedup_clusters rows
    (kind 'semantic', replaced even when it is off, so no earlier decision outlives it)."""
    run.catalog.replace("drops", run.run_id, parquet=rule_drops + sem["drops"], where={"stage": "quality"})
    run.catalog.replace("dedup_clusters", run.run_id, parquet=sem["clusters"], where={"kind": "semantic"})


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
    # semdedup decides again over the new corpus (its embeddings reused): the old decisions named
    # kept documents that the new thresholds may drop
    sem = _semdedup(refiltered, thresholds, out, [r["shard"] for r in results], [r["corpus"] for r in results],
                    _semantic_prior(refiltered, thresholds, out))
    run.catalog.replace("doc_attributes", run.run_id, parquet=[
        shard_paths(location(p), out)["attributes"] for p in ingest["shards"]] + sem["attributes"])
    _register_decisions(run, [r["drops"] for r in results], sem)
    stats = _summarize(refiltered, {**quality, "kept": sum(r["kept"] for r in results) - sem["dropped"],
                                    "dropped": sum(r["dropped"] for r in results) + sem["dropped"],
                                    "corpus_shards": sem["corpus_shards"], "semdedup_dropped": sem["dropped"],
                                    "semdedup_index": sem.get("index"),
                                    "refiltered": True})
    write_text_atomic(dump_config(refiltered.config), run.run_dir / "config.yaml")
    run.catalog.update_run_config(run.run_id, refiltered.config.model_dump(mode="json"))
    StageMarker(out).write(stats)
    remove_stale_decisions(out, [*(r["corpus"] for r in results), *(r["drops"] for r in results)])
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
