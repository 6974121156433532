"""dataset reindex: rebuild a dataset's dedup index under other dedup settings.

Every published documents file is signed anew under the config's dedup settings, one task per
file on the workers, into a new index folder; one catalog transaction then points every version
at its new files, and the old folder is removed. Until that commit, nights (which hold the same
run lock) and lookups use the old index whole.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect_dask import DaskTaskRunner

from refinery.flows.runtime import dask_cluster, gather
from refinery.storage import Catalog, DataHome, remove_tree
from refinery.tasks.config import RefineryConfig
from refinery.tasks.dedup.against import index_documents, index_settings
from refinery.tasks.exceptions import InputError
from refinery.tasks.runs import new_run_id

reindex_task = task(index_documents, name="dataset-reindex", task_run_name="reindex {shard}", retries=1,
                    timeout_seconds=3600)


@flow(name="dataset-reindex-files", log_prints=True)
def _reindex_files(shards: list[tuple[str, str]], config: RefineryConfig, index_dir: str) -> list[list[str]]:
    return gather(reindex_task.map([f for _, f in shards], [v for v, _ in shards], cfg=unmapped(config.dedup),
                                   index_dir=unmapped(index_dir)), "reindex files")


@flow(name="dataset-reindex", log_prints=True)
def reindex_dataset(dataset: str, config: RefineryConfig, dask_address: str | None = None) -> dict[str, Any]:
    """Rebuild ``dataset``'s index under ``config.dedup``, holding the data home's run lock."""
    home = DataHome.resolve(config.home, config.catalog)
    catalog = Catalog(home.catalog_path)
    with home.run_lock(f"a reindex of dataset {dataset}"), dask_cluster(config.dask, dask_address) as address:
        catalog.ensure_schema()
        versions = catalog.dataset_files(dataset)
        if not versions:
            known = ", ".join(catalog.dataset_names()) or "none yet"
            raise InputError(f"no dataset {dataset} in {home.root} (datasets: {known})")
        generation = home.dataset_dir(dataset) / f"index-{new_run_id()}"
        shards = [(version, f) for version, files in versions for f in files]
        written = _reindex_files.with_options(task_runner=DaskTaskRunner(address=address))(
            shards, config, str(generation)) if shards else []
        by_version: dict[str, list[str]] = {v: [] for v, _ in versions}
        for (version, _), files in zip(shards, written):
            by_version[version] += files
        settings = index_settings(config.dedup)
        catalog.replace_index(dataset, by_version, settings)
        for old in home.dataset_dir(dataset).glob("index*"):
            if old != generation:
                remove_tree(old)
        get_run_logger().info("dataset %s: index rebuilt from %d files of %d versions", dataset, len(shards),
                              len(versions))
    return {"dataset": dataset, "versions": len(versions), "files": len(shards), "dedup": settings}
