"""Prefect task of the evaluate stage: headline → article retrieval for every configured model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task

from storage import read_shard, read_shards
from tasks.embedding import all_cores, encode
from tasks.embedding_tasks import cached_encoder, load_embeddings
from tasks.evaluate.config import EvaluateConfig
from tasks.evaluate.retrieval import RANKING_DEPTH, bm25_rankings, dense_rankings, evaluate_rankings


@task(name="score-retrieval", task_run_name="headline retrieval: {models}")
def score_retrieval(queries_path: Path, corpus_shards: list[str], embeddings: dict[str, list[str]],
                    model_paths: dict[str, str], models: list[str], cfg: EvaluateConfig) -> dict[str, dict[str, float]]:
    """Metrics per model. ``queries_path`` holds (query, relevant: list of corpus doc ids).

    Dense models rank the corpus by cosine to their own embeddings of it (``embeddings[model]``
    shard paths, in corpus order); BM25 ranks the raw text.
    """
    queries = read_shard(queries_path)
    texts = queries.column("query").to_pylist()
    corpus = read_shards(sorted(corpus_shards), ["doc_id", "text"])
    position = {d: i for i, d in enumerate(corpus.column("doc_id").to_pylist())}
    relevant = [{position[d] for d in rel} for rel in queries.column("relevant").to_pylist()]
    results: dict[str, dict[str, float]] = {}
    for model in models:
        if model == "bm25":
            ranks = bm25_rankings(texts, corpus.column("text").to_pylist(), RANKING_DEPTH,
                                  k1=cfg.bm25_k1, b=cfg.bm25_b, stopwords=cfg.bm25_stopwords)
        else:
            doc_ids, doc_emb = load_embeddings(embeddings[model])
            order = np.array([position[d] for d in doc_ids])
            matrix = np.empty_like(doc_emb)
            matrix[order] = doc_emb  # rows in corpus order whatever the shard order
            with all_cores():  # runs alone, after the corpus is embedded
                q_emb = encode(cached_encoder(model_paths[model], cfg.max_seq_length), texts,
                               batch_size=cfg.encode_batch_size, show_progress=False)
            ranks = dense_rankings(q_emb, matrix, RANKING_DEPTH)
        results[model] = evaluate_rankings(ranks, relevant)
    return results
