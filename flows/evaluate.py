"""evaluate: query → document retrieval over the curated corpus, base vs tuned vs BM25.

The queries are the documents' titles when the corpus has them (task ``headline``), else the
synthetic pairs the synthesize stage held out from training (task ``synthetic_heldout``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from refinery.flows.accounting import NO_CORPUS, corpus_is_empty
from refinery.flows.runtime import RunSpec, gather, run_stage
from refinery.storage import StageMarker, write_shard
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.embedding_tasks import embed_shard
from refinery.tasks.evaluate.shard_tasks import score_retrieval

HEADLINE = "headline"
SYNTHETIC_HELDOUT = "synthetic_heldout"

# Every ingested document with its dedup cluster (a document in no cluster is its own).
_CLUSTERS = """
kept AS (SELECT doc_id FROM corpus WHERE run_id = $1),
cluster AS (
    SELECT d.doc_id, d.title, coalesce(c.cluster_id, d.doc_id) AS cluster_id
    FROM documents d LEFT JOIN dedup_clusters c ON c.run_id = d.run_id AND c.doc_id = d.doc_id
    WHERE d.run_id = $1
)"""

QUERIES_SQL = {
    # Titles of every ingested document whose dedup cluster has a member in the curated corpus;
    # all kept members of that cluster are relevant. Identical titles are one query.
    HEADLINE: f"""
WITH {_CLUSTERS}
SELECT q.title AS query, list(DISTINCT m.doc_id ORDER BY m.doc_id) AS relevant
FROM cluster q JOIN cluster m USING (cluster_id) JOIN kept k ON k.doc_id = m.doc_id
WHERE q.title IS NOT NULL AND trim(q.title) <> ''
GROUP BY q.title ORDER BY q.title
""",
    # Kept synthetic queries of held-out passages (never trained on); the passage's document and
    # the kept members of its dedup cluster are relevant. Identical queries are one query.
    SYNTHETIC_HELDOUT: f"""
WITH {_CLUSTERS},
heldout AS (SELECT DISTINCT query, doc_id FROM pairs WHERE run_id = $1 AND kept AND split = 'heldout')
SELECT h.query, list(DISTINCT m.doc_id ORDER BY m.doc_id) AS relevant
FROM heldout h JOIN cluster q ON q.doc_id = h.doc_id JOIN cluster m USING (cluster_id)
JOIN kept k ON k.doc_id = m.doc_id
GROUP BY h.query ORDER BY h.query
""",
}
# (doc_id, query) of held-out pairs: the query is cut from its document before ranking.
HELDOUT_CUTS_SQL = """
SELECT DISTINCT doc_id, query FROM pairs WHERE run_id = $1 AND kept AND split = 'heldout' ORDER BY ALL
"""
DESCRIPTIONS = {
    HEADLINE: "headline → article retrieval",
    SYNTHETIC_HELDOUT: "held-out synthetic query → document retrieval",
}


def evaluation_task(run: RunSpec) -> str:
    """What the run is evaluated on: ``evaluate.task``, with 'auto' resolved on the curated corpus.

    Called by synthesize, which holds pairs out only for 'synthetic_heldout' and records the
    choice; evaluate then follows the record.
    """
    chosen = run.config.evaluate.task
    if chosen == SYNTHETIC_HELDOUT:
        return chosen
    (titles,) = run.catalog.query(f"SELECT count(*) AS n FROM ({QUERIES_SQL[HEADLINE]})", [run.run_id]).to_pylist()
    if titles["n"]:
        return HEADLINE
    if chosen == HEADLINE:
        raise ValueError(f"run {run.run_id}: evaluate.task is 'headline' but no curated document has a title "
                         "(use 'auto' or 'synthetic_heldout')")
    return SYNTHETIC_HELDOUT


def embeddings_of(run: RunSpec, model: str, model_path: str, corpus_shards: list[str]) -> list[str]:
    """Embed the curated corpus with one model on the workers (reused when already there)."""
    out = run.run_dir / "embeddings" / model
    cfg = run.config.evaluate
    return gather(embed_shard.map([Path(p) for p in corpus_shards], model_path=unmapped(model_path),
                                  model_name=unmapped(model), out_dir=unmapped(out),
                                  batch_size=unmapped(cfg.encode_batch_size),
                                  max_seq_length=unmapped(cfg.max_seq_length)),
                  f"embed corpus ({model})")


def _evaluate(run: RunSpec, out: Path) -> dict[str, Any]:
    cfg = run.config.evaluate
    quality = StageMarker(run.stage_dir("quality")).read()
    synth = StageMarker(run.stage_dir("synthesize")).read() or {}
    train = StageMarker(run.stage_dir("train")).read()
    if quality is None:
        raise RuntimeError(f"run {run.run_id}: evaluate needs a finished quality stage")
    if corpus_is_empty(quality):
        run.catalog.replace("metrics", run.run_id, where={"stage": "evaluate"})
        return {"skipped": NO_CORPUS}
    task = synth.get("evaluation_task", HEADLINE)
    corpus = quality["corpus_shards"]
    queries = run.catalog.query(QUERIES_SQL[task], [run.run_id])
    if not queries.num_rows:
        raise RuntimeError(f"run {run.run_id}: no {task} queries to score"
                           + (" (no kept pair was held out)" if task == SYNTHETIC_HELDOUT else ""))
    queries_path = write_shard(queries, out / "queries.parquet")
    cuts = (write_shard(run.catalog.query(HELDOUT_CUTS_SQL, [run.run_id]), out / "heldout_cuts.parquet")
            if task == SYNTHETIC_HELDOUT else None)
    model_paths = {"base": str(BASE_MODEL_PATH)}
    if "tuned" in cfg.models:
        if not train or not train.get("model_path"):
            raise RuntimeError(f"run {run.run_id}: evaluating 'tuned' needs a trained model")
        model_paths["tuned"] = train["model_path"]
    embeddings = {m: embeddings_of(run, m, p, corpus) for m, p in model_paths.items() if m in cfg.models}
    metrics = score_retrieval.submit(queries_path, corpus, embeddings, model_paths, list(cfg.models), cfg,
                                     task, cuts).result()
    n = sum(len(v) for v in metrics.values())
    rows = pa.table({
        "stage": ["evaluate"] * n,
        "model": [m for m, v in metrics.items() for _ in v],
        "task": [task] * n,
        "metric": [k for v in metrics.values() for k in v],
        "value": [x for v in metrics.values() for x in v.values()],
    })
    run.catalog.replace("metrics", run.run_id, rows=rows, where={"stage": "evaluate"})
    create_table_artifact(
        key="evaluation", table=[{"model": m, **v} for m, v in metrics.items()],
        description=f"Run {run.run_id}: {DESCRIPTIONS[task]}, {queries.num_rows} queries over "
                    f"the {quality['kept']} documents of the curated corpus.",
    )
    return {"task": task, "queries": queries.num_rows, "metrics": metrics}


@flow(name="evaluate", log_prints=True)
def evaluate_flow(run: RunSpec) -> dict[str, Any]:
    return run_stage(run, "evaluate", lambda out: _evaluate(run, out))
