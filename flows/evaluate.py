"""evaluate: headline → article retrieval over the curated corpus, base vs tuned vs BM25."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from flows.runtime import RunSpec, gather, run_stage
from storage import StageMarker, write_shard
from tasks.embedding import BASE_MODEL_PATH
from tasks.embedding_tasks import embed_shard
from tasks.evaluate.shard_tasks import score_retrieval

TASK = "headline"

# Headlines of every ingested document whose dedup cluster has a member in the curated corpus;
# all kept members of that cluster are relevant. Identical headlines are one query.
QUERIES_SQL = """
WITH kept AS (SELECT doc_id FROM corpus WHERE run_id = $1),
cluster AS (
    SELECT d.doc_id, d.title, coalesce(c.cluster_id, d.doc_id) AS cluster_id
    FROM documents d LEFT JOIN dedup_clusters c ON c.run_id = d.run_id AND c.doc_id = d.doc_id
    WHERE d.run_id = $1 AND d.title IS NOT NULL AND trim(d.title) <> ''
)
SELECT q.title AS query, list(DISTINCT m.doc_id ORDER BY m.doc_id) AS relevant
FROM cluster q JOIN cluster m USING (cluster_id) JOIN kept k ON k.doc_id = m.doc_id
GROUP BY q.title ORDER BY q.title
"""


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
    train = StageMarker(run.stage_dir("train")).read()
    if quality is None:
        raise RuntimeError(f"run {run.run_id}: evaluate needs a finished quality stage")
    corpus = quality["corpus_shards"]
    queries = run.catalog.query(QUERIES_SQL, [run.run_id])
    queries_path = write_shard(queries, out / "queries.parquet")
    model_paths = {"base": str(BASE_MODEL_PATH)}
    if "tuned" in cfg.models:
        if not train or not train.get("model_path"):
            raise RuntimeError(f"run {run.run_id}: evaluating 'tuned' needs a trained model")
        model_paths["tuned"] = train["model_path"]
    embeddings = {m: embeddings_of(run, m, p, corpus) for m, p in model_paths.items() if m in cfg.models}
    metrics = score_retrieval.submit(queries_path, corpus, embeddings, model_paths, list(cfg.models), cfg).result()
    rows = pa.table({
        "stage": ["evaluate"] * sum(len(v) for v in metrics.values()),
        "model": [m for m, v in metrics.items() for _ in v],
        "task": [TASK] * sum(len(v) for v in metrics.values()),
        "metric": [k for v in metrics.values() for k in v],
        "value": [x for v in metrics.values() for x in v.values()],
    })
    run.catalog.replace("metrics", run.run_id, rows=rows, where={"stage": "evaluate"})
    create_table_artifact(
        key="evaluation", table=[{"model": m, **v} for m, v in metrics.items()],
        description=f"Run {run.run_id}: headline → article retrieval, {queries.num_rows} queries over "
                    f"the {quality['kept']} documents of the curated corpus.",
    )
    return {"queries": queries.num_rows, "metrics": metrics}


@flow(name="evaluate", log_prints=True)
def evaluate_flow(run: RunSpec) -> dict[str, Any]:
    return run_stage(run, "evaluate", lambda out: _evaluate(run, out))
