"""Prefect task of the evaluate stage: query → document retrieval for every configured model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task

from refinery.storage import read_shard, read_shards
from refinery.tasks.embedding import all_cores, encode
from refinery.tasks.embedding_tasks import cached_encoder, load_embeddings
from refinery.tasks.evaluate.config import EvaluateConfig
from refinery.tasks.evaluate.heldout import cut_verbatim
from refinery.tasks.evaluate.retrieval import RANKING_DEPTH, bm25_rankings, dense_rankings, evaluate_rankings


@task(name="score-retrieval", task_run_name="{task} retrieval: {models}")
def score_retrieval(queries_path: Path, corpus_shards: list[str], embeddings: dict[str, list[str]],
                    model_paths: dict[str, str], models: list[str], cfg: EvaluateConfig, task: str = "headline",
                    cut_path: Path | None = None) -> dict[str, dict[str, float]]:
    """Metrics per model. ``queries_path`` holds (query, relevant: list of corpus doc ids).

    Dense models rank the corpus by cosine to their own embeddings of it (``embeddings[model]``
    shard paths, in corpus order); BM25 ranks the raw text. ``cut_path`` holds (doc_id, query)
    rows: that query is cut from that document's text before ranking (see
    :mod:`tasks.evaluate.heldout`); those documents are embedded again here.
    """
    queries = read_shard(queries_path)
    texts = queries.column("query").to_pylist()
    corpus = read_shards(sorted(corpus_shards), ["doc_id", "text"])
    position = {d: i for i, d in enumerate(corpus.column("doc_id").to_pylist())}
    relevant = [{position[d] for d in rel} for rel in queries.column("relevant").to_pylist()]
    doc_texts = corpus.column("text").to_pylist()
    changed = _cut_documents(cut_path, position, doc_texts) if cut_path else set()
    results: dict[str, dict[str, float]] = {}
    for model in models:
        if model == "bm25":
            ranks = bm25_rankings(texts, doc_texts, RANKING_DEPTH,
                                  k1=cfg.bm25_k1, b=cfg.bm25_b, stopwords=cfg.bm25_stopwords)
        else:
            doc_ids, doc_emb = load_embeddings(embeddings[model])
            order = np.array([position[d] for d in doc_ids])
            matrix = np.empty_like(doc_emb)
            matrix[order] = doc_emb  # rows in corpus order whatever the shard order
            encoder = cached_encoder(model_paths[model], cfg.max_seq_length)
            with all_cores():  # runs alone, after the corpus is embedded
                q_emb = encode(encoder, texts, batch_size=cfg.encode_batch_size, show_progress=False)
                if changed:
                    rows = sorted(changed)
                    matrix[rows] = encode(encoder, [doc_texts[i] for i in rows],
                                          batch_size=cfg.encode_batch_size, show_progress=False)
            ranks = dense_rankings(q_emb, matrix, RANKING_DEPTH)
        results[model] = evaluate_rankings(ranks, relevant)
    return results


def _cut_documents(cut_path: Path, position: dict[str, int], doc_texts: list[str]) -> set[int]:
    """Cut each (doc_id, query) row's query from ``doc_texts`` in place; the rows that changed."""
    cuts: dict[int, list[str]] = {}
    table = read_shard(cut_path, ["doc_id", "query"])
    for doc_id, query in zip(table.column("doc_id").to_pylist(), table.column("query").to_pylist()):
        if doc_id in position:
            cuts.setdefault(position[doc_id], []).append(query)
    changed = set()
    for row, qs in cuts.items():
        text = cut_verbatim(doc_texts[row], qs)
        if text != doc_texts[row]:
            doc_texts[row] = text
            changed.add(row)
    return changed
