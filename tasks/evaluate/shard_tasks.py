"""The shard work of the evaluate stage (and of the synthesize stage's samples of the corpus):
plain functions, which the flows wrap as Prefect tasks and run on the Dask workers.

Sampling the corpus (:mod:`tasks.evaluate.pool`) runs here, on the workers, shard by shard, so
that the flow process only ever holds about as many doc ids as it asked for; scoring ranks the
pool, never the whole corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from refinery.storage import StageMarker, read_rows, read_shard, read_shards, write_shard
from refinery.storage.location import location
from refinery.tasks.embedding import all_cores, encode
from refinery.tasks.embedding_tasks import cached_encoder, load_embeddings
from refinery.tasks.evaluate.bootstrap import INTERVAL_METRIC, interval_metrics
from refinery.tasks.evaluate.config import EvaluateConfig, QuerySetConfig
from refinery.tasks.evaluate.fusion import (
    HYBRID, WEIGHT_GRID, chunk_rows, fit_from_grid, grid_ndcg, hybrid_rankings,
)
from refinery.tasks.evaluate.heldout import cut_verbatim
from refinery.tasks.evaluate.labels import label_codes, label_hits
from refinery.tasks.evaluate.pool import KEY_SPACE, Keyed, merge_smallest, smallest_in_shard
from refinery.tasks.evaluate.queries import read_query_set
from refinery.tasks.evaluate.retrieval import (
    RANKING_DEPTH, Bm25Index, dense_rankings, mean_metrics, per_query_metrics, relevance_hits, without_self,
)

POOL_COLUMNS = ("doc_id", "text")


def sample_keys(shards: list[tuple[int, str]], *, seed: int, salt: str, n: int,
                below: int = KEY_SPACE) -> list[Keyed]:
    """The at most ``n`` smallest sample keys below ``below`` of some corpus shards, smallest first.

    ``shards`` are (index in the sorted shard list, path); only the doc id column is read.
    """
    return merge_smallest([smallest_in_shard(read_shard(path, ["doc_id"]).column("doc_id").to_pylist(),
                                             shard=i, seed=seed, salt=salt, n=n, below=below)
                           for i, path in shards], n)


def select_rows(shards: list[str], doc_ids: list[str] | None, out: Path, *, given_order: bool = False,
                part_rows: int | None = None) -> dict[str, Any]:
    """Write the (doc_id, text) rows of ``doc_ids`` found in ``shards`` (all rows when None) to one shard.

    Rows keep the shards' order, or with ``given_order`` the order of ``doc_ids``. ``out`` is
    named by what it holds (see :mod:`tasks.evaluate.names`), so an existing one is reused. With
    ``part_rows`` the rows go to ``<out stem>-NNN.parquet`` files of at most that many rows each
    (``paths``), listed in ``<out stem>.json``, written last: one big corpus shard still becomes
    pool parts the size of one embedding task.
    """
    marker = StageMarker(out.parent, out.stem)
    if part_rows is None and out.exists():
        return {"path": str(out), "paths": [str(out)], "docs": read_shard(out, ["doc_id"]).num_rows}
    if part_rows is not None and (done := marker.read()) is not None:
        return done
    schema = pa.schema([("doc_id", pa.string()), ("text", pa.string())])
    if doc_ids is None:
        table = pa.concat_tables([read_shard(p, list(POOL_COLUMNS)).cast(schema) for p in shards]) if shards else schema.empty_table()
    else:
        table = read_rows(shards, doc_ids, POOL_COLUMNS).cast(schema)
    if given_order and doc_ids is not None:
        where = {d: i for i, d in enumerate(table.column("doc_id").to_pylist())}
        table = table.take(pa.array([where[d] for d in doc_ids if d in where], pa.int64()))
    if part_rows is None:
        return {"path": str(write_shard(table, out)), "paths": [str(out)], "docs": table.num_rows}
    paths = [str(write_shard(table.slice(a, part_rows), out.with_name(f"{out.stem}-{k:03d}.parquet")))
             for k, a in enumerate(range(0, table.num_rows, part_rows))]
    done = {"paths": paths, "docs": table.num_rows}
    marker.write(done)
    return done


def load_query_set(source: QuerySetConfig, *, max_queries: int, seed: int, out: Path) -> dict[str, Any]:
    """Read a query set (:func:`tasks.evaluate.queries.read_query_set`) and write its sample as one shard."""
    table, stats = read_query_set(source, max_queries=max_queries, seed=seed)
    return {"path": str(write_shard(table, out)), **stats}


@dataclass
class _QuerySet:
    """One task's queries over the pool: texts with relevant pool rows, or pool rows as queries
    (query by example, ``examples``) whose relevant documents share their label (``codes``)."""

    queries: list[str]
    names: list[str]  # what identifies a query in the per-query shard: its text, or its document's id
    relevant: list[set[int]] | None = None
    examples: np.ndarray | None = None
    codes: np.ndarray | None = None
    texts: list[str] | None = None  # the pool's texts as this task ranks them (None: as stored)
    changed: set[int] = field(default_factory=set)  # rows whose text differs from the stored one

    def scores(self, rankings: np.ndarray) -> dict[str, np.ndarray]:
        """Per-query metrics of rankings of :data:`RANKING_DEPTH` (+ 1 for examples, see :meth:`depth`)."""
        if self.examples is None:
            return per_query_metrics(*relevance_hits(rankings, self.relevant))
        return per_query_metrics(*label_hits(without_self(rankings, self.examples, RANKING_DEPTH),
                                             self.codes, self.examples))

    @property
    def depth(self) -> int:
        return RANKING_DEPTH + (self.examples is not None)  # one more: the query document itself goes


def score_retrieval(query_sets: dict[str, str], pool_parts: list[str], embeddings: dict[str, list[str]],
                    model_paths: dict[str, str], models: list[str], cfg: EvaluateConfig,
                    cache_dir: str | None = None, cuts: dict[str, str] | None = None,
                    label_sets: dict[str, str] | None = None, out: str | None = None,
                    fusion_weight: float | None = None) -> dict[str, Any]:
    """Metrics per query set and model, their paired bootstrap intervals, and per-query scores.

    Each ``query_sets`` shard holds (query, relevant: doc ids of the pool); each ``label_sets``
    shard (doc_id, label, query) the pool's labelled documents, ``query`` marking those that are
    queries (see :mod:`tasks.evaluate.labels`). Dense models rank the pool by cosine to their own
    embeddings of it (``embeddings[model]``, shards of the pool parts); a label task's queries are
    rows of those embeddings. BM25 ranks the pool's text. Model 'hybrid' ranks by
    ``fusion_weight`` x the tuned model's normalized scores + (1 − it) x BM25's
    (:mod:`tasks.evaluate.fusion`); it needs the weight, and the tuned model's embeddings even
    when 'tuned' itself is not in ``models``. ``cuts[task]`` holds (doc_id, query)
    rows: for that task only, the query is cut from that document's text before ranking (see
    :mod:`tasks.evaluate.heldout`); those documents are embedded again here.

    Returns ``metrics[task][model]`` (models 'tuned' and 'hybrid' also have the intervals of
    :func:`tasks.evaluate.bootstrap.interval_metrics`, 'hybrid' its ``fusion_weight``) and, with
    ``out``, ``per_query[task]``: a shard of (query, model, metric per column) rows under ``out``
    (a label task's query is the doc id).
    """
    if HYBRID in models and fusion_weight is None:
        raise ValueError("model 'hybrid' needs the fusion weight fitted on the dev split")
    pool = read_shards(pool_parts, list(POOL_COLUMNS))
    position = {d: i for i, d in enumerate(pool.column("doc_id").to_pylist())}
    doc_texts = pool.column("text").to_pylist()
    sets: dict[str, _QuerySet] = {}
    for task_name, path in query_sets.items():
        table = read_shard(path, ["query", "relevant"])
        queries = table.column("query").to_pylist()
        qs = _QuerySet(queries, queries,
                       relevant=[{position[d] for d in rel} for rel in table.column("relevant").to_pylist()])
        if cuts and task_name in cuts:
            qs.texts = list(doc_texts)
            qs.changed = _cut_documents(location(cuts[task_name]), position, qs.texts)
        sets[task_name] = qs
    for task_name, path in (label_sets or {}).items():
        table = read_shard(path, ["doc_id", "label", "query"])
        labels: list[str | None] = [None] * len(doc_texts)
        for doc_id, label in zip(table.column("doc_id").to_pylist(), table.column("label").to_pylist()):
            labels[position[doc_id]] = label
        query_ids = sorted(table.filter(table.column("query")).column("doc_id").to_pylist())
        examples = np.array([position[d] for d in query_ids], dtype=np.int64)
        sets[task_name] = _QuerySet([doc_texts[i] for i in examples], query_ids, examples=examples,
                                    codes=label_codes(labels))
    per_query: dict[str, dict[str, dict[str, np.ndarray]]] = {t: {} for t in sets}
    plain_bm25: list[Bm25Index] = []

    def bm25_of(qs: _QuerySet) -> Bm25Index:
        """The BM25 index of the pool as ``qs`` ranks it (the plain one is built once)."""
        if qs.changed:
            return Bm25Index(qs.texts, k1=cfg.bm25_k1, b=cfg.bm25_b, stopwords=cfg.bm25_stopwords)
        if not plain_bm25:
            plain_bm25.append(Bm25Index(doc_texts, k1=cfg.bm25_k1, b=cfg.bm25_b, stopwords=cfg.bm25_stopwords))
        return plain_bm25[0]

    dense = [m for m in models if m not in ("bm25", HYBRID)]
    if HYBRID in models and "tuned" not in dense:
        dense.append("tuned")
    tuned_inputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # task -> the tuned (queries, pool) embeddings
    if "bm25" in models:
        for task_name, qs in sets.items():
            per_query[task_name]["bm25"] = qs.scores(bm25_of(qs).top_k(qs.queries, qs.depth))
    for model in dense:
        doc_ids, doc_emb = load_embeddings(embeddings[model])
        matrix = np.empty_like(doc_emb)
        matrix[np.array([position[d] for d in doc_ids], dtype=np.int64)] = doc_emb  # rows in pool order
        encoder = None
        for task_name, qs in sets.items():
            if qs.examples is not None:  # the queries are pool documents: their embeddings are at hand
                q_emb, ranked = matrix[qs.examples], matrix
            else:
                encoder = encoder or cached_encoder(model_paths[model], cfg.max_seq_length, cfg.encoder, cache_dir)
                with all_cores():  # runs alone, after the pool is embedded
                    q_emb = encode(encoder, qs.queries, batch_size=cfg.encode_batch_size, show_progress=False)
                    ranked = matrix
                    if qs.changed:
                        rows = sorted(qs.changed)
                        ranked = matrix.copy()
                        ranked[rows] = encode(encoder, [qs.texts[i] for i in rows],
                                              batch_size=cfg.encode_batch_size, show_progress=False)
            if model in models:
                per_query[task_name][model] = qs.scores(dense_rankings(q_emb, ranked, qs.depth))
            if model == "tuned" and HYBRID in models:
                tuned_inputs[task_name] = (q_emb, ranked)
    if HYBRID in models:
        assert fusion_weight is not None
        for task_name, qs in sets.items():
            q_emb, ranked = tuned_inputs[task_name]
            index = bm25_of(qs)
            rankings = hybrid_rankings(q_emb, ranked, lambda a, b: index.scores(qs.queries[a:b]), qs.depth,
                                       fusion_weight, own=qs.examples)
            per_query[task_name][HYBRID] = qs.scores(rankings)
    order = {m: i for i, m in enumerate(models)}  # figures and per-query rows in the order of `models`
    per_query = {t: dict(sorted(by_model.items(), key=lambda kv: order[kv[0]])) for t, by_model in per_query.items()}
    metrics = {t: {m: mean_metrics(v) for m, v in by_model.items()} for t, by_model in per_query.items()}
    for task_name, by_model in per_query.items():
        intervals = interval_metrics({m: v[INTERVAL_METRIC] for m, v in by_model.items()},
                                     samples=cfg.bootstrap_samples, seed=cfg.seed)
        for model, rows in intervals.items():
            metrics[task_name][model] |= rows
        if HYBRID in metrics[task_name]:
            metrics[task_name][HYBRID]["fusion_weight"] = float(fusion_weight)  # type: ignore[arg-type]
    paths = ({t: _write_per_query(sets[t].names, by_model, location(out) / f"per_query-{t}.parquet")
              for t, by_model in per_query.items()} if out else {})
    return {"metrics": metrics, "per_query": paths}


def fit_fusion_weight(dev_pairs_path: str, model_path: str, cfg: EvaluateConfig,
                      cache_dir: str | None = None, distractors_path: str | None = None) -> dict[str, Any]:
    """Fit the hybrid's weight on the train stage's dev split (never on an evaluation set).

    ``dev_pairs_path`` holds (query, doc_id, positive) rows. As the train stage scores its dev
    split, each dev query ranks its own pair's positive among every dev pair's positive, the
    other positives of its document left out (an inverse-cloze positive is its passage without
    that pair's query sentence, so another pair's positive holds this query verbatim). Both sides
    score with what the evaluation uses: the tuned model through ``evaluate.encoder`` and
    ``max_seq_length``, BM25 with ``evaluate.bm25_*``. ``distractors_path`` (a ``positive`` column:
    training passages of no dev pair) adds candidates no dev query asks for; without them a small
    dev split is near-perfect for every system and every weight ties. Returns
    :meth:`tasks.evaluate.fusion.FusionFit.as_stats` and ``dev_candidates``.
    """
    table = read_shard(dev_pairs_path, ["query", "doc_id", "positive"])
    queries = table.column("query").to_pylist()
    doc_ids = np.asarray(table.column("doc_id").to_pylist(), dtype=object)
    positives = table.column("positive").to_pylist()
    if not queries:
        raise ValueError(f"{dev_pairs_path}: no dev pairs to fit the fusion weight on")
    n = len(queries)
    if distractors_path:
        positives += read_shard(distractors_path, ["positive"]).column("positive").to_pylist()
        doc_ids = np.concatenate([doc_ids, np.full(len(positives) - n, None, dtype=object)])
    encoder = cached_encoder(model_path, cfg.max_seq_length, cfg.encoder, cache_dir)
    q_emb = encode(encoder, queries, batch_size=cfg.encode_batch_size, show_progress=False)
    p_emb = encode(encoder, positives, batch_size=cfg.encode_batch_size, show_progress=False)
    index = Bm25Index(positives, k1=cfg.bm25_k1, b=cfg.bm25_b, stopwords=cfg.bm25_stopwords)
    parts = []
    step = chunk_rows(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        rows = np.arange(start, stop)
        exclude = doc_ids[rows][:, None] == doc_ids[None, :]
        exclude[rows - start, rows] = False  # the query's own positive is the one relevant candidate
        parts.append(grid_ndcg(q_emb[start:stop] @ p_emb.T, index.scores(queries[start:stop]),
                               [{int(i)} for i in rows], WEIGHT_GRID, exclude=exclude))
    return {**fit_from_grid(np.concatenate(parts), WEIGHT_GRID).as_stats(), "dev_candidates": len(positives)}


def _write_per_query(names: list[str], by_model: dict[str, dict[str, np.ndarray]], path: Path) -> str:
    """One row per (query, model) with each metric's value for that query: what the figures are means of."""
    columns: dict[str, list] = {"query": [], "model": []}
    for model, values in by_model.items():
        columns["query"] += names
        columns["model"] += [model] * len(names)
        for metric, v in values.items():
            columns.setdefault(metric, []).extend(v.tolist())
    return str(write_shard(pa.table({k: pa.array(v, pa.string() if k in ("query", "model") else pa.float64())
                                     for k, v in columns.items()}), path))


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
