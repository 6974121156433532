"""Dedup through the real flow: the same clusters whatever the shard size and number of Dask workers."""

from __future__ import annotations

import json

import pytest
from prefect_dask import DaskTaskRunner

from refinery.flows.dedup import dedup_flow
from refinery.flows.ingest import ingest_flow
from refinery.flows.nightly import prepare_run
from refinery.tasks.config import DaskConfig, parse_config
from refinery.tasks.ingest.readers import bbc_folder


def variants(n_docs: int = 12) -> list[str]:
    """Per BBC article, a copy with 1 word in 150 replaced, and a copy of that copy with 1 more in 150.

    Each edit changes 5 word 5-grams, so copy~original and copy~copy stay near Jaccard 0.9 (above
    the 0.8 threshold); the copy of the copy is further from the original, found through the chain.
    """
    out = []
    for i in range(1, n_docs + 1):
        words = (bbc_folder() / "tech" / f"{i:03d}.txt").read_text().partition("\n")[2].split()
        edited = ["zebra" if j % 150 == 75 else w for j, w in enumerate(words)]
        twice = ["quokka" if j % 150 == 149 else w for j, w in enumerate(edited)]
        out += [json.dumps({"id": f"v{i}a", "text": " ".join(edited)}),
                json.dumps({"id": f"v{i}b", "text": " ".join(twice)})]
    return out


def clusters_of(tmp_path, name: str, shard_size: int, address: str, extra) -> set[tuple[str, str, str, bool]]:
    cfg = parse_config({
        "home": str(tmp_path / name),
        "ingest": {"shard_size": shard_size, "limit": 60,
                   "sources": [{"path": str(bbc_folder() / "tech"), "name": "tech", "title_from_first_line": True},
                               {"path": str(extra), "name": "variants"}]},
    })
    run = prepare_run(cfg)
    runner = DaskTaskRunner(address=address)
    ingest = ingest_flow.with_options(task_runner=runner)(run)
    dedup_flow.with_options(task_runner=runner)(run, ingest)
    rows = run.catalog.query("""SELECT c.cluster_id, c.doc_id, d.location, c.is_survivor
        FROM dedup_clusters c JOIN documents d USING (run_id, doc_id) WHERE c.run_id = ?""", [run.run_id])
    return {(r["cluster_id"], r["doc_id"], r["location"], r["is_survivor"]) for r in rows.to_pylist()}


@pytest.mark.slow
def test_same_clusters_for_any_shard_size_and_worker_count(tmp_path, prefect_api, dask_address):
    from refinery.flows.runtime import local_cluster

    extra = tmp_path / "variants.jsonl"
    extra.write_text("\n".join(variants()) + "\n")
    two_workers_small_shards = clusters_of(tmp_path, "a", 7, dask_address, extra)
    with local_cluster(DaskConfig(n_workers=1), api_url=prefect_api) as one:
        one_worker_one_shard = clusters_of(tmp_path, "b", 1000, one.scheduler_address, extra)
    assert two_workers_small_shards == one_worker_one_shard
    cluster_of = {loc: c for c, _, loc, _ in two_workers_small_shards}
    for i in range(1, 13):  # each original with its copy and its copy's copy (found through the chain)
        assert cluster_of[f"{i:03d}.txt"] == cluster_of[f"variants.jsonl:{2 * i - 1}"] == cluster_of[f"variants.jsonl:{2 * i}"]
    for cluster in set(cluster_of.values()):
        assert sum(s for c, _, _, s in two_workers_small_shards if c == cluster) == 1
