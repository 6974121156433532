"""synthesize: (query, passage) pairs from a language model, consistency-filtered, hard negatives mined.

It also decides what the run is evaluated on (``evaluation_task``): without titles a share of the
passages is held out, and their pairs become the evaluation queries instead of training pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import xxhash
from prefect import flow
from prefect.artifacts import create_table_artifact

from refinery.flows.accounting import NO_CORPUS, corpus_is_empty
from refinery.flows.evaluate import SYNTHETIC_HELDOUT, embeddings_of, evaluation_task
from refinery.flows.runtime import RunSpec, gather, run_stage
from refinery.storage import StageMarker, read_shards, write_shard
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.synthesize.shard_tasks import PASSAGES_PER_TASK, filter_pairs, generate_candidates, prepare_smollm2


def _passages(run: RunSpec, corpus_shards: list[str], out: Path) -> tuple[Path, int]:
    """Choose passages by a seeded hash of doc_id (stable, spread over the corpus); body text only."""
    cfg = run.config.synthesize
    corpus = read_shards(sorted(corpus_shards), ["doc_id", "text"])
    keys = [xxhash.xxh3_64_intdigest(d.encode(), seed=cfg.seed) for d in corpus.column("doc_id").to_pylist()]
    wanted = max(cfg.passages if "smollm2" in cfg.generators else 0,
                 cfg.inverse_cloze_passages if "inverse_cloze" in cfg.generators else 0)
    order = sorted(range(corpus.num_rows), key=keys.__getitem__)[:wanted]
    chosen = corpus.take(pa.array(order, pa.int64()))
    return write_shard(chosen, out / "passages.parquet"), chosen.num_rows


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
    task = evaluation_task(run)
    corpus = quality["corpus_shards"]
    passages, n = _passages(run, corpus, out)
    cache = run.data_home.cache_dir / "smollm2"
    wait_for = [prepare_smollm2.submit(cache)] if "smollm2" in cfg.generators and cfg.passages else []
    futures = []
    for generator in cfg.generators:
        count = min(n, cfg.passages if generator == "smollm2" else cfg.inverse_cloze_passages)
        step = PASSAGES_PER_TASK[generator]
        futures += [generate_candidates.submit(passages, a, min(a + step, count), generator, cfg, out, cache,
                                               wait_for=wait_for if generator == "smollm2" else [])
                    for a in range(0, count, step)]
    embeddings = embeddings_of(run, "base", str(BASE_MODEL_PATH), corpus)
    candidates = gather(futures, "generate queries")
    stats = filter_pairs.submit(candidates, embeddings, cfg, out,
                                heldout_fraction=cfg.heldout_fraction if task == SYNTHETIC_HELDOUT else None).result()
    catalog.replace("pairs", run.run_id, parquet=[stats["pairs_path"]])
    rows = [(g, k, v) for g, d in stats["diversity"].items() for k, v in d.items()]
    catalog.replace("metrics", run.run_id, where={"stage": "synthesize"}, rows=pa.table({
        "stage": ["synthesize"] * len(rows), "model": [r[0] for r in rows], "task": ["pairs"] * len(rows),
        "metric": [r[1] for r in rows], "value": [float(r[2]) for r in rows]}))
    create_table_artifact(
        key="synthesized-pairs",
        table=[{"generator": g, **v, **stats["diversity"].get(g, {})} for g, v in stats["by_generator"].items()],
        description=f"Run {run.run_id}: {stats['kept']} of {stats['generated']} candidate pairs kept "
                    f"(passage in the base model's top {cfg.consistency_top_k}); {stats['heldout_pairs']} of them "
                    f"held out for evaluation.",
    )
    return {**stats, "passages": n, "evaluation_task": task}


@flow(name="synthesize", log_prints=True)
def synthesize_flow(run: RunSpec) -> dict[str, Any]:
    return run_stage(run, "synthesize", lambda out: _synthesize(run, out))
