"""Catalog verbs: ingest, dedup and quality rows: duplicate record ids, drops by reason, the quality stage's decisions.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa


class CurationVerbs:
    """Verbs for ingest, dedup and quality rows: duplicate record ids, drops by reason, the quality stage's decisions (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""

    # -- quality --------------------------------------------------------------------------------
    def drops_by_reason(self, run_id: str, stage: str) -> list[dict[str, Any]]:
        """``[{"reason", "docs"}]``: how many documents of the run ``stage`` dropped for each reason,
        most first (ties by reason)."""
        return self.query(
            "SELECT reason, count(*) AS docs FROM drops WHERE run_id = ? AND stage = ?"
            " GROUP BY reason ORDER BY docs DESC, reason", [run_id, stage]).to_pylist()

    def put_quality_classifier(self, run_id: str, *, name: str, path: str, accuracy: float, auc: float) -> None:
        """Register the run's trained quality classifier (``models``) and its held-out figures
        (``metrics``, stage quality), replacing a previous attempt's."""
        self.replace("models", run_id, where={"name": name}, rows=pa.table({
            "name": [name], "path": [path], "base": ["fasttext"], "created_at": [datetime.now(timezone.utc)]}))
        self.replace("metrics", run_id, where={"stage": "quality"}, rows=pa.table({
            "stage": ["quality"] * 2, "model": [name] * 2, "task": ["classifier_holdout"] * 2,
            "metric": ["accuracy", "auc"], "value": [accuracy, auc]}))

    def update_run_config(self, run_id: str, config_json: str) -> None:
        """The run's config (JSON text), as a refilter changes it."""
        with self._write() as con:
            con.execute("UPDATE runs SET config = ? WHERE run_id = ?", [config_json, run_id])
