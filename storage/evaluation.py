"""Catalog verbs: synthesize, train and evaluate: query sets, relevance through dedup clusters, pool labels, held-out cuts, pairs, models, metrics.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import pyarrow as pa

from refinery.storage.datasets import sql_literal

# Every query below reads the documents, dedup clusters and kept documents of a *scope*: one run
# (``{runs}`` is ``run_id = $1``, kept means not in the run's drops), or the dataset version the run
# published, what a night's model half reads (``{runs}`` names every night that published into the
# dataset up to that version, kept means in ``curated_at(dataset, $1)``). :func:`_scoped` fills them in.

# The dedup cluster of each row of a `seeds` CTE (its doc_id), and the cluster's members (`member`)
# that the curated corpus kept: a document in no cluster is its own. In a dataset version a cluster's
# id is one of its members too: a night's copy of an earlier night's document names that document as
# its cluster, and the earlier night's clusters do not list it.
# Every table is read through a filter on the seeds (`IN` a small set), so the query holds the
# seeds' clusters only, never a hash table of the run's documents, clusters or drops (at 1M
# documents that was ~250 MB in the flow).
_KEPT_MEMBERS = """
seed_cluster AS (
    SELECT s.*, coalesce(c.cluster_id, s.doc_id) AS cluster_id FROM seeds s LEFT JOIN (
        SELECT DISTINCT doc_id AS clustered, cluster_id FROM dedup_clusters
        WHERE {runs} AND doc_id IN (SELECT doc_id FROM seeds)
    ) c ON c.clustered = s.doc_id
),
members AS (
    SELECT sc.*, coalesce(m.member, sc.doc_id) AS member FROM seed_cluster sc LEFT JOIN (
        SELECT cluster_id AS of_cluster, doc_id AS member FROM dedup_clusters
        WHERE {runs} AND cluster_id IN (SELECT cluster_id FROM seed_cluster){representative}
    ) m ON m.of_cluster = sc.cluster_id
),
kept_members AS (  -- the scope's kept documents, read for these members only
    SELECT * FROM members WHERE {kept}
)"""
_KEPT_IN_RUN = "member NOT IN (SELECT doc_id FROM drops WHERE run_id = $1 AND doc_id IN (SELECT member FROM members))"
_KEPT_IN_VERSION = "member IN (SELECT doc_id FROM curated_at({ds}, $1) WHERE doc_id IN (SELECT member FROM members))"
_TITLED = ("seeds AS (SELECT DISTINCT doc_id, title FROM documents WHERE {runs} AND title IS NOT NULL "
           "AND trim(title) <> '')")
# A seeded sample of at most $3 queries ($2: evaluate.seed), with the count sampled from.
_SAMPLE = """
SELECT query, relevant, in_source FROM (
    SELECT query, relevant, count(*) OVER () AS in_source FROM candidates ORDER BY hash(query, $2), query LIMIT $3
) ORDER BY query"""

# Titles of every ingested document whose dedup cluster has a member in the curated corpus; all
# kept members of that cluster are relevant. Identical titles are one query.
HEADLINE_QUERIES_SQL = f"""
WITH {_TITLED}, {_KEPT_MEMBERS},
candidates AS (
    SELECT title AS query, list(DISTINCT member ORDER BY member) AS relevant FROM kept_members GROUP BY title
)
{_SAMPLE}"""
# Kept synthetic queries of held-out passages (never trained on); the passage's document and the
# kept members of its dedup cluster are relevant. Identical queries are one query.
HELDOUT_QUERIES_SQL = f"""
WITH seeds AS (SELECT DISTINCT query, doc_id FROM pairs WHERE run_id = $1 AND kept AND split = 'heldout'),
{_KEPT_MEMBERS},
candidates AS (
    SELECT query, list(DISTINCT member ORDER BY member) AS relevant FROM kept_members GROUP BY query
)
{_SAMPLE}"""
# The frozen set of a dataset's task ($4) as queries of the version: the frozen documents' kept
# cluster members are relevant (a query whose every one was retired since is not scored).
FROZEN_QUERIES_SQL = f"""
WITH seeds AS (SELECT DISTINCT query, doc_id FROM evaluation_sets WHERE dataset = {{ds}} AND task = $4),
{_KEPT_MEMBERS},
candidates AS (
    SELECT query, list(DISTINCT member ORDER BY member) AS relevant FROM kept_members GROUP BY query
)
{_SAMPLE}"""
# Freezing: the first night to evaluate a dataset's task writes its queries; later nights find them.
# $1 dataset, $2 task, $3 run, then the rows' source: the queries shard a night scored (query,
# relevant) or the held-out pairs of a pairs shard (query, doc_id, positive).
_FREEZE = """
INSERT INTO evaluation_sets
SELECT $1, $2, query, doc_id, passage, $3, now() FROM ({rows}) AS frozen
WHERE NOT EXISTS (SELECT 1 FROM evaluation_sets WHERE dataset = $1 AND task = $2)"""
FREEZE_QUERIES_SQL = _FREEZE.format(
    rows="SELECT DISTINCT query, unnest(relevant) AS doc_id, NULL::VARCHAR AS passage FROM read_parquet($4)")
FREEZE_HELDOUT_SQL = _FREEZE.format(
    rows="SELECT DISTINCT query, doc_id, positive AS passage FROM read_parquet($4) WHERE kept AND split = 'heldout'")
FROZEN_TASKS_SQL = """
SELECT task, count(DISTINCT query) AS queries, any_value(frozen_by) AS frozen_by FROM evaluation_sets
WHERE dataset = $1 GROUP BY task ORDER BY task"""
FROZEN_HELDOUT_SQL = """
SELECT DISTINCT doc_id, query, passage FROM evaluation_sets WHERE dataset = $1 AND task = $2 ORDER BY ALL"""
# Does some title make a headline query? (What 'auto' decides on, without building the queries.)
HAS_TITLES_SQL = f"""
WITH {_TITLED}, {_KEPT_MEMBERS}
SELECT count(*) > 0 AS titled FROM kept_members"""  # (EXISTS plans worse here: +200 MB at 1M, not +100)
# The user's judgements ($2 query ids, $3 record ids, zipped; $4 an ingest source or NULL) matched
# to the scope's documents by record id: per query id with an ingested relevant document, the kept
# members of those documents' dedup clusters (NULL when curation dropped every one).
USER_RELEVANCE_SQL = f"""
WITH judged AS (SELECT unnest($2::VARCHAR[]) AS query_id, unnest($3::VARCHAR[]) AS record_id),
seeds AS (
    SELECT DISTINCT j.query_id, d.doc_id FROM judged j JOIN (SELECT * FROM documents WHERE {{runs}}) d
    ON d.record_id = j.record_id AND ($4::VARCHAR IS NULL OR d.source = $4)
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
# (doc_id, label) of the pool's documents ($2: their ids): a curated document's label.
POOL_LABELS_SQL = """
SELECT doc_id, label FROM {curated} WHERE doc_id IN (SELECT unnest($2::VARCHAR[])) ORDER BY doc_id
"""
# The dedup cluster of each filter-pool document ($2) that shares it with another pool document.
POOL_CLUSTERS_SQL = """
SELECT DISTINCT doc_id, cluster_id FROM dedup_clusters
WHERE {runs} AND doc_id IN (SELECT unnest($2::VARCHAR[]))
QUALIFY count(*) OVER (PARTITION BY cluster_id) > 1
ORDER BY doc_id"""


def _scoped(sql: str, dataset: str | None) -> str:
    """``sql`` reading the run's documents ($1), or with ``dataset``, those of the version of
    ``dataset`` the run published (its version is its run id) and of the nights before it."""
    if dataset is None:
        return sql.format(runs="run_id = $1", kept=_KEPT_IN_RUN, representative="",
                          curated="(SELECT * FROM documents WHERE run_id = $1)")
    ds = sql_literal(dataset)
    nights = (f"run_id IN (SELECT version FROM dataset_versions WHERE dataset = {ds} AND seq <= "
              f"(SELECT seq FROM dataset_versions WHERE dataset = {ds} AND version = $1))")
    return sql.format(runs=nights, kept=_KEPT_IN_VERSION.format(ds=ds), curated=f"curated_at({ds}, $1)",
                      representative="\n        UNION SELECT cluster_id, cluster_id FROM seed_cluster")


# One row of the `metrics` table, less its run and stage.
MetricRow = tuple[str, str, str, float]  # (model, task, metric, value)


class EvaluationVerbs:
    """Verbs for synthesize, train and evaluate: query sets, relevance through dedup clusters, pool labels, held-out cuts, pairs, models, metrics (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""

    # -- query sets -----------------------------------------------------------------------------
    # ``dataset``: read the documents, clusters and curated documents of the version of ``dataset``
    # that the run published, instead of the run's own (a night's model half reads that version).
    def has_titled_documents(self, run_id: str, *, dataset: str | None = None) -> bool:
        """Whether some titled document's dedup cluster has a member in the curated corpus: whether
        the run has a headline query (what ``evaluate.task: auto`` decides on)."""
        (row,) = self.query(_scoped(HAS_TITLES_SQL, dataset), [run_id]).to_pylist()
        return bool(row["titled"])

    def headline_queries(self, run_id: str, seed: int, max_queries: int, *,
                         dataset: str | None = None) -> pa.Table:
        """A seeded sample of at most ``max_queries`` headline queries (the titles of the documents
        whose dedup cluster the curated corpus kept a member of), by query: ``query``, ``relevant``
        (the cluster's kept members), ``in_source`` (how many queries there were to sample from)."""
        if dataset is not None and "headline" in self.frozen_tasks(dataset):
            return self._frozen_queries(run_id, "headline", seed, max_queries, dataset)
        return self.query(_scoped(HEADLINE_QUERIES_SQL, dataset), [run_id, seed, max_queries])

    def heldout_queries(self, run_id: str, seed: int, max_queries: int, *,
                        dataset: str | None = None) -> pa.Table:
        """As :meth:`headline_queries`, for the kept synthetic queries of held-out passages: the
        passage's document and the kept members of its dedup cluster are relevant."""
        if dataset is not None and "synthetic_heldout" in self.frozen_tasks(dataset):
            return self._frozen_queries(run_id, "synthetic_heldout", seed, max_queries, dataset)
        return self.query(_scoped(HELDOUT_QUERIES_SQL, dataset), [run_id, seed, max_queries])

    def _frozen_queries(self, run_id: str, task: str, seed: int, max_queries: int, dataset: str) -> pa.Table:
        sql = _scoped(FROZEN_QUERIES_SQL.replace("{ds}", sql_literal(dataset)), dataset)
        return self.query(sql, [run_id, seed, max_queries, task])

    def user_relevance(self, run_id: str, query_ids: Sequence[str], record_ids: Sequence[str],
                       source: str | None, *, dataset: str | None = None) -> dict[str, list[str]]:
        """The user's judgements (``query_ids[i]`` judges ``record_ids[i]`` relevant) matched to the
        run's documents by record id (of ingest source ``source``, or any): per query id with an
        ingested relevant document, the kept members of those documents' dedup clusters, sorted
        (empty when curation dropped every one). Query ids with no ingested document are absent."""
        params = [run_id, list(query_ids), list(record_ids), source]
        rows = self.query(_scoped(USER_RELEVANCE_SQL, dataset), params).to_pylist()
        return {r["query_id"]: r["relevant"] or [] for r in rows}

    def heldout_cuts(self, run_id: str, *, dataset: str | None = None) -> pa.Table:
        """(doc_id, query) of the run's kept held-out pairs (of ``dataset``'s frozen ones, when it
        has them), sorted: each query is cut from its document before ranking."""
        if dataset is not None and "synthetic_heldout" in self.frozen_tasks(dataset):
            return self.frozen_heldout(dataset).select(["doc_id", "query"])
        return self.query(HELDOUT_CUTS_SQL, [run_id])

    # -- frozen evaluation sets -----------------------------------------------------------------
    def frozen_tasks(self, dataset: str) -> dict[str, dict[str, object]]:
        """{task: {queries, frozen_by}} of the sets frozen for ``dataset`` (none before its first night)."""
        return {r["task"]: {"queries": r["queries"], "frozen_by": r["frozen_by"]}
                for r in self.query(FROZEN_TASKS_SQL, [dataset]).to_pylist()}

    def freeze_queries(self, dataset: str, task: str, run_id: str, shard: str | os.PathLike[str]) -> bool:
        """Freeze a queries shard (query, relevant) as ``dataset``'s set of ``task``, unless one is
        frozen already; whether this call froze it."""
        return self._freeze(FREEZE_QUERIES_SQL, dataset, task, run_id, shard)

    def freeze_heldout(self, dataset: str, run_id: str, pairs_shard: str | os.PathLike[str]) -> bool:
        """Freeze the kept held-out pairs of a pairs shard (query, its passage's doc id and text) as
        ``dataset``'s synthetic_heldout set, unless one is frozen already; whether this call froze it."""
        return self._freeze(FREEZE_HELDOUT_SQL, dataset, "synthetic_heldout", run_id, pairs_shard)

    def _freeze(self, sql: str, dataset: str, task: str, run_id: str, shard: str | os.PathLike[str]) -> bool:
        with self._write() as con:
            (inserted,) = con.execute(sql, [dataset, task, run_id, str(shard)]).fetchone()
        return bool(inserted)

    def frozen_heldout(self, dataset: str, task: str = "synthetic_heldout") -> pa.Table:
        """(doc_id, query, passage) of ``dataset``'s frozen held-out queries, sorted."""
        return self.query(FROZEN_HELDOUT_SQL, [dataset, task])

    def pool_labels(self, run_id: str, doc_ids: Sequence[str], *, dataset: str | None = None) -> pa.Table:
        """(doc_id, label) of these documents of the run (of the version of ``dataset`` it published), by doc id."""
        return self.query(_scoped(POOL_LABELS_SQL, dataset), [run_id, list(doc_ids)])

    def pool_clusters(self, run_id: str, doc_ids: Sequence[str], *,
                      dataset: str | None = None) -> dict[str, str]:
        """The dedup cluster of each of ``doc_ids`` that shares its cluster with another of them."""
        rows = self.query(_scoped(POOL_CLUSTERS_SQL, dataset), [run_id, list(doc_ids)]).to_pylist()
        return {r["doc_id"]: r["cluster_id"] for r in rows}

    # -- what the stages write ------------------------------------------------------------------
    def put_pairs(self, run_id: str, paths: Sequence[str | os.PathLike[str]]) -> int:
        """The run's `pairs` become the rows of these Parquet shards (none: no pairs); the count."""
        return self.replace("pairs", run_id, parquet=paths)

    def put_selection(self, run_id: str, purpose: str, chosen: pa.Table) -> int:
        """The run's `selections` of ``purpose`` become the rows of ``chosen`` (doc_id, rank, weight,
        key, grp: :func:`storage.selection.draw_selection`'s answer); the count."""
        rows = chosen.select(["doc_id", "rank", "weight", "key", "grp"])
        rows = rows.append_column("purpose", pa.array([purpose] * rows.num_rows, pa.string()))
        return self.replace("selections", run_id, where={"purpose": purpose}, rows=rows)

    def attribute_files(self, run_id: str, dataset: str | None = None) -> list[str]:
        """The attribute shards (doc_id, name, value) of a corpus: the run's own, and with
        ``dataset`` those of every version of it up to the run's (kept with the dataset, so a
        collected run's scores are still there)."""
        paths = self.shard_paths("doc_attributes", run_id)
        if dataset is not None:
            rows = self.query("""
                SELECT scored_files FROM dataset_versions WHERE dataset = $1
                  AND seq <= coalesce((SELECT seq FROM dataset_versions WHERE dataset = $1 AND version = $2),
                                      (SELECT max(seq) FROM dataset_versions WHERE dataset = $1))
                ORDER BY seq""", [dataset, run_id])
            paths += [f for files in rows.column("scored_files").to_pylist() for f in files or []
                      if f.rsplit("/", 1)[-1].startswith("attributes-")]
        return list(dict.fromkeys(paths))

    def put_rephrasings(self, run_id: str, paths: Sequence[str | os.PathLike[str]]) -> int:
        """The run's `rephrasings` become the rows of these Parquet shards (none: no rephrasings);
        the count."""
        return self.replace("rephrasings", run_id, parquet=paths)

    def put_model(self, run_id: str, name: str, path: str | None = None, *, base: str | None = None) -> None:
        """Record the run's model ``name`` at ``path`` (fine-tuned from ``base``), replacing the run's
        model of that name; without ``path`` the run has no model of that name."""
        rows = None
        if path is not None:
            rows = pa.table({"name": [name], "path": [path], "base": [base],
                             "created_at": [datetime.now(timezone.utc)]})
        self.replace("models", run_id, where={"name": name}, rows=rows)

    def put_metrics(self, run_id: str, stage: str, rows: Iterable[MetricRow]) -> int:
        """The run's `metrics` of ``stage`` become ``rows`` of (model, task, metric, value); the count."""
        rows = list(rows)
        table = pa.table({"stage": pa.array([stage] * len(rows), pa.string()),
                          "model": pa.array([r[0] for r in rows], pa.string()),
                          "task": pa.array([r[1] for r in rows], pa.string()),
                          "metric": pa.array([r[2] for r in rows], pa.string()),
                          "value": pa.array([float(r[3]) for r in rows], pa.float64())})
        return self.replace("metrics", run_id, where={"stage": stage}, rows=table)
