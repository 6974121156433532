"""Catalog verbs: runs, stage_runs, run reuse (--from-run) and deletion (gc); the run summaries the CLI prints.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# What each curation stage (and synthesize) put in the catalog, by table and the rows' narrowing (see
# flows/*.py): what a run reusing that stage (``refinery run --from-run``) copies.
STAGE_ROWS: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "ingest": (("documents", {}), ("rejects", {}), ("file_books", {})),
    "dedup": (("dedup_clusters", {}), ("drops", {"stage": "dedup"})),
    "quality": (("doc_attributes", {}), ("drops", {"stage": "quality"}), ("metrics", {"stage": "quality"}),
                ("models", {"name": "quality_classifier"}), ("dedup_clusters", {"kind": "semantic"})),
    # reused by `refinery ablate`'s train-only variants (tasks.runs.reuse_synthesis)
    "synthesize": (("pairs", {}), ("metrics", {"stage": "synthesize"}), ("rephrasings", {})),
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class RunVerbs:
    """Verbs for runs, stage_runs, run reuse (--from-run) and deletion (gc); the run summaries the CLI prints (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, *, config: dict[str, Any], run_dir: Path) -> None:
        with self._write() as con:
            # a resumed run keeps its started_at; its figures and error are those of this attempt
            con.execute(
                "INSERT INTO runs (run_id, status, started_at, config, run_dir) VALUES (?, 'running', ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, error = NULL, warnings = NULL,"
                " config = excluded.config, run_dir = excluded.run_dir",
                [run_id, _now(), json.dumps(config, default=str), str(run_dir)],
            )

    def mark_interrupted(self) -> int:
        """Runs still marked ``running`` become ``interrupted`` (call only while holding the run lock)."""
        with self._write() as con:
            return con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'").fetchone()[0]

    def finish_run(self, run_id: str, *, status: str, error: str | None = None, **counts: int) -> None:
        sets = ["status = ?", "finished_at = ?", "error = ?"]
        params: list[Any] = [status, _now(), error]
        for name, value in counts.items():
            sets.append(f"{name} = ?")
            params.append(value)
        with self._write() as con:
            con.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", [*params, run_id])

    def record_warnings(self, run_id: str, warnings: list[dict[str, Any]]) -> None:
        """The run's warnings (the quality drop-rate guard's, tasks/quality/guard.py) in ``runs.warnings``,
        replacing earlier ones (a refilter re-decides them); NULL when there are none."""
        with self._write() as con:
            con.execute("UPDATE runs SET warnings = ? WHERE run_id = ?",
                        [json.dumps(warnings, default=str) if warnings else None, run_id])

    def run_warnings(self, run_id: str) -> list[dict[str, Any]]:
        """The run's warnings as :meth:`record_warnings` stored them (none: an empty list)."""
        rows = self.query("SELECT warnings FROM runs WHERE run_id = ?", [run_id]).column("warnings").to_pylist()
        return json.loads(rows[0]) if rows and rows[0] else []

    def update_run_config(self, run_id: str, config: dict[str, Any]) -> None:
        """The config a run now stands for (a refilter re-decides its quality stage under new thresholds)."""
        with self._write() as con:
            con.execute("UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config, default=str), run_id])

    def runs_newest_first(self) -> list[dict[str, Any]]:
        """Every run's id and status, the most recently started first (what ``refinery gc`` chooses from)."""
        return self.query("SELECT run_id, status FROM runs ORDER BY started_at DESC, run_id DESC").to_pylist()

    # -- stages -------------------------------------------------------------------------------
    def record_stage(
        self, run_id: str, stage: str, *, status: str, started_at: datetime, stats: dict[str, Any]
    ) -> None:
        finished = _now()
        with self._write() as con:
            con.execute("DELETE FROM stage_runs WHERE run_id = ? AND stage = ?", [run_id, stage])
            con.execute(
                "INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [run_id, stage, status, started_at, finished, (finished - started_at).total_seconds(),
                 json.dumps(stats, default=str)],
            )

    def copy_stage_rows(self, stage: str, source_run: str, run_id: str, *, paths: tuple[str, str]) -> None:
        """Give ``run_id`` ``source_run``'s rows of a stage (:data:`STAGE_ROWS`) and its
        ``stage_runs`` row, file paths with the prefix ``paths[0]`` rewritten to ``paths[1]``."""
        for table, where in STAGE_ROWS[stage]:
            self.copy_run_rows(table, source_run, run_id, where=where, paths=paths)
        self.copy_run_rows("stage_runs", source_run, run_id, where={"stage": stage})

    def mark_reused(self, run_id: str, stage: str, source_run: str) -> None:
        """``run_id``'s row of ``stage`` in ``stage_runs`` says ``reused``, and from which run."""
        with self._write() as con:
            con.execute("UPDATE stage_runs SET status = 'reused', stats = json_merge_patch(stats, ?)"
                        " WHERE run_id = ? AND stage = ?",
                        [json.dumps({"reused_from": source_run}), run_id, stage])
