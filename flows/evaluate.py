"""evaluate: query → document retrieval, base vs tuned vs BM25 vs hybrid, one task per query set.

The query sets (:mod:`tasks.evaluate.query_sets`): the user's own, one built-in set (titles, or
the synthetic pairs synthesize held out) and, when the documents have labels, the same-label
task. At most ``evaluate.max_queries`` queries of a set are scored, against a pool of documents:
every relevant document of the scored queries plus seeded distractors, ``evaluate.pool_docs`` in
all, the same for every task and model. Only the pool is read and embedded, once per model, on
the workers. Model 'hybrid' fuses BM25 and the tuned model with a weight fitted on the train
stage's dev split, on a worker, from the dev pairs alone (:mod:`tasks.evaluate.fusion`). Model
'tuned' of each task gets paired bootstrap intervals of its difference to base and to BM25,
'hybrid' of its difference to tuned and to BM25 (:mod:`tasks.evaluate.bootstrap`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import HOUR, on_workers, run_stage
from refinery.tasks.runs import RunSpec
from refinery.tasks.books import NO_CORPUS, corpus_is_empty
from refinery.tasks.dataset_version import corpus_dataset
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.evaluate.fusion import HYBRID, dev_split_missing
from refinery.tasks.evaluate.labels import SAME_LABEL
from refinery.tasks.evaluate.pool import choose_pool
from refinery.tasks.evaluate.query_sets import (
    HEADLINE, SYNTHETIC_HELDOUT, builtin_set, heldout_cuts, label_set, user_set,
)
from refinery.tasks.evaluate.sampling import POOL_SALT, embeddings_of, pool_of, sample_corpus
from refinery.tasks.evaluate.shard_tasks import fit_fusion_weight, load_query_set, score_retrieval
from refinery.tasks.evaluate.summary import evaluation_artifact, metric_rows, stage_stats
from refinery.tasks.train.promotion import PROMOTED

load_query_set_task = task(load_query_set, name="load-query-set", task_run_name="query set {source.name}",
                           retries=1, timeout_seconds=HOUR)
# The dev split's queries and positives embedded once with the tuned model, BM25 over them: minutes at most.
fusion_task = task(fit_fusion_weight, name="fit-fusion-weight", task_run_name="fit the hybrid's weight on dev",
                   retries=1, timeout_seconds=HOUR)
# Every query set against the whole pool, every model (queries encoded, BM25 indexed): hours at most.
score_task = task(score_retrieval, name="score-retrieval", task_run_name="retrieval: {models}", retries=1,
                  timeout_seconds=4 * HOUR)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(run: RunSpec, quality: dict[str, Any], synthesize: dict[str, Any],
                  train: dict[str, Any]) -> dict[str, Any]:
    """Score the run's query sets on the curated corpus (``quality``'s shards: the night's dataset
    version, see :mod:`refinery.tasks.dataset_version`), with the built-in set
    synthesize chose and the model train fine-tuned; the stage's stats."""
    return run_stage(run, "evaluate", lambda out: _evaluate(run, quality, synthesize, train, out))


def _evaluate(run: RunSpec, quality: dict[str, Any], synthesize: dict[str, Any], train: dict[str, Any],
              out: Path) -> dict[str, Any]:
    cfg, catalog, run_id = run.config.evaluate, run.catalog, run.run_id
    dataset = corpus_dataset(quality)  # the night's dataset version, or None: the run's own corpus
    if corpus_is_empty(quality):
        catalog.put_metrics(run_id, "evaluate", [])
        return {"skipped": NO_CORPUS}
    sets = {}
    for source in cfg.queries:  # sampled on a worker, matched to the run's documents here
        loaded = load_query_set_task.submit(source, max_queries=cfg.max_queries, seed=cfg.seed,
                                            out=out / f"queries-{source.name}-sample.parquet").result()
        sets[source.name] = user_set(catalog, run_id, source, loaded, out, dataset=dataset)
    if builtin := synthesize.get("evaluation_task", HEADLINE):
        sets[builtin] = builtin_set(catalog, run_id, builtin, cfg, out, dataset=dataset)
    tasks = list(sets)
    corpus = quality["corpus_shards"]
    ranked = sample_corpus(on_workers, corpus, quality["kept"], seed=cfg.seed, salt=POOL_SALT, n=cfg.pool_docs)
    required = [d for s in sets.values() for rel in s["relevant"] for d in rel]
    pool_ids = choose_pool((k.doc_id for k in ranked), required, cfg.pool_docs)
    pool = pool_of(on_workers, run.run_dir / "pools", corpus, pool_ids)
    skipped = {}
    if cfg.same_label:  # its queries and answers are the pool's documents: no document added, none embedded
        labelled = label_set(catalog, run_id, pool_ids, cfg, out, dataset=dataset)
        if isinstance(labelled, str):
            skipped[SAME_LABEL] = labelled
        else:
            sets[SAME_LABEL] = labelled
            tasks.append(SAME_LABEL)
    cuts = {SYNTHETIC_HELDOUT: heldout_cuts(catalog, run_id, out, dataset=dataset)} if SYNTHETIC_HELDOUT in sets else None
    model_paths = {"base": str(BASE_MODEL_PATH)}
    models, fusion = list(cfg.models), {}
    if train.get("skipped"):  # no model tonight: the base model and BM25 are still scored
        fusion = {"skipped": dev_split_missing(train)} if HYBRID in models else {}
        models = [m for m in models if m not in ("tuned", HYBRID)] or ["base"]
    if "tuned" in models:
        if not train.get("model_path"):
            raise RuntimeError(f"run {run_id}: evaluating 'tuned' needs a trained model")
        model_paths["tuned"] = train["model_path"]
        if promoted := _promoted(run):  # what the night's model would replace: the promotion gate's comparison
            model_paths[PROMOTED] = promoted
            models.append(PROMOTED)
    if HYBRID in models and (why := dev_split_missing(train)):
        models.remove(HYBRID)
        fusion = {"skipped": why}
    scorable = {t: s["path"] for t, s in sets.items() if s["counts"]["scored"] and not s.get("labels")}
    by_label = {t: s["path"] for t, s in sets.items() if s["counts"]["scored"] and s.get("labels")}
    scored: dict[str, Any] = {"metrics": {}, "per_query": {}}
    if scorable or by_label:
        cache = str(run.data_home.cache_dir)
        fitting = None
        if HYBRID in models:  # fitted on the dev split alone, on a worker, while the pool is embedded
            model_paths["tuned"] = train["model_path"]
            fitting = fusion_task.submit(train["dev_pairs_path"], train["model_path"], cfg, cache,
                                         train.get("dev_distractors_path"))
        embeddings = {m: embeddings_of(on_workers, run.run_dir / "embeddings", m, p, pool, cfg, cache)
                      for m, p in model_paths.items() if m in models or (m == "tuned" and HYBRID in models)}
        if fitting is not None:
            fusion = fitting.result()
        scored = score_task.submit(scorable, pool[1], embeddings, model_paths, models, cfg, cache, cuts,
                                   by_label, str(out), fusion.get("weight")).result()
    catalog.put_metrics(run_id, "evaluate", metric_rows(tasks, sets, scored["metrics"]))
    create_table_artifact(key="evaluation", **evaluation_artifact(
        run_id, tasks, sets, scored["metrics"], skipped, pool_docs=len(pool_ids), corpus_docs=quality["kept"], cfg=cfg,
        fusion=fusion))
    return stage_stats(tasks, sets, scored, skipped, pool=pool, pool_docs=len(pool_ids), corpus_docs=quality["kept"],
                       corpus_of=dataset, fusion=fusion, frozen=catalog.frozen_tasks(dataset) if dataset else {})


def _promoted(run: RunSpec) -> str | None:
    """The folder of the dataset's promoted model, when it has one and the run's model is to be gated
    (a resumed run whose own model was promoted already is not compared with itself)."""
    if not run.promotes:
        return None
    folder = run.data_home.promoted_model_dir(run.config.dataset)
    promoted = run.catalog.promoted_model(run.config.dataset)
    if promoted is None or promoted["run_id"] == run.run_id or not folder.is_dir():
        return None
    return str(folder)
