"""refilter of a dataset: every document its versions scored, re-decided under new thresholds from
the attributes each version kept, published as a new version.

A current document that now fails is retired with the reason of the rule it fails; a document that
now passes and is not current comes back, unless a later text of its record is current, its record
was retired for a source reason (changed or removed) or its file later changed or left a mirrored
source, or it duplicates a current document or another one coming back (the dataset stays
deduplicated). The documents that come back are written by a worker as a new file of the dataset
and indexed for the dedup of later nights; then one catalog transaction publishes the version,
named by a new id. Nothing changed: no version.

The refilter holds the data home's run lock. Its decisions go to
``<dataset>/refilter/<version>/`` (with ``refilter.json``: the thresholds and what changed); a
refilter stopped before it published leaves that folder, and the next one takes over its version
id and redoes what is not done, so a rerun publishes the same version, or nothing when nothing
changes. No ``runs`` row: a dataset refilter has no run folder, stages, books or report, which
``refinery runs``, ``report``, ``--resume``, ``--from-run`` and ``gc --keep`` expect of a run;
its version is a ``dataset_versions`` row like a night's (``scored_files`` empty: it scored nothing).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from refinery.flows.runtime import dask_cluster, gather
from refinery.storage import Catalog, DataHome, remove_tree, sweep_partial_writes, write_text_atomic
from refinery.tasks.config import RefineryConfig
from refinery.tasks.dedup.against import DatasetRef, index_settings
from refinery.tasks.exceptions import CatalogError, ConfigError, InputError, RefilterError
from refinery.tasks.ingest.readers import source_name
from refinery.tasks.quality import family_fingerprints
from refinery.tasks.quality.dataset_refilter import (
    decide_scored_shard,
    returned_documents,
    scored_shards,
    sweep_unpublished,
)
from refinery.tasks.quality.refilter import rescored_families
from refinery.tasks.runs import new_run_id

# Reading one shard's attributes back and deciding: seconds. Bringing documents back signs and
# indexes them (the dedup stage's work on as many documents). Both rewrite what they write: a retry is safe.
decide_task = task(decide_scored_shard, name="dataset-refilter-shard", task_run_name="re-decide a shard of {version}",
                   retries=1, timeout_seconds=3600)
returned_task = task(returned_documents, name="dataset-returned-documents",
                     task_run_name="bring back documents as {version}", retries=1, timeout_seconds=3 * 3600)


def refilter_sources(home: DataHome, dataset: str, config: RefineryConfig) -> list[dict[str, Any]]:
    """The versions of ``dataset`` (:meth:`~storage.catalog.Catalog.dataset_refilter_sources`), once
    checked that it can be re-decided under ``config``: every version kept the fingerprints of the
    quality families it scored with, and ``config`` scores those families the same; ``config``
    indexes documents as the dataset's index was built (the documents that come back are indexed
    with it). Called again under the run lock by the flow; the CLI calls it first for a one-line error."""
    if config.quality.semdedup.enabled:
        # it re-decides the rules only: a paraphrase semdedup dropped passes them and would come back
        raise ConfigError("refilter --dataset re-decides the quality rules only and cannot run semantic dedup: "
                          "set quality.semdedup.enabled: false (documents semdedup dropped that pass the rules "
                          "then come back unless dedup matches them)")
    try:
        catalog = Catalog(home.catalog_path)
        versions, names = catalog.dataset_refilter_sources(dataset), catalog.dataset_names()
    except CatalogError:  # no catalog, or one no night of a dataset has written to
        versions, names = [], []
    if not versions:
        raise InputError(f"no dataset {dataset} under {home.root} (its datasets: {', '.join(names) or 'none'})")
    for v in versions:
        if v["quality"] is None:
            raise RefilterError(f"version {v['version']} of dataset {dataset} kept no quality fingerprints "
                                f"(published by an older Refinery): the dataset cannot be re-decided")
        changed = rescored_families(v["quality"], config.quality)
        if changed:
            raise RefilterError(f"these families compute different scores under the new config than version "
                                f"{v['version']} of dataset {dataset} was scored with, and need new nights: "
                                f"{', '.join(changed)}")
    settings, wanted = versions[-1]["dedup"], index_settings(config.dedup)
    if settings is not None and settings != wanted:
        differ = ", ".join(f"{k}: {settings.get(k)!r} -> {wanted[k]!r}" for k in wanted if settings.get(k) != wanted[k])
        raise ConfigError(f"dataset {dataset} was indexed with other dedup settings ({differ}); "
                          f"give the refilter the dataset's dedup section")
    return versions


def _attempt(home: DataHome, dataset: str, published: list[str]) -> str:
    """The version id this refilter publishes as: a stopped refilter's (its folder is there, the
    catalog does not list it, and no version was published since it started), else a new one.
    What stopped attempts wrote is swept first."""
    root = home.dataset_dir(dataset) / "refilter"
    pending = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in published) if root.exists() else []
    # ids are start times: one older than the newest version would not sort as the version it follows
    version = pending[-1] if pending and pending[-1] > max(published) else new_run_id()
    for stopped in pending:
        sweep_unpublished(str(home.dataset_docs_dir(dataset, stopped)), str(home.dataset_index_dir(dataset)), stopped)
        if stopped != version:
            remove_tree(root / stopped)
    sweep_partial_writes(root / version)
    (root / version).mkdir(parents=True, exist_ok=True)
    return version


@flow(name="refilter-dataset-shards", log_prints=True)
def refilter_dataset_flow(dataset: str, version: str, versions: list[dict[str, Any]], config: RefineryConfig,
                          home: str) -> dict[str, Any]:
    """Re-decide every scored shard of every version, bring back what now passes, publish (see the module)."""
    data_home = DataHome.at(home, config.catalog)
    catalog = Catalog(data_home.catalog_path)
    out = data_home.dataset_dir(dataset) / "refilter" / version
    shards = [s for v in versions for s in scored_shards(v["version"], v["scored_files"])]
    results = gather(decide_task.map([s["documents"] for s in shards], [s["attributes"] for s in shards],
                                     [s["drops"] for s in shards], [s["version"] for s in shards],
                                     cfg=unmapped(config.quality), out_dir=unmapped(str(out))),
                     "re-decide shards")
    decisions = [r["decisions"] for r in results]
    mirror = sorted({source_name(s) for s in config.ingest.sources if s.mode == "mirror"})
    failing, passing = catalog.dataset_refilter_plan(dataset, decisions, mirror)
    returned = _bring_back(catalog, data_home, dataset, version, config, results, failing, passing)
    stats: dict[str, Any] = {
        "dataset": dataset, "scored": sum(r["docs"] for r in results),
        "retired_by_reason": dict(sorted(Counter(failing.column("reason").to_pylist()).items())),
        "returned": returned["returned"], "left_out_as_duplicates": returned["left_out"],
    }
    if not failing.num_rows and not returned["returned"]:
        get_run_logger().info("dataset %s: no decision changed under the new thresholds; no new version", dataset)
        remove_tree(out)
        return {**stats, "published": False, "why": "no decision changed", "docs_total": versions[-1]["docs_total"]}
    write_text_atomic(json.dumps({"version": version, **stats, "quality": config.quality.model_dump(mode="json")},
                                 indent=2, sort_keys=True), out / "refilter.json")
    published = catalog.publish_refilter(dataset, version, decisions=decisions, files=returned["files"],
                                         index_files=returned["index_files"], dedup=index_settings(config.dedup),
                                         quality=family_fingerprints(config.quality))
    stats |= {"published": True, **published}
    get_run_logger().info("dataset %s: version %s published: %d retired, %d came back, %d documents", dataset, version,
                          published["docs_retired"], published["docs_added"], published["docs_total"])
    create_table_artifact(key="dataset-refilter", table=[{"figure": k, "value": str(v)} for k, v in stats.items()],
                          description=f"Dataset {dataset}: re-decided under new thresholds as version {version}.")
    return stats


def _bring_back(catalog: Catalog, home: DataHome, dataset: str, version: str, config: RefineryConfig,
                results: list[dict[str, Any]], failing: pa.Table, passing: pa.Table) -> dict[str, Any]:
    """The documents that now pass and may come back (``passing``), taken from their shards on a
    worker, matched against the dataset less what this refilter retires (``failing``), written and indexed."""
    if not passing.num_rows:
        return {"files": [], "index_files": [], "returned": 0, "left_out": {}}
    documents_of = {r["decisions"]: r["documents"] for r in results}
    picks: dict[str, list[str]] = {}
    for doc_id, file in zip(passing.column("doc_id").to_pylist(), passing.column("decisions").to_pylist()):
        picks.setdefault(documents_of[file], []).append(doc_id)
    index_files, retired, _ = catalog.dataset_index(dataset)
    ref = DatasetRef.of(list(index_files), pa.concat_tables([retired, failing.select(["doc_id", "added_in"])],
                                                            promote_options="default"))
    return returned_task.submit(sorted(picks.items()), config.dedup, ref, str(home.dataset_docs_dir(dataset, version)),
                                str(home.dataset_index_dir(dataset)), version, quality=config.quality).result()


@flow(name="refilter-dataset", log_prints=True)
def refilter_dataset(dataset: str, config: RefineryConfig, dask_address: str | None = None) -> dict[str, Any]:
    """Re-decide the whole of ``dataset`` under ``config.quality`` from the stored attributes and
    publish a version (see the module), holding the data home's run lock. ``config.dataset`` is not
    read: the dataset named here is the one refiltered."""
    home = DataHome.resolve(config.home, config.catalog)
    with home.run_lock(f"a refilter of dataset {dataset}"):
        versions = refilter_sources(home, dataset, config)
        version = _attempt(home, dataset, [v["version"] for v in versions])
        with dask_cluster(config.dask, dask_address) as address:
            return refilter_dataset_flow.with_options(task_runner=DaskTaskRunner(address=address))(
                dataset, version, versions, config, str(home.root))
