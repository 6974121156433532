"""synthesize: (query, passage) pairs from a language model, filtered (each rejection with its reason),
hard negatives mined, diversity measured.

It also decides what the run is evaluated on (``evaluation_task``): without titles or query sets
a share of the passages is held out, and their pairs become the evaluation queries instead of
training pairs. Passages and the filter pool are seeded samples of the corpus chosen on the
workers (:mod:`tasks.evaluate.pool`); the flow holds their doc ids only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow
from prefect.artifacts import create_table_artifact

from refinery.tasks.books import NO_CORPUS, corpus_is_empty
from refinery.flows.evaluate import SYNTHETIC_HELDOUT, builtin_task, embeddings_of, pool_of, sample_corpus
from refinery.flows.runtime import RunSpec, gather, run_stage
from refinery.storage import StageMarker
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.evaluate.names import content_key
from refinery.tasks.evaluate.shard_tasks import select_rows
from refinery.tasks.synthesize.shard_tasks import (
    ALL_GENERATORS, PASSAGES_PER_TASK, filter_pairs, generate_candidates, prepare_smollm2,
)

# Passages are the documents of smallest xxh3(doc_id, seed) (no salt: the draw of every run so far).
PASSAGE_SALT = ""
# The dedup cluster of each filter-pool document ($2) that shares it with another pool document.
POOL_CLUSTERS_SQL = """
SELECT doc_id, cluster_id FROM dedup_clusters
WHERE run_id = $1 AND doc_id IN (SELECT unnest($2::VARCHAR[]))
QUALIFY count(*) OVER (PARTITION BY cluster_id) > 1
ORDER BY doc_id"""


def _passages(run: RunSpec, corpus_shards: list[str], total: int, out: Path) -> tuple[Path, int, list[str]]:
    """Choose passages by a seeded hash of doc_id (stable, spread over the corpus); body text only.

    One sample serves both: the first passages in key order, and the filter pool (the passages'
    documents plus the next documents in key order, ``filter_pool_docs`` in all). Returns the
    passages shard (named by its documents and the config), its size and the filter pool's ids.
    """
    cfg = run.config.synthesize
    wanted = max(cfg.passages if set(cfg.generators) - {"inverse_cloze"} else 0,
                 cfg.inverse_cloze_passages if "inverse_cloze" in cfg.generators else 0)
    ranked = sample_corpus(run, corpus_shards, total, seed=cfg.seed, salt=PASSAGE_SALT,
                           n=max(wanted, cfg.filter_pool_docs))
    chosen = ranked[:wanted]
    ids = [k.doc_id for k in chosen]
    shards = sorted(corpus_shards)
    holding = [shards[i] for i in sorted({k.shard for k in chosen})]
    path = out / f"passages-{content_key(ids, cfg.model_dump_json())}.parquet"
    written = select_rows.submit(holding, ids, path, given_order=True).result()
    return Path(written["path"]), written["docs"], [k.doc_id for k in ranked]


def _synthesize(run: RunSpec, out: Path) -> dict[str, Any]:
    cfg = run.config.synthesize
    quality = StageMarker(run.stage_dir("quality")).read()
    if quality is None:
        raise RuntimeError(f"run {run.run_id}: synthesize needs a finished quality stage")
    catalog = run.catalog
    if corpus_is_empty(quality):
        catalog.replace("pairs", run.run_id)
        catalog.replace("metrics", run.run_id, where={"stage": "synthesize"})
        return {"skipped": NO_CORPUS, "generated": 0, "kept": 0}
    task = builtin_task(run)
    corpus, total = quality["corpus_shards"], quality["kept"]
    if cfg.corpus == "uncurated":  # every ingested document, what curation dropped too
        ingest = StageMarker(run.stage_dir("ingest")).read()
        corpus, total = ingest["shards"], ingest["docs"]
    passages, n, filter_pool = _passages(run, corpus, total, out)
    cache = run.data_home.cache_dir
    wait_for = [prepare_smollm2.submit(cache, cfg.local_model)] if "smollm2" in cfg.generators and cfg.passages else []
    futures = []
    for generator in cfg.generators:
        count = min(n, cfg.inverse_cloze_passages if generator == "inverse_cloze" else cfg.passages)
        step = PASSAGES_PER_TASK[generator]
        futures += [generate_candidates.submit(passages, a, min(a + step, count), generator, cfg, out, cache,
                                               wait_for=wait_for if generator == "smollm2" else [])
                    for a in range(0, count, step)]
    pool = pool_of(run, corpus, filter_pool)
    embeddings = embeddings_of(run, "base", str(BASE_MODEL_PATH), pool)
    clusters = {r["doc_id"]: r["cluster_id"]
                for r in catalog.query(POOL_CLUSTERS_SQL, [run.run_id, filter_pool]).to_pylist()}
    candidates = gather(futures, "generate queries")
    stats = filter_pairs.submit(candidates, embeddings, cfg, out,
                                heldout_fraction=cfg.heldout_fraction if task == SYNTHETIC_HELDOUT else None,
                                encoder=run.config.evaluate.encoder,
                                cache_dir=str(run.data_home.cache_dir), clusters=clusters).result()
    catalog.replace("pairs", run.run_id, parquet=[stats["pairs_path"]])
    rows = [(g, k, v) for g, d in stats["diversity"].items() for k, v in d.items()]
    catalog.replace("metrics", run.run_id, where={"stage": "synthesize"}, rows=pa.table({
        "stage": ["synthesize"] * len(rows), "model": [r[0] for r in rows], "task": ["pairs"] * len(rows),
        "metric": [r[1] for r in rows], "value": [float(r[2]) for r in rows]}))
    everything = {"generated": stats["generated"], "kept": stats["kept"], **stats["dropped"]}
    create_table_artifact(
        key="synthesized-pairs",
        table=[{"generator": g, **v, **stats["diversity"].get(g, {})}
               for g, v in [*stats["by_generator"].items(), (ALL_GENERATORS, everything)]],
        description=f"Run {run.run_id}: {stats['kept']} of {stats['generated']} candidate pairs kept "
                    f"(passage in the base model's top {cfg.consistency_top_k} of a pool of {len(filter_pool)} "
                    f"documents; the filter_* columns count the candidates each filter rejected); "
                    f"{stats['heldout_pairs']} of them held out for evaluation, {stats['with_negatives']} with a "
                    "hard negative.",
    )
    return {**stats, "passages": n, "filter_pool_docs": len(filter_pool), "evaluation_task": task}


@flow(name="synthesize", log_prints=True)
def synthesize_flow(run: RunSpec, ingest: dict[str, Any], quality: dict[str, Any]) -> dict[str, Any]:
    return run_stage(run, "synthesize", lambda out: _synthesize(run, out))
