"""evaluate: query → document retrieval, base vs tuned vs BM25, one task per query set.

The query sets are the user's own (``evaluate.queries``, each its own task), one built-in set
chosen by ``evaluate.task``: the documents' titles (task ``headline``) or the synthetic pairs the
synthesize stage held out from training (task ``synthetic_heldout``), and, when the documents
have labels, the pool's labelled documents as queries for the others of their label (task
``same_label``, :mod:`tasks.evaluate.labels`). At most ``evaluate.max_queries`` queries of a set
are scored, against a pool of documents: every relevant document of the scored queries plus
seeded distractors, ``evaluate.pool_docs`` in all, the same for every task and model. Only the
pool is read and embedded, once per model, on the workers. Model 'tuned' of each task gets
paired bootstrap intervals of its difference to base and to BM25 (:mod:`tasks.evaluate.bootstrap`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from refinery.tasks.books import NO_CORPUS, corpus_is_empty
from refinery.flows.runtime import RunSpec, gather, run_stage
from refinery.storage import StageMarker, read_shard, write_shard
from refinery.tasks.config import RefineryConfig
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.embedding_tasks import embed_shard
from refinery.tasks.evaluate.config import QuerySetConfig
from refinery.tasks.evaluate.labels import SAME_LABEL, has_label, label_queries, skip_reason
from refinery.tasks.evaluate.names import content_key, embeddings_key, model_fingerprint
from refinery.tasks.evaluate.pool import (
    KEY_SPACE, POOL_PART_DOCS, Keyed, choose_pool, group_shards, key_threshold, merge_smallest,
)
from refinery.tasks.evaluate.queries import check_query_set
from refinery.tasks.evaluate.shard_tasks import load_query_set, sample_keys, score_retrieval, select_rows

HEADLINE = "headline"
SYNTHETIC_HELDOUT = "synthetic_heldout"
# metrics rows of a task's query counts have this model name (metric: sampled, scored, ...)
QUERY_COUNTS = "queries"
# Salt of the evaluation pool's distractor keys: not the draw that chose the training passages.
POOL_SALT = "evaluate-pool\x1f"
# Corpus shards whose keys one sampling task reads (only their doc id column).
KEY_SCAN_SHARDS = 64

# The dedup cluster of each row of a `seeds` CTE (its doc_id), and the cluster's members (`member`)
# that the curated corpus kept: a document in no cluster is its own. Every table is read through a
# filter on the seeds (`IN` a small set), so the query holds the seeds' clusters only, never a hash
# table of the run's documents, clusters or drops (at 1M documents that was ~250 MB in the flow).
_KEPT_MEMBERS = """
seed_cluster AS (
    SELECT s.*, coalesce(c.cluster_id, s.doc_id) AS cluster_id FROM seeds s LEFT JOIN (
        SELECT doc_id AS clustered, cluster_id FROM dedup_clusters
        WHERE run_id = $1 AND doc_id IN (SELECT doc_id FROM seeds)
    ) c ON c.clustered = s.doc_id
),
members AS (
    SELECT sc.*, coalesce(m.member, sc.doc_id) AS member FROM seed_cluster sc LEFT JOIN (
        SELECT cluster_id AS of_cluster, doc_id AS member FROM dedup_clusters
        WHERE run_id = $1 AND cluster_id IN (SELECT cluster_id FROM seed_cluster)
    ) m ON m.of_cluster = sc.cluster_id
),
kept_members AS (  -- the `corpus` view's rule (not dropped), read for these members only
    SELECT * FROM members
    WHERE member NOT IN (SELECT doc_id FROM drops WHERE run_id = $1 AND doc_id IN (SELECT member FROM members))
)"""
_TITLED = "seeds AS (SELECT doc_id, title FROM documents WHERE run_id = $1 AND title IS NOT NULL AND trim(title) <> '')"
# A seeded sample of at most $3 queries ($2: evaluate.seed), with the count sampled from.
_SAMPLE = """
SELECT query, relevant, in_source FROM (
    SELECT query, relevant, count(*) OVER () AS in_source FROM candidates ORDER BY hash(query, $2), query LIMIT $3
) ORDER BY query"""

QUERIES_SQL = {
    # Titles of every ingested document whose dedup cluster has a member in the curated corpus;
    # all kept members of that cluster are relevant. Identical titles are one query.
    HEADLINE: f"""
WITH {_TITLED}, {_KEPT_MEMBERS},
candidates AS (
    SELECT title AS query, list(DISTINCT member ORDER BY member) AS relevant FROM kept_members GROUP BY title
)
{_SAMPLE}""",
    # Kept synthetic queries of held-out passages (never trained on); the passage's document and
    # the kept members of its dedup cluster are relevant. Identical queries are one query.
    SYNTHETIC_HELDOUT: f"""
WITH seeds AS (SELECT DISTINCT query, doc_id FROM pairs WHERE run_id = $1 AND kept AND split = 'heldout'),
{_KEPT_MEMBERS},
candidates AS (
    SELECT query, list(DISTINCT member ORDER BY member) AS relevant FROM kept_members GROUP BY query
)
{_SAMPLE}""",
}
# Does some title make a headline query? (What 'auto' decides on, without building the queries.)
HAS_TITLES_SQL = f"""
WITH {_TITLED}, {_KEPT_MEMBERS}
SELECT count(*) > 0 AS titled FROM kept_members"""  # (EXISTS plans worse here: +200 MB at 1M, not +100)
# The user's judgements ($2 query ids, $3 record ids, zipped; $4 an ingest source or NULL) matched
# to the run's documents by record id: per query id with an ingested relevant document, the kept
# members of those documents' dedup clusters (NULL when curation dropped every one).
USER_RELEVANCE_SQL = f"""
WITH judged AS (SELECT unnest($2::VARCHAR[]) AS query_id, unnest($3::VARCHAR[]) AS record_id),
seeds AS (
    SELECT DISTINCT j.query_id, d.doc_id FROM judged j JOIN documents d
    ON d.run_id = $1 AND d.record_id = j.record_id AND ($4::VARCHAR IS NULL OR d.source = $4)
),
{_KEPT_MEMBERS}
SELECT m.query_id, list(DISTINCT m.member ORDER BY m.member) FILTER (WHERE k.member IS NOT NULL) AS relevant
FROM members m LEFT JOIN kept_members k USING (query_id, doc_id, member)
GROUP BY m.query_id
"""
# (doc_id, query) of held-out pairs: the query is cut from its document before ranking.
HELDOUT_CUTS_SQL = """
SELECT DISTINCT doc_id, query FROM pairs WHERE run_id = $1 AND kept AND split = 'heldout' ORDER BY ALL
"""
# (doc_id, label) of the pool's documents ($2: their ids).
POOL_LABELS_SQL = """
SELECT doc_id, label FROM documents WHERE run_id = $1 AND doc_id IN (SELECT unnest($2::VARCHAR[])) ORDER BY doc_id
"""
DESCRIPTIONS = {
    HEADLINE: "headline → article retrieval",
    SYNTHETIC_HELDOUT: "held-out synthetic query → document retrieval",
    SAME_LABEL: "document → documents of the same label",
}


def describe(task: str) -> str:
    """What a task measures, in words (a user query set: by its name)."""
    return DESCRIPTIONS.get(task, f"{task}: your queries → documents retrieval")


def validate_query_sets(config: RefineryConfig) -> None:
    """Before any stage runs: every ``evaluate.queries`` set reads, and one of its relevant record
    ids is an input record (:func:`tasks.evaluate.queries.check_query_set`); else QuerySetError.
    Nothing to check when the run does not evaluate."""
    if "evaluate" in config.stages:
        for source in config.evaluate.queries:
            check_query_set(source, config.ingest)


def builtin_task(run: RunSpec) -> str | None:
    """The built-in query set of the run: ``evaluate.task`` with 'auto' resolved on the curated corpus.

    'auto' is 'headline' when some curated document has a title, else 'synthetic_heldout' unless
    ``evaluate.queries`` has sets (then None: only those). Called by synthesize, which holds pairs
    out only for 'synthetic_heldout' and records the choice; evaluate then follows the record.
    """
    cfg = run.config.evaluate
    if cfg.task == "none":
        return None
    if cfg.task == SYNTHETIC_HELDOUT:
        return SYNTHETIC_HELDOUT
    (row,) = run.catalog.query(HAS_TITLES_SQL, [run.run_id]).to_pylist()
    if row["titled"]:
        return HEADLINE
    if cfg.task == HEADLINE:
        raise ValueError(f"run {run.run_id}: evaluate.task is 'headline' but no curated document has a title "
                         "(use 'auto' or 'synthetic_heldout')")
    return None if cfg.queries else SYNTHETIC_HELDOUT


# -- samples of the corpus, shared with synthesize ------------------------------------------------------------

def sample_corpus(run: RunSpec, corpus_shards: list[str], total: int, *, seed: int, salt: str, n: int) -> list[Keyed]:
    """The ``min(n, total)`` curated documents of smallest seeded key (see :mod:`tasks.evaluate.pool`),
    smallest first. The workers read the doc ids; the flow merges about ``n`` of them."""
    shards = list(enumerate(sorted(corpus_shards)))
    groups = [shards[i : i + KEY_SCAN_SHARDS] for i in range(0, len(shards), KEY_SCAN_SHARDS)]
    attempt = 0
    while True:
        below = key_threshold(n, total, attempt)
        parts = gather(sample_keys.map(groups, seed=unmapped(seed), salt=unmapped(salt), n=unmapped(n),
                                       below=unmapped(below)), "sample the corpus")
        ranked = merge_smallest([[Keyed(*k) for k in part] for part in parts], n)
        if len(ranked) >= min(n, total) or below == KEY_SPACE:
            return ranked
        attempt += 1


def pool_of(run: RunSpec, corpus_shards: list[str], doc_ids: list[str]) -> tuple[str, list[str]]:
    """Write the (doc_id, text) of ``doc_ids`` as pool parts, on the workers; (pool key, part paths)
    (empty parts left out).

    Parts keep corpus order and are named by the pool's documents, so a pool already written
    (synthesize's filter pool is evaluate's pool when both are the whole corpus) is reused.
    """
    shards = sorted(corpus_shards)
    key = content_key(sorted(doc_ids), shards)
    out = run.run_dir / "pools" / key
    groups = group_shards(shards, len(doc_ids))
    parts = gather(select_rows.map(groups, doc_ids=unmapped(doc_ids), part_rows=unmapped(POOL_PART_DOCS),
                                   out=[out / f"part-{i:05d}.parquet" for i in range(len(groups))]), "pool")
    return key, [path for p in parts for path in p["paths"]]


def embeddings_of(run: RunSpec, model: str, model_path: str, pool: tuple[str, list[str]]) -> list[str]:
    """Embed a pool's parts with one model on the workers; named by pool, model files and encoder
    settings, so they are reused exactly when nothing they derive from changed."""
    cfg = run.config.evaluate
    key, parts = pool
    name = embeddings_key(key, model_fingerprint(model_path), backend=cfg.encoder, max_seq_length=cfg.max_seq_length)
    return gather(embed_shard.map([Path(p) for p in parts], model_path=unmapped(model_path),
                                  model_name=unmapped(model), out_dir=unmapped(run.run_dir / "embeddings" / f"{model}-{name}"),
                                  batch_size=unmapped(cfg.encode_batch_size),
                                  max_seq_length=unmapped(cfg.max_seq_length), backend=unmapped(cfg.encoder),
                                  cache_dir=unmapped(str(run.data_home.cache_dir))),
                  f"embed pool ({model})")


# -- query sets -----------------------------------------------------------------------------------------------

def _builtin_set(run: RunSpec, task: str, out: Path) -> dict[str, Any]:
    cfg = run.config.evaluate
    table = run.catalog.query(QUERIES_SQL[task], [run.run_id, cfg.seed, cfg.max_queries])
    if not table.num_rows:
        raise RuntimeError(f"run {run.run_id}: no {task} queries to score"
                           + (" (no kept pair was held out)" if task == SYNTHETIC_HELDOUT else ""))
    in_source = table.column("in_source")[0].as_py()
    path = write_shard(table.select(["query", "relevant"]), out / f"queries-{task}.parquet")
    return {"path": str(path), "relevant": table.column("relevant").to_pylist(),
            "counts": {"in_source": in_source, "sampled": table.num_rows, "scored": table.num_rows}}


def _user_set(run: RunSpec, source: QuerySetConfig, out: Path) -> dict[str, Any]:
    """A user query set sampled on a worker, matched to the run's documents here (at most
    ``max_queries`` queries); queries whose relevant documents curation dropped are counted."""
    cfg = run.config.evaluate
    loaded = load_query_set.submit(source, max_queries=cfg.max_queries, seed=cfg.seed,
                                   out=out / f"queries-{source.name}-sample.parquet").result()
    sample = read_shard(loaded["path"])
    qids, records = sample.column("query_id").to_pylist(), sample.column("record_ids").to_pylist()
    flat = [(q, r) for q, rs in zip(qids, records) for r in rs]
    matched = run.catalog.query(USER_RELEVANCE_SQL, [run.run_id, [q for q, _ in flat], [r for _, r in flat],
                                                     source.source]).to_pylist()
    relevant = {m["query_id"]: m["relevant"] or [] for m in matched}
    scored = [i for i, q in enumerate(qids) if relevant.get(q)]
    table = pa.table({"query": pa.array([sample.column("query")[i].as_py() for i in scored], pa.string()),
                      "relevant": pa.array([relevant[qids[i]] for i in scored], pa.list_(pa.string()))})
    path = write_shard(table, out / f"queries-{source.name}.parquet")
    counts = {"in_source": loaded["in_source"], "sampled": loaded["sampled"], "scored": len(scored),
              "all_relevant_dropped": sum(1 for q in qids if q in relevant and not relevant[q]),
              "not_ingested": sum(1 for q in qids if q not in relevant)}
    return {"path": str(path), "relevant": table.column("relevant").to_pylist(), "counts": counts}


def _label_set(run: RunSpec, pool_ids: list[str], out: Path) -> dict[str, Any] | str:
    """The same-label task over the pool: its labelled documents, which of them are queries, the
    counts; or why the task cannot be scored (a string)."""
    cfg = run.config.evaluate
    table = run.catalog.query(POOL_LABELS_SQL, [run.run_id, pool_ids])
    doc_ids, labels = table.column("doc_id").to_pylist(), table.column("label").to_pylist()
    if (why := skip_reason(labels)) is not None:
        return why
    queries, counts = label_queries(doc_ids, labels, max_queries=cfg.max_queries, seed=cfg.seed)
    chosen = set(queries)
    labelled = [(d, lab) for d, lab in zip(doc_ids, labels) if has_label(lab)]
    path = write_shard(pa.table({"doc_id": pa.array([d for d, _ in labelled], pa.string()),
                                 "label": pa.array([lab for _, lab in labelled], pa.string()),
                                 "query": pa.array([d in chosen for d, _ in labelled], pa.bool_())}),
                       out / f"queries-{SAME_LABEL}.parquet")
    return {"path": str(path), "labels": True, "relevant": [], "counts": counts}


def _metric_rows(task: str, counts: dict[str, int], metrics: dict[str, dict[str, float]]) -> list[tuple]:
    rows = [(QUERY_COUNTS, task, k, float(v)) for k, v in counts.items()]
    return rows + [(model, task, k, v) for model, values in metrics.items() for k, v in values.items()]


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
    builtin = synth.get("evaluation_task", HEADLINE)
    sets = {s.name: _user_set(run, s, out) for s in cfg.queries}
    if builtin:
        sets[builtin] = _builtin_set(run, builtin, out)
    tasks = list(sets)
    corpus = quality["corpus_shards"]
    required = [d for s in sets.values() for rel in s["relevant"] for d in rel]
    ranked = sample_corpus(run, corpus, quality["kept"], seed=cfg.seed, salt=POOL_SALT, n=cfg.pool_docs)
    pool_ids = choose_pool((k.doc_id for k in ranked), required, cfg.pool_docs)
    pool = pool_of(run, corpus, pool_ids)
    pool_docs = len(pool_ids)
    skipped = {}
    if cfg.same_label:  # its queries and answers are the pool's documents: no document added, none embedded
        labelled = _label_set(run, pool_ids, out)
        if isinstance(labelled, str):
            skipped[SAME_LABEL] = labelled
        else:
            sets[SAME_LABEL] = labelled
            tasks.append(SAME_LABEL)
    cuts = ({SYNTHETIC_HELDOUT: str(write_shard(run.catalog.query(HELDOUT_CUTS_SQL, [run.run_id]),
                                                out / "heldout_cuts.parquet"))}
            if SYNTHETIC_HELDOUT in sets else None)
    model_paths = {"base": str(BASE_MODEL_PATH)}
    if "tuned" in cfg.models:
        if not train or not train.get("model_path"):
            raise RuntimeError(f"run {run.run_id}: evaluating 'tuned' needs a trained model")
        model_paths["tuned"] = train["model_path"]
    scorable = {t: s["path"] for t, s in sets.items() if s["counts"]["scored"] and not s.get("labels")}
    by_label = {t: s["path"] for t, s in sets.items() if s["counts"]["scored"] and s.get("labels")}
    embeddings = ({m: embeddings_of(run, m, p, pool) for m, p in model_paths.items() if m in cfg.models}
                  if scorable or by_label else {})
    scored = (score_retrieval.submit(scorable, pool[1], embeddings, model_paths, list(cfg.models), cfg,
                                     str(run.data_home.cache_dir), cuts, by_label, str(out)).result()
              if scorable or by_label else {"metrics": {}, "per_query": {}})
    scores = scored["metrics"]
    rows = [r for t in tasks for r in _metric_rows(t, sets[t]["counts"], scores.get(t, {}))]
    run.catalog.replace("metrics", run.run_id, where={"stage": "evaluate"}, rows=pa.table({
        "stage": ["evaluate"] * len(rows), "model": [r[0] for r in rows], "task": [r[1] for r in rows],
        "metric": [r[2] for r in rows], "value": [r[3] for r in rows]}))
    table = [{"task": t, "model": m, **v} for t in tasks for m, v in scores.get(t, {}).items()]
    columns = list(dict.fromkeys(k for row in table for k in row))  # the tuned rows have the intervals too
    create_table_artifact(
        key="evaluation", table=[{c: row.get(c) for c in columns} for row in table],
        description=f"Run {run.run_id}: " + "; ".join(f"{describe(t)}, {sets[t]['counts']['scored']} queries"
                                                      for t in tasks)
        + f"; over a pool of {pool_docs} of the {quality['kept']} documents of the curated corpus"
        + "".join(f"; {t} not scored: {why}" for t, why in skipped.items())
        + (f"; tuned − base and tuned − bm25 with paired bootstrap 95% intervals ({cfg.bootstrap_samples} "
           "resamples of the queries)" if cfg.bootstrap_samples else "") + ".")
    by_task = {t: {"queries": sets[t]["counts"]["scored"], "counts": sets[t]["counts"], "metrics": scores.get(t, {})}
               for t in tasks}
    first = tasks[0]
    return {"task": first, "tasks": tasks, "queries": by_task[first]["queries"], "metrics": by_task[first]["metrics"],
            "by_task": by_task, "skipped_tasks": skipped, "per_query": scored["per_query"], "pool_docs": pool_docs,
            "corpus_docs": quality["kept"], "pool": pool[0], "pool_parts": pool[1]}


@flow(name="evaluate", log_prints=True)
def evaluate_flow(run: RunSpec, quality: dict[str, Any], synthesize: dict[str, Any],
                  train: dict[str, Any]) -> dict[str, Any]:
    return run_stage(run, "evaluate", lambda out: _evaluate(run, out))
