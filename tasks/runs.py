"""A run's life beyond the chain: starting from another run's curated corpus, and deleting old runs.

``reuse_curation`` makes a new run begin where another one's curation ended (``refinery run
--from-run``): the finished curation stages' folders are hard-linked into the new run (no disk,
no recomputation) and their catalog rows copied under the new run id, so the new run is complete
and self-contained — deleting the old one later takes nothing from it. ``reuse_synthesis`` does
the same for a synthesize stage (``refinery ablate``: variants that differ in training only train
on one synthesis). ``collect_garbage`` is
``refinery gc``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict

from refinery.storage import Catalog, DataHome, StageMarker, link_tree, remove_tree, rewrite_paths
from refinery.storage.location import Location
from refinery.tasks.config import CURATION_STAGES, RefineryConfig


class RunSpec(BaseModel):
    """The parameter every stage flow takes: which run, where its data lives, its config."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    home: str
    config: RefineryConfig
    # Whether the night's model goes through the promotion gate (and evaluate scores the promoted
    # model it would replace). An ablation variant's run does not: it neither starts from nor
    # replaces the dataset's promoted model.
    promotes: bool = True

    @property
    def data_home(self) -> DataHome:
        return DataHome.at(self.home, self.config.catalog)

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.data_home.catalog_path)

    @property
    def run_dir(self) -> Location:
        return self.data_home.run_dir(self.run_id)

    def stage_dir(self, stage: str) -> Location:
        return self.data_home.stage_dir(self.run_id, stage)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)

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


def reuse_curation(home: DataHome, run_id: str, source_run: str) -> list[str]:
    """Give run ``run_id`` the finished curation stages of ``source_run``; the stages reused.

    Per stage: its folder is linked (its JSON rewritten to the new paths), its catalog rows are
    copied and recorded as ``reused``, then its marker is written; a stage already finished in
    ``run_id`` is left as it is.
    """
    stages = finished_curation(home, source_run)
    if not stages:
        raise ValueError(f"run {source_run} finished no curation stage to reuse (`refinery runs` lists the runs)")
    for stage in stages:
        _reuse_stage(home, run_id, source_run, stage)
    return stages


def reuse_synthesis(home: DataHome, run_id: str, source_run: str) -> None:
    """Give run ``run_id`` the finished synthesize stage of ``source_run`` (its pairs, held-out split
    and evaluation queries), as :func:`reuse_curation` gives curation stages: what lets several runs
    train on one synthesis (``refinery ablate``'s train-only variants).

    Both runs must have the same curated corpus: each reused the same run's curation (or
    ``run_id`` reused ``source_run``'s)."""
    if StageMarker(home.stage_dir(source_run, "synthesize")).read() is None:
        raise ValueError(f"run {source_run} has not finished synthesize: nothing to reuse")

    def curated_by(run: str) -> str | None:
        marker = StageMarker(home.stage_dir(run, CURATION_STAGES[-1])).read()
        return None if marker is None else marker.get("reused_from", run)

    if curated_by(run_id) is None or curated_by(run_id) != curated_by(source_run):
        raise ValueError(f"run {run_id} does not have the curated corpus run {source_run} synthesized from: "
                         "reuse the same run's curation first")
    _reuse_stage(home, run_id, source_run, "synthesize")


def _reuse_stage(home: DataHome, run_id: str, source_run: str, stage: str) -> None:
    target = StageMarker(home.stage_dir(run_id, stage))
    if target.read() is not None:
        return
    catalog = Catalog(home.catalog_path)
    old, new = str(home.run_dir(source_run)) + "/", str(home.run_dir(run_id)) + "/"
    source = StageMarker(home.stage_dir(source_run, stage))
    link_tree(source.path.parent, home.stage_dir(run_id, stage), rewrite=(old, new), skip=[source.path.name])
    catalog.copy_stage_rows(stage, source_run, run_id, paths=(old, new))
    catalog.mark_reused(run_id, stage, source_run)
    # the marker last: a run killed before it has an unfinished stage, which a resume redoes
    # (replacing the rows copied above)
    target.write({**rewrite_paths(source.read(), old, new), "reused_from": source_run})


@dataclass(frozen=True)
class Collection:
    kept: list[str]
    deleted: list[str]
    orphans: list[str]  # run folders without a row in `runs`


def collect_garbage(home: DataHome, keep: int, *, dry_run: bool = False) -> Collection:
    """Delete every run but the ``keep`` most recent finished ones and those holding a dataset's
    promoted model: rows, shards, models, reports.

    The caller holds the home's run lock, so no run is live and the catalog has no other writer.
    """
    if keep < 0:
        raise ValueError(f"--keep must be >= 0, got {keep}")
    catalog = Catalog(home.catalog_path)
    runs = catalog.runs_newest_first()
    kept = [r["run_id"] for r in runs if r["status"] in FINISHED][:keep]
    # a dataset's promoted model stays: its row is what the next night trains from and is gated against,
    # and its run's pairs what it replays
    kept += [r for r in catalog.promoted_runs() if r not in kept]
    deleted = [r["run_id"] for r in runs if r["run_id"] not in kept]
    # folders no run row names: what a gc or a run killed before its first row left behind
    known = {r["run_id"] for r in runs}
    orphans = sorted(p.name for p in (home.root / "runs").iterdir() if p.is_dir() and p.name not in known)
    if not dry_run:
        catalog.delete_runs(deleted)  # rows first: a catalog never names a deleted file
        for run_id in deleted + orphans:
            remove_tree(home.run_dir(run_id))
    return Collection(kept=kept, deleted=deleted, orphans=orphans)
