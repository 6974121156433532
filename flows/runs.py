"""A run's life beyond the chain: starting from another run's curated corpus, and deleting old runs.

``reuse_curation`` makes a new run begin where another one's curation ended (``refinery run
--from-run``): the finished curation stages' folders are hard-linked into the new run (no disk,
no recomputation) and their catalog rows copied under the new run id, so the new run is complete
and self-contained — deleting the old one later takes nothing from it. ``collect_garbage`` is
``refinery gc``.
"""

from __future__ import annotations

from dataclasses import dataclass

from refinery.flows.runtime import RunSpec
from refinery.storage import Catalog, DataHome, StageMarker, link_tree, remove_tree, rewrite_paths
from refinery.tasks.config import CURATION_STAGES

# What each curation stage put in the catalog, by table and the rows' narrowing (see flows/*.py).
STAGE_ROWS: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "ingest": (("documents", {}), ("rejects", {}), ("file_books", {})),
    "dedup": (("dedup_clusters", {}), ("drops", {"stage": "dedup"})),
    "quality": (("doc_attributes", {}), ("drops", {"stage": "quality"}), ("metrics", {"stage": "quality"}),
                ("models", {"name": "quality_classifier"})),
}
# Statuses of a run whose outputs are whole (a refiltered run is a completed one, re-decided).
FINISHED = ("completed", "refiltered")


def finished_curation(home: DataHome, run_id: str) -> list[str]:
    """The curation stages ``run_id`` finished, in chain order (a prefix of ingest, dedup, quality)."""
    done = []
    for stage in CURATION_STAGES:
        if StageMarker(home.stage_dir(run_id, stage)).read() is None:
            break
        done.append(stage)
    return done


def reuse_curation(run: RunSpec, source_run: str) -> list[str]:
    """Give ``run`` the finished curation stages of ``source_run``; the stages reused.

    Per stage: its folder is linked (its JSON rewritten to the new paths), its catalog rows are
    copied and recorded as ``reused``, then its marker is written; a stage already finished in
    ``run`` is left as it is.
    """
    home = run.data_home
    stages = finished_curation(home, source_run)
    if not stages:
        raise ValueError(f"run {source_run} finished no curation stage to reuse (`refinery runs` lists the runs)")
    catalog: Catalog = run.catalog
    old, new = str(home.run_dir(source_run)) + "/", str(run.run_dir) + "/"
    for stage in stages:
        if StageMarker(run.stage_dir(stage)).read() is not None:
            continue
        source = StageMarker(home.stage_dir(source_run, stage))
        link_tree(source.path.parent, run.stage_dir(stage), rewrite=(old, new), skip=[source.path.name])
        for table, where in STAGE_ROWS[stage]:
            catalog.copy_run_rows(table, source_run, run.run_id, where=where, paths=(old, new))
        catalog.copy_run_rows("stage_runs", source_run, run.run_id, where={"stage": stage})
        catalog.execute_write("UPDATE stage_runs SET status = 'reused', stats = json_merge_patch(stats, ?)"
                              " WHERE run_id = ? AND stage = ?",
                              [f'{{"reused_from": "{source_run}"}}', run.run_id, stage])
        # the marker last: a run killed before it has an unfinished stage, which a resume redoes
        # (replacing the rows copied above)
        StageMarker(run.stage_dir(stage)).write(rewrite_paths(source.read(), old, new))
    return stages


@dataclass(frozen=True)
class Collection:
    kept: list[str]
    deleted: list[str]
    orphans: list[str]  # run folders without a row in `runs`


def collect_garbage(home: DataHome, keep: int, *, dry_run: bool = False) -> Collection:
    """Delete every run but the ``keep`` most recent finished ones: rows, shards, models, reports.

    The caller holds the home's run lock, so no run is live and the catalog has no other writer.
    """
    if keep < 0:
        raise ValueError(f"--keep must be >= 0, got {keep}")
    catalog = Catalog(home.catalog_path)
    runs = catalog.query("SELECT run_id, status FROM runs ORDER BY started_at DESC, run_id DESC").to_pylist()
    kept = [r["run_id"] for r in runs if r["status"] in FINISHED][:keep]
    deleted = [r["run_id"] for r in runs if r["run_id"] not in kept]
    # folders no run row names: what a gc or a run killed before its first row left behind
    known = {r["run_id"] for r in runs}
    orphans = sorted(p.name for p in (home.root / "runs").iterdir() if p.is_dir() and p.name not in known)
    if not dry_run:
        catalog.delete_runs(deleted)  # rows first: a catalog never names a deleted file
        for run_id in deleted + orphans:
            remove_tree(home.run_dir(run_id))
    return Collection(kept=kept, deleted=deleted, orphans=orphans)
