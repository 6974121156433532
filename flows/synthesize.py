"""synthesize: (query, passage) pairs from a language model, filtered (each rejection with its reason),
hard negatives mined, diversity measured.

It also decides what the run is evaluated on (``evaluation_task``): without titles or query sets
a share of the passages is held out, and their pairs become the evaluation queries instead of
training pairs. Candidates overlapping an evaluation query (the user's query sets and the
headline titles, sampled as evaluate samples them, and the held-out pairs) are rejected as
``decontaminated`` (``synthesize.decontaminate``, :mod:`tasks.synthesize.decontaminate`).
Passages and the filter pool are seeded samples of the corpus chosen on the workers
(:mod:`tasks.synthesize.plan`); the flow holds their doc ids only. With ``synthesize.rephrase``
some training passages are rephrased first (WRAP, :mod:`flows.rephrase`), and the rephrasings are
passages too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from refinery.flows.rephrase import rephrase
from refinery.flows.runtime import HOUR, gather, on_workers, run_stage, select_rows_task
from refinery.storage.location import location
from refinery.storage.selection import draw_selection
from refinery.tasks.runs import RunSpec
from refinery.tasks.books import NO_CORPUS, corpus_is_empty
from refinery.tasks.dataset_version import corpus_dataset
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.evaluate.query_sets import (
    HEADLINE, SYNTHETIC_HELDOUT, builtin_set, builtin_task, frozen_heldout_set, user_set,
)
from refinery.tasks.evaluate.pool import Keyed, choose_pool
from refinery.tasks.evaluate.sampling import embeddings_of, pool_of, sample_corpus
from refinery.tasks.selection import selection_summary
from refinery.tasks.evaluate.shard_tasks import load_query_set
from refinery.tasks.synthesize.plan import (
    PASSAGE_SALT, Passages, choose_passages, diversity_rows, generation_slices, heldout_size, heldout_tail,
    pairs_artifact, passages_wanted, sample_size, selected_passages,
)
from refinery.tasks.synthesize.rephrase import diversity_rows as rephrasing_rows, rephrased_generation_slices
from refinery.tasks.synthesize.shard_tasks import filter_pairs, generate_candidates, prepare_smollm2

# Loading (and de-quantizing) the local LLM once; then an LLM on a slice of passages (PASSAGES_PER_TASK:
# minutes on CPU, or an endpoint's requests with their own retries); the filters over every candidate.
prepare_task = task(prepare_smollm2, name="prepare-generator", task_run_name="de-quantize SmolLM2 into the cache",
                    retries=1, timeout_seconds=HOUR)
generate_task = task(generate_candidates, name="generate-candidates",
                     task_run_name="{generator} passages {start}-{stop}", retries=1, timeout_seconds=4 * HOUR)
load_query_set_task = task(load_query_set, name="load-query-set", task_run_name="query set {source.name}",
                           retries=1, timeout_seconds=HOUR)
filter_task = task(filter_pairs, name="filter-pairs",
                   task_run_name="filters, held-out split, hard negatives, diversity", retries=1,
                   timeout_seconds=4 * HOUR)


@flow(name="synthesize", log_prints=True)
def synthesize_flow(run: RunSpec, ingest: dict[str, Any], quality: dict[str, Any]) -> dict[str, Any]:
    """Pairs from the curated corpus (``quality``'s shards: the night's dataset version, see
    :mod:`refinery.tasks.dataset_version`; ``ingest``'s with ``synthesize.corpus: uncurated``); the
    stage's stats, with the run's ``evaluation_task``."""
    return run_stage(run, "synthesize", lambda out: _synthesize(run, ingest, quality, out))


def _synthesize(run: RunSpec, ingest: dict[str, Any], quality: dict[str, Any], out: Path) -> dict[str, Any]:
    cfg, catalog, run_id = run.config.synthesize, run.catalog, run.run_id
    if corpus_is_empty(quality):
        catalog.put_pairs(run_id, [])
        catalog.put_metrics(run_id, "synthesize", [])
        return {"skipped": NO_CORPUS, "generated": 0, "kept": 0}
    dataset = corpus_dataset(quality)  # the night's dataset version, or None: the run's own corpus
    evaluation_task = builtin_task(run.config.evaluate, catalog, run_id, dataset=dataset)
    corpus, total = quality["corpus_shards"], quality["kept"]
    if cfg.corpus == "uncurated":  # every ingested document, what curation dropped too
        corpus, total = ingest["shards"], ingest["docs"]
    # a dataset's held-out passages, frozen by its first night, are never a later night's passage;
    # the night that holds out draws passages for evaluation besides those it trains on
    frozen = catalog.frozen_tasks(dataset) if dataset else {}
    heldout_frozen = evaluation_task == SYNTHETIC_HELDOUT and SYNTHETIC_HELDOUT in frozen
    held_out = set(catalog.frozen_heldout(dataset).column("doc_id").to_pylist()) if heldout_frozen else set()
    holds_out = evaluation_task == SYNTHETIC_HELDOUT and not heldout_frozen
    extra = heldout_size(cfg, total) if holds_out else 0
    ranked = sample_corpus(on_workers, corpus, total, seed=cfg.seed, salt=PASSAGE_SALT, n=sample_size(cfg, extra))
    usable = [k for k in ranked if k.doc_id not in held_out]
    filter_pool = [k.doc_id for k in ranked]
    selection = None
    if cfg.selection.active:
        chosen, selection = _select_passages(run, usable, corpus, held_out, extra, out, dataset=dataset)
        filter_pool = choose_pool(filter_pool, chosen.doc_ids, len(filter_pool))  # the passages are in the pool
    else:
        chosen = choose_passages(usable, corpus, cfg, out, extra)
    heldout_docs = chosen.doc_ids[len(chosen.doc_ids) - chosen.heldout:] if chosen.heldout else None
    passages = select_rows_task.submit(chosen.shards, chosen.doc_ids, chosen.path, given_order=True).result()
    cache = run.data_home.cache_dir
    local = ("smollm2" in cfg.generators and cfg.passages) or (cfg.rephrase.styles and cfg.rephrase.generator == "smollm2")
    wait_for = [prepare_task.submit(cache, cfg.local_model)] if local else []
    futures = [generate_task.submit(location(passages["path"]), start, stop, generator, cfg, out, cache,
                                    wait_for=wait_for if generator == "smollm2" else [])
               for generator, start, stop in generation_slices(cfg, passages["docs"], chosen.heldout)]
    rephrased = rephrase(run, cfg, location(passages["path"]), passages["docs"] - chosen.heldout, out, wait_for)
    if rephrased and rephrased["path"]:  # WRAP: the rephrasings are passages too
        futures += [generate_task.submit(location(rephrased["path"]), start, stop, generator, cfg, out, cache,
                                         wait_for=wait_for if generator == "smollm2" else [])
                    for generator, start, stop in rephrased_generation_slices(cfg, rephrased["docs"])]
    pool = pool_of(on_workers, run.run_dir / "pools", corpus, filter_pool)
    embeddings = embeddings_of(on_workers, run.run_dir / "embeddings", "base", str(BASE_MODEL_PATH), pool,
                               run.config.evaluate, str(cache))
    clusters = catalog.pool_clusters(run_id, filter_pool, dataset=dataset)
    evaluation = _evaluation_queries(run, evaluation_task, out, dataset=dataset)
    if heldout_frozen:
        evaluation[SYNTHETIC_HELDOUT] = frozen_heldout_set(catalog, dataset, out)
    candidates = gather(futures, "generate queries")
    stats = filter_task.submit(candidates, embeddings, cfg, out, heldout_docs=heldout_docs,
                               heldout_fraction=cfg.heldout_fraction if holds_out and not heldout_docs else None,
                               encoder=run.config.evaluate.encoder, cache_dir=str(cache), clusters=clusters,
                               evaluation_queries=evaluation, exclude_negatives=sorted(held_out),
                               rephrased_passages=rephrased and rephrased["path"]).result()
    catalog.put_pairs(run_id, [stats["pairs_path"]])
    if holds_out and dataset is not None:
        catalog.freeze_heldout(dataset, run_id, stats["pairs_path"])
    catalog.put_metrics(run_id, "synthesize", diversity_rows(stats) + rephrasing_rows(rephrased))
    create_table_artifact(key="synthesized-pairs", **pairs_artifact(run_id, stats, cfg, len(filter_pool)))
    return {**stats, "passages": passages["docs"], "filter_pool_docs": len(filter_pool),
            "evaluation_task": evaluation_task, **({"selection": selection} if selection else {}),
            **({"rephrasings": rephrased} if rephrased else {})}


def _select_passages(run: RunSpec, usable: list[Keyed], corpus: list[str], held_out: set[str], extra: int,
                     out: Path, *, dataset: str | None) -> tuple[Passages, dict[str, Any]]:
    """The training passages drawn by ``synthesize.selection`` (weighted, capped) in SQL over the corpus
    and its attributes, then the uniform held-out ones; the draw's rows go to `selections`."""
    cfg = run.config.synthesize
    held = heldout_tail(usable, cfg, extra)
    drawn = draw_selection([(p, "") for p in corpus], run.catalog.attribute_files(run.run_id, dataset),
                           passages_wanted(cfg), cfg.selection, exclude=sorted(held_out | {k.doc_id for k in held}),
                           what="synthesize.selection")
    table = drawn.pop("chosen")
    run.catalog.put_selection(run.run_id, "passages", table)
    summary = selection_summary(cfg.selection, {**drawn, "chosen": table.num_rows})
    get_run_logger().info("synthesize: %d passages drawn from %d candidates, %s", table.num_rows,
                          drawn["candidates"], summary["described"])
    pairs = zip(table.column("doc_id").to_pylist(), table.column("file").to_pylist())
    return selected_passages(list(pairs), held, corpus, cfg, out), summary


def _evaluation_queries(run: RunSpec, evaluation_task: str | None, out: Path, *, dataset: str | None) -> dict[str, str]:
    """{task: shard of its queries} of what evaluate will score, built as evaluate builds it (same
    samples: ``evaluate.max_queries``, ``evaluate.seed``): each user query set, and the headline
    titles when that is the built-in task (held-out pairs are filter_pairs' own). The headline
    sample of a dataset's first night is frozen: every later night is scored on the same titles."""
    cfg, catalog, run_id = run.config.evaluate, run.catalog, run.run_id
    sets = {}
    for source in cfg.queries:
        loaded = load_query_set_task.submit(source, max_queries=cfg.max_queries, seed=cfg.seed,
                                            out=out / f"queries-{source.name}-sample.parquet").result()
        sets[source.name] = user_set(catalog, run_id, source, loaded, out, dataset=dataset)["path"]
    if evaluation_task == HEADLINE:
        sets[HEADLINE] = builtin_set(catalog, run_id, HEADLINE, cfg, out, dataset=dataset)["path"]
        if dataset is not None:  # the dataset's first night freezes its sample; later nights read it back
            catalog.freeze_queries(dataset, HEADLINE, run_id, sets[HEADLINE])
    return sets
