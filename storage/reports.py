"""Catalog verbs: what the run report, the ablations and the CLI's summaries read.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads, so no SQL
text lives outside storage/. All of them only read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The evaluation's metrics rows of model 'queries' count queries (in the set, sampled, scored...)
# rather than score a model; tables of figures leave them out.
_QUERY_COUNTS = "queries"


class ReportVerbs:
    """Verbs for what the run report, the ablations and the CLI read (mixed into Catalog:
    ``self._read()``, ``self.query``)."""

    # -- the run --------------------------------------------------------------------------------
    def run_record(self, run_id: str) -> dict[str, Any]:
        """The run's row of ``runs`` (every column); KeyError when the catalog has no such run."""
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id]).to_pylist()
        if not rows:
            raise KeyError(f"no run {run_id!r} in the catalog")
        return rows[0]

    def stage_timings(self, run_id: str) -> list[dict[str, Any]]:
        """stage, status, seconds (to 0.1 s) and why it was skipped (``stats.skipped``), in the order the stages started."""
        return self.query("SELECT stage, status, round(seconds, 1) AS seconds, stats->>'skipped' AS skipped"
                          " FROM stage_runs WHERE run_id = ? ORDER BY started_at", [run_id]).to_pylist()

    def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recent runs (``refinery runs``): status, minutes, books, kept pairs, and
        base and tuned nDCG@10 with a row per evaluation task, newest first."""
        return self.query(
            """
            SELECT r.run_id, r.status, r.started_at::TIMESTAMP(0) AS started,
                   round(epoch(r.finished_at - r.started_at) / 60, 1) AS minutes,
                   r.docs_in, r.docs_kept, r.docs_dropped, r.docs_rejected,
                   (SELECT count(*) FILTER (kept) FROM pairs p WHERE p.run_id = r.run_id) AS pairs_kept,
                   m.task AS eval_task,
                   max(m.value) FILTER (m.model = 'base' AND m.metric = 'ndcg@10') AS base_ndcg10,
                   max(m.value) FILTER (m.model = 'tuned' AND m.metric = 'ndcg@10') AS tuned_ndcg10,
                   left(r.error, 80) AS error
            FROM (SELECT * FROM runs ORDER BY started_at DESC LIMIT ?) r
            LEFT JOIN metrics m ON m.run_id = r.run_id AND m.stage = 'evaluate' AND m.model <> ?
            GROUP BY ALL ORDER BY started DESC, r.run_id, eval_task
            """, [limit, _QUERY_COUNTS]).to_pylist()

    def budget_plan_and_actual(self, run_id: str) -> list[dict[str, Any]]:
        """stage, metric, plan, actual: a budgeted run's ``metrics`` of stage 'budget', planned and
        actual figures side by side (either NULL where only the other was recorded)."""
        return self.query("SELECT model AS stage, metric, max(value) FILTER (task = 'plan') AS plan,"
                          " max(value) FILTER (task = 'actual') AS actual FROM metrics"
                          " WHERE run_id = ? AND stage = 'budget' AND task IN ('plan', 'actual')"
                          " GROUP BY ALL ORDER BY stage, metric", [run_id]).to_pylist()

    # -- curation -------------------------------------------------------------------------------
    def drops_by_stage_and_reason(self, run_id: str) -> list[dict[str, Any]]:
        """stage, reason, docs: the run's drops counted per stage and reason, each stage's largest first."""
        return self.query("SELECT stage, reason, count(*) AS docs FROM drops WHERE run_id = ?"
                          " GROUP BY ALL ORDER BY stage, docs DESC, reason", [run_id]).to_pylist()

    def rejects_by_reason(self, run_id: str) -> list[dict[str, Any]]:
        """reason, records, example: rejected records per reason family (the text before ':'), one
        example each; details such as the id in ``duplicate_id: <id> (first at <location>)`` differ
        per record and would make a row each."""
        return self.query("SELECT split_part(reason, ':', 1) AS reason, count(*) AS records, min(reason) AS example"
                          " FROM rejects WHERE run_id = ? GROUP BY 1 ORDER BY records DESC, reason",
                          [run_id]).to_pylist()

    def scored_documents(self, run_id: str) -> int:
        """How many documents the quality stage scored (have a row in ``doc_attributes``)."""
        return self.query("SELECT count(DISTINCT doc_id) AS n FROM doc_attributes WHERE run_id = ?",
                          [run_id]).column("n")[0].as_py()

    def attribute_sample(self, run_id: str, names: Sequence[str], size: int) -> dict[str, list[float]]:
        """Attribute name → its values over a seeded sample of ``size`` documents (those of the
        smallest ``hash(doc_id)`` among the documents scored for ``names[0]``), the same every time;
        in doc_id order, so the lists line up across names. Names without values are left out."""
        if not names:
            return {}
        rows = self.query(
            "SELECT name, list(value ORDER BY doc_id) AS v FROM doc_attributes WHERE run_id = ? AND name IN ("
            + ", ".join("?" * len(names)) + ") AND doc_id IN (SELECT doc_id FROM doc_attributes WHERE run_id = ?"
            " AND name = ? ORDER BY hash(doc_id), doc_id LIMIT ?) GROUP BY name",
            [run_id, *names, run_id, names[0], int(size)]).to_pylist()
        return {r["name"]: r["v"] for r in rows}

    # -- synthesis and training -----------------------------------------------------------------
    def pairs_by_generator(self, run_id: str) -> list[dict[str, Any]]:
        """generator, generated, kept, held_out, keep_rate (to 3 places): the run's pairs per generator."""
        return self.query("""SELECT generator, count(*) AS generated, count(*) FILTER (kept) AS kept,
                                    count(*) FILTER (kept AND split = 'heldout') AS held_out,
                                    round(avg(CASE WHEN kept THEN 1 ELSE 0 END), 3) AS keep_rate
                             FROM pairs WHERE run_id = ? GROUP BY generator ORDER BY generator""",
                          [run_id]).to_pylist()

    def synthesis_diversity(self, run_id: str) -> list[dict[str, Any]]:
        """generator, metric, value (to 4 places): the synthesize stage's diversity metrics."""
        return self.query("""SELECT model AS generator, metric, round(value, 4) AS value FROM metrics
                             WHERE run_id = ? AND stage = 'synthesize' AND task IS DISTINCT FROM 'rephrasings'
                             ORDER BY model, metric""",
                          [run_id]).to_pylist()

    def rephrasing_outcomes(self, run_id: str) -> list[dict[str, Any]]:
        """style, generator, kept, reason, rephrasings (a count), kept_pairs: what became of the
        run's rephrasings (WRAP), and the kept pairs of the rephrased passages."""
        return self.query("""
            WITH kept_pairs AS (SELECT doc_id, count(*) AS n FROM pairs WHERE run_id = ? AND kept GROUP BY doc_id)
            SELECT r.style, r.generator, r.kept, r.reason, count(*) AS rephrasings,
                   coalesce(sum(k.n), 0)::BIGINT AS kept_pairs
            FROM rephrasings r LEFT JOIN kept_pairs k USING (doc_id) WHERE r.run_id = ?
            GROUP BY ALL ORDER BY r.style, r.kept DESC, r.reason""", [run_id, run_id]).to_pylist()

    def rephrasing_diversity(self, run_id: str) -> list[dict[str, Any]]:
        """One row per style and the originals: each diversity metric (to 4 places) of the
        synthesize stage's `rephrasings` task."""
        rows = self.query("""SELECT model, metric, round(value, 4) AS value FROM metrics
                             WHERE run_id = ? AND stage = 'synthesize' AND task = 'rephrasings'
                             ORDER BY model = 'originals' DESC, model, metric""", [run_id]).to_pylist()
        table: dict[str, dict[str, Any]] = {}
        for r in rows:
            table.setdefault(r["model"], {"texts": r["model"]})[r["metric"]] = r["value"]
        return list(table.values())

    def kept_pair_sample(self, run_id: str, size: int = 8) -> list[dict[str, Any]]:
        """generator, split, query, doc_id, rank of ``size`` kept pairs, chosen by a hash of their id."""
        return self.query("""SELECT generator, split, query, doc_id, rank FROM pairs WHERE run_id = ? AND kept
                             ORDER BY hash(pair_id) LIMIT ?""", [run_id, int(size)]).to_pylist()

    def kept_training_pairs(self, run_id: str) -> int:
        """Kept pairs the run trains on: not held out (no split counts as train)."""
        return self.query("SELECT count(*) AS n FROM pairs WHERE run_id = ? AND kept"
                          " AND coalesce(split, 'train') = 'train'", [run_id]).column("n")[0].as_py()

    def run_models(self, run_id: str) -> list[dict[str, Any]]:
        """name, path, base of the models the run trained."""
        return self.query("SELECT name, path, base FROM models WHERE run_id = ?", [run_id]).to_pylist()

    # -- evaluation -----------------------------------------------------------------------------
    def evaluation_metrics(self, run_id: str, task: str | None = None) -> list[dict[str, Any]]:
        """task, model, metric, value: every ``metrics`` row of the evaluate stage (of one ``task``
        when given), including model 'queries', whose rows count the task's queries."""
        if task is None:
            return self.query("SELECT task, model, metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate'",
                              [run_id]).to_pylist()
        return self.query("SELECT task, model, metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate'"
                          " AND task = ?", [run_id, task]).to_pylist()

    def evaluation_table(self, run_id: str, task: str) -> list[dict[str, Any]]:
        """model, nDCG@10, MRR@10, Recall@100 of one evaluation task, a row per model: bm25, base, promoted,
        tuned, hybrid, then any other by name."""
        return self.query(
            "SELECT model, max(value) FILTER (metric = 'ndcg@10') AS \"nDCG@10\","
            " max(value) FILTER (metric = 'mrr@10') AS \"MRR@10\","
            " max(value) FILTER (metric = 'recall@100') AS \"Recall@100\""
            " FROM metrics WHERE run_id = ? AND stage = 'evaluate' AND task = ? AND model <> ? GROUP BY model"
            " ORDER BY CASE model WHEN 'bm25' THEN 0 WHEN 'base' THEN 1 WHEN 'promoted' THEN 2 WHEN 'tuned' THEN 3"
            " WHEN 'hybrid' THEN 4 ELSE 5 END, model",
            [run_id, task, _QUERY_COUNTS]).to_pylist()
