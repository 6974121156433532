"""Catalog verbs: each dataset's promoted model, the gate's decisions, the pairs earlier nights trained on
and the data maps of them (``pair_map``, ``pair_drops``).

A night's fine-tuned model is a row of ``models`` (name ``tuned``). The promotion gate decides it:
``promoted`` true (it replaced the dataset's promoted model) or false (it stays a candidate), with
``gate`` (JSON: the task, what it was compared with, the difference and its interval, the reason)
and ``decided_at``. The dataset's promoted model is its most recently promoted one; its files are
copied to one stable folder per dataset (:meth:`refinery.storage.layout.DataHome.promoted_model_dir`).

A mixin of :class:`refinery.storage.catalog.Catalog`; SQL text stays in storage/.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

TUNED = "tuned"

_PROMOTED = """
    SELECT run_id, path, base, gate, decided_at FROM models
    WHERE dataset = $1 AND name = 'tuned' AND promoted
    ORDER BY decided_at DESC LIMIT 1"""

# Kept training pairs' shards of the nights that published into a dataset before a run did (all of
# them, for a run that published nothing), oldest first; a night whose synthesize wrote no pairs has none.
_EARLIER_PAIRS = """
    SELECT v.version AS run_id, json_extract_string(s.stats, '$.pairs_path') AS path
    FROM dataset_versions v JOIN stage_runs s ON s.run_id = v.version AND s.stage = 'synthesize'
    WHERE v.dataset = $1 AND v.version <> $2 AND s.status = 'completed'
      AND v.seq < coalesce((SELECT seq FROM dataset_versions WHERE dataset = $1 AND version = $2), 9223372036854775807)
      AND json_extract_string(s.stats, '$.pairs_path') IS NOT NULL
    ORDER BY v.seq"""

# The pairs whose latest data map (``pair_map`` of the most recently started run before ``$1``, as runs
# other than ``$1`` go) put them in ``$2``: pair id and the run of that map.
_LATEST_MAP_REGION = """
    SELECT pair_id, run_id FROM (
        SELECT m.pair_id, m.run_id, m.region,
               row_number() OVER (PARTITION BY m.pair_id ORDER BY r.started_at DESC, m.run_id DESC) AS latest
        FROM pair_map m JOIN runs r USING (run_id)
        WHERE m.run_id <> $1 AND m.pair_id IS NOT NULL
          AND r.started_at <= (SELECT coalesce(max(started_at), now()) FROM runs WHERE run_id = $1))
    WHERE latest = 1 AND region = $2
    ORDER BY pair_id"""

_MODEL_ROWS = """
    SELECT m.dataset, m.run_id, m.name, m.promoted, m.base,
           json_extract_string(m.gate, '$.task') AS task,
           json_extract_string(m.gate, '$.compared_with') AS compared_with,
           CAST(json_extract(m.gate, '$.delta') AS DOUBLE) AS delta,
           CAST(json_extract(m.gate, '$.ci_low') AS DOUBLE) AS ci_low,
           CAST(json_extract(m.gate, '$.ci_high') AS DOUBLE) AS ci_high,
           json_extract_string(m.gate, '$.reason') AS reason,
           m.decided_at, m.path
    FROM models m WHERE m.name = 'tuned' AND ($1 IS NULL OR m.dataset = $1)
    ORDER BY m.created_at"""

# Each decided night of a dataset, oldest first, with the nDCG@10 of its model and of the base model
# on the task the gate decided on.
_HISTORY = """
    SELECT m.run_id, m.decided_at, m.promoted, json_extract_string(m.gate, '$.task') AS task,
           (SELECT max(x.value) FROM metrics x WHERE x.run_id = m.run_id AND x.stage = 'evaluate'
              AND x.model = 'tuned' AND x.metric = 'ndcg@10' AND x.task = json_extract_string(m.gate, '$.task')) AS tuned,
           (SELECT max(x.value) FROM metrics x WHERE x.run_id = m.run_id AND x.stage = 'evaluate'
              AND x.model = 'base' AND x.metric = 'ndcg@10' AND x.task = json_extract_string(m.gate, '$.task')) AS base
    FROM models m WHERE m.dataset = $1 AND m.name = 'tuned' AND m.decided_at IS NOT NULL
    ORDER BY m.decided_at"""


class ModelVerbs:
    def promoted_model(self, dataset: str) -> dict[str, Any] | None:
        """The dataset's promoted model (run_id, path of the run's model, base, gate, decided_at), or None."""
        rows = self.query(_PROMOTED, [dataset]).to_pylist()
        if not rows:
            return None
        row = rows[0]
        return {**row, "gate": json.loads(row["gate"]) if row["gate"] else None}

    def promoted_runs(self) -> list[str]:
        """The runs whose model is a dataset's promoted one now (``refinery gc`` keeps them)."""
        rows = self.query("SELECT arg_max(run_id, decided_at) AS run_id FROM models "
                          "WHERE name = 'tuned' AND promoted GROUP BY dataset").to_pylist()
        return sorted(r["run_id"] for r in rows)

    def decide_model(self, run_id: str, dataset: str, *, promoted: bool, gate: dict[str, Any]) -> None:
        """Record the gate's decision on the run's tuned model (which must be recorded)."""
        with self._write() as con:
            found = con.execute("SELECT count(*) FROM models WHERE run_id = ? AND name = ? AND path IS NOT NULL",
                                [run_id, TUNED]).fetchone()[0]
            if not found:
                raise ValueError(f"run {run_id} has no tuned model to decide on")
            con.execute("UPDATE models SET dataset = ?, promoted = ?, gate = ?, decided_at = ? "
                        "WHERE run_id = ? AND name = ?",
                        [dataset, promoted, json.dumps(gate), datetime.now(timezone.utc), run_id, TUNED])

    def earlier_pair_shards(self, dataset: str, run_id: str) -> list[dict[str, str]]:
        """(run_id, path) of the synthesize pairs shards of the nights before ``run_id`` in ``dataset``."""
        return self.query(_EARLIER_PAIRS, [dataset, run_id]).to_pylist()

    def put_pair_map(self, run_id: str, path: str | None) -> int:
        """The run's ``pair_map`` becomes the rows of the Parquet file at ``path`` (None: no map); the count."""
        return self.replace("pair_map", run_id, parquet=[path] if path else [])

    def put_pair_drops(self, run_id: str, stage: str, path: str | None) -> int:
        """The run's ``pair_drops`` of ``stage`` become the rows of the Parquet file at ``path`` (which has a
        ``stage`` column of ``stage``; None: none); the count."""
        return self.replace("pair_drops", run_id, parquet=[path] if path else [], where={"stage": stage})

    def pair_map(self, run_id: str) -> list[dict[str, Any]]:
        """The run's data map: pair_id, doc_id, confidence, variability, correctness, checkpoints, region."""
        return self.query("SELECT * EXCLUDE (run_id) FROM pair_map WHERE run_id = ? ORDER BY pair_id",
                          [run_id]).to_pylist()

    def pair_drops_by_reason(self, run_id: str) -> list[dict[str, Any]]:
        """stage, reason, decided_in, pairs: the pairs the run's stages left out, counted."""
        return self.query("SELECT stage, reason, decided_in, count(*) AS pairs FROM pair_drops WHERE run_id = ?"
                          " GROUP BY ALL ORDER BY stage, pairs DESC, reason, decided_in", [run_id]).to_pylist()

    def latest_map_region(self, run_id: str, region: str) -> dict[str, str]:
        """Pair id → run, of the pairs whose latest data map before ``run_id`` (by the runs' start) put
        them in ``region``."""
        rows = self.query(_LATEST_MAP_REGION, [run_id, region]).to_pylist()
        return {r["pair_id"]: r["run_id"] for r in rows}

    def promotion_history(self, dataset: str) -> list[dict[str, Any]]:
        """Each night the gate decided on, oldest first: run_id, decided_at, promoted, task, and the
        nDCG@10 of the night's model (``tuned``) and of the base model on that task."""
        return self.query(_HISTORY, [dataset]).to_pylist()

    def model_rows(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Every night's tuned model with the gate's decision, oldest first (`refinery models`)."""
        return self.query(_MODEL_ROWS, [dataset]).to_pylist()
