"""A Dask worker killed in the middle of a task: the task runs again on a live worker and the run
ends as one whose workers all lived.

A LocalCluster of its own (two worker processes under nannies, reporting to the session's Prefect
API) so the kill does not touch the shared one; quality shards are slowed by a tiny shard size.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import yaml

from refinery.storage import Catalog

ARTICLES = 80
CURATION = ["ingest", "dedup", "quality"]


def write_config(root, name: str, bbc_jsonl) -> str:
    data = bbc_jsonl(root / "corpus.jsonl", "sports", ARTICLES, prefix="s")
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"home": str(root / name), "stages": CURATION,
                                    "ingest": {"shard_size": 4, "sources": [{"path": str(data), "name": "s"}]}}))
    return str(path)


def outcome(home) -> dict:
    catalog = Catalog(home / "catalog.duckdb")
    (run_id,) = catalog.query("SELECT run_id FROM runs").column("run_id").to_pylist()
    q = lambda sql: catalog.query(sql, [run_id]).to_pylist()  # noqa: E731
    return {"books": q("SELECT status, docs_in, docs_kept, docs_dropped, docs_rejected FROM runs WHERE run_id = ?"),
            "corpus": q("SELECT doc_id FROM corpus WHERE run_id = ? ORDER BY doc_id"),
            "attributes": q("SELECT doc_id, name, value FROM doc_attributes WHERE run_id = ? ORDER BY ALL"),
            "drops": q("SELECT doc_id, reason FROM drops WHERE run_id = ? ORDER BY ALL")}


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_replaced_and_the_result_is_the_same(tmp_path, prefect_api, dask_address,
                                                                        bbc_jsonl):
    from distributed import Client

    from refinery.flows.nightly import nightly
    from refinery.flows.runtime import local_cluster
    from refinery.tasks.config import DaskConfig

    reference = nightly(config_path=write_config(tmp_path, "reference", bbc_jsonl), dask_address=dask_address)
    assert reference["books"]["docs_in"] == ARTICLES

    killed: list[int] = []
    with local_cluster(DaskConfig(n_workers=2), api_url=prefect_api) as cluster, Client(cluster.scheduler_address) as client:
        home = tmp_path / "faulty"

        def kill_a_worker_once_quality_runs() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if list(home.glob("runs/*/quality/attributes-*.parquet")):
                    pid = next(iter(client.run(os.getpid).values()))
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_worker_once_quality_runs, daemon=True)
        killer.start()
        stats = nightly(config_path=write_config(tmp_path, "faulty", bbc_jsonl), dask_address=cluster.scheduler_address)
        killer.join(10)
    assert killed, "no worker was killed: quality never started"
    assert stats["books"] == reference["books"]
    assert outcome(home) == outcome(tmp_path / "reference")
