"""publish: the night's curated documents become a new version of its dataset, all at once.

The night's kept documents (quality's corpus shards) are indexed for dedup of later nights (on a
worker) and hard-linked under the dataset's folder, with what quality decided them from (the
night's documents, attributes and dedup drops: what a refilter of the dataset reads), and with semantic dedup on,
the night's semantic index (what later nights' semdedup builds on); then one catalog transaction publishes the
version: its files, its index files, the input files it read, and the documents it retires (among
them those of domains the blocklist lists now, whenever they were added). A
reader of ``curated`` sees the previous version until that commit. The stage's stats name the
version's documents as shards (``corpus``), what the night's model half reads
(:mod:`refinery.tasks.dataset_version`). A night that read nothing new
(every input unchanged) publishes nothing; a run that reused another run's curation (``--from-run``)
publishes nothing either: that run published it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from refinery.flows.runtime import run_stage
from refinery.storage import link_files, read_shard
from refinery.tasks.dataset_version import without_retired
from refinery.tasks.dedup.against import index_night, index_settings
from refinery.tasks.dedup.urls import blocked_domains, is_blocked
from refinery.tasks.ingest.duplicates import id_reuse_warnings
from refinery.tasks.runs import RunSpec

index_task = task(index_night, name="dataset-index", task_run_name="index the night's documents for {version}",
                  retries=1, timeout_seconds=3600)
version_task = task(without_retired, name="version-file", task_run_name="{path} less its retired documents",
                    retries=1, timeout_seconds=3600)


def _version_corpus(run: RunSpec, dataset: str, version: str, docs: int, out: Path) -> dict[str, Any]:
    """The documents of the version as shards for the model half: the published files, those with
    retired documents copied without them (on workers)."""
    files = run.catalog.version_files(dataset, version)
    copies = {i: version_task.submit(f["path"], f["retired"], str(out / "version" / f"{i:05d}.parquet"))
              for i, f in enumerate(files) if f["retired"]}
    shards = [copies[i].result() if i in copies else f["path"] for i, f in enumerate(files)]
    return {"corpus_shards": [p for p in shards if p], "kept": docs, "version_of": dataset}


def _publish(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any], quality: dict[str, Any],
             out: Path) -> dict[str, Any]:
    dataset, version = run.config.dataset, run.run_id
    logger = get_run_logger()
    if ingest.get("reused_from") or not ingest.get("inputs"):
        why = f"curation reused from run {ingest['reused_from']}" if ingest.get("reused_from") else "no input"
        return {"dataset": dataset, "published": False, "why": why}
    inputs = read_shard(ingest["inputs"])
    statuses = inputs.column("status").to_pylist()
    if not any(s != "unchanged" for s in statuses):
        logger.info("dataset %s: nothing new in the sources tonight; no new version", dataset)
        return {"dataset": dataset, "published": False, "why": "nothing new in the sources"}
    home = run.data_home
    corpus = [p for p in quality["corpus_shards"] if read_shard(p, ["doc_id"]).num_rows]
    signature_shards = sorted(str(p) for p in run.stage_dir("dedup").glob("signatures-*.parquet"))
    index_files = index_task.submit(signature_shards, corpus, run.config.dedup, str(home.dataset_index_dir(dataset)),
                                    version).result()
    files = link_files(corpus, home.dataset_docs_dir(dataset, version)) if corpus else []
    # what `refinery refilter --dataset` re-decides from: the night's scored documents, their
    # attributes and dedup's drops, kept with the dataset (a gc of the run takes none of them)
    scored = link_files([*ingest["shards"], *run.catalog.shard_paths("doc_attributes", version), dedup["drops_path"]],
                        home.dataset_scored_dir(dataset, version))
    if quality.get("semdedup_index"):  # what a later night's semdedup compares with and clusters by
        link_files(quality["semdedup_index"], home.dataset_semantic_dir(dataset, version))
    blocked = blocked_domains(run.config.dedup)  # the blocklist as it is tonight: listed documents leave
    leaving = [d for d in run.catalog.dataset_domains(dataset) if is_blocked(d, blocked)] if blocked else []
    rows = inputs.to_pylist()
    pick = lambda status: [(r["source"], r["path"]) for r in rows if r["status"] == status]  # noqa: E731
    published = run.catalog.publish_version(
        dataset, version, files=files, index_files=index_files, scored_files=scored, quality=quality["fingerprints"],
        inputs=inputs.filter(pc.not_equal(inputs.column("status"), "unchanged")),
        changed=pick("changed"), removed=[tuple(r) for r in ingest.get("mirror_removed", [])],
        dedup=index_settings(run.config.dedup),
        superseded=read_shard(dedup["superseded_path"]) if dedup.get("superseded_path") else None,
        blocked_domains=leaving)
    logger.info("dataset %s: version %s published: %d added, %d retired, %d documents",
                dataset, version, published["docs_added"], published["docs_retired"], published["docs_total"])
    published["id_reuse"] = id_reuse_warnings(run.config.ingest, run.catalog.replaced_across_files(dataset, version))
    for warning in published["id_reuse"]:
        logger.warning("dataset %s: %s", dataset, warning["message"])
    create_table_artifact(key="dataset-version", table=[{"figure": k, "value": v} for k, v in published.items()],
                          description=f"Dataset {dataset}: the version run {version} published.")
    corpus = _version_corpus(run, dataset, version, published["docs_total"], out)
    return {"dataset": dataset, "published": True, **published, "corpus": corpus}


@flow(name="publish", log_prints=True)
def publish_flow(run: RunSpec, ingest: dict[str, Any], dedup: dict[str, Any], quality: dict[str, Any]) -> dict[str, Any]:
    return run_stage(run, "publish", lambda out: _publish(run, ingest, dedup, quality, out))
