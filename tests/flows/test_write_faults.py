"""A write that fails (a full disk) fails the run cleanly, and a resume once there is room again
finishes it with the same result as a run that never failed.

The disk fills at the storage layer: Parquet writes of quality shards raise ENOSPC. The Dask
cluster runs its worker in this process (threads), so the fault reaches the worker; everything
else is the real chain (Prefect API, Dask, DuckDB file).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog, StageMarker

ARTICLES = 24
CURATION = ["ingest", "dedup", "quality"]


@pytest.fixture(scope="module")
def threaded_cluster(prefect_api):
    from distributed import LocalCluster

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def write_config(root, name: str, bbc_jsonl) -> str:
    data = bbc_jsonl(root / "corpus.jsonl", "politics", ARTICLES, prefix="p")
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"home": str(root / name), "stages": CURATION,
                                    "ingest": {"shard_size": 8, "sources": [{"path": str(data), "name": "p"}]}}))
    return str(path)


def test_a_full_disk_fails_the_run_cleanly_and_resume_finishes_it(tmp_path, monkeypatch, threaded_cluster, bbc_jsonl):
    import pyarrow.parquet as pq

    from refinery.flows.nightly import nightly
    from refinery.storage import shards

    real_write = pq.write_table

    def full_disk(table, where, **kwargs):
        if "/quality/" in str(where) and "corpus-" in Path(str(where)).name:  # the temp file of a corpus shard
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real_write(table, where, **kwargs)

    config = write_config(tmp_path, "faulty", bbc_jsonl)
    monkeypatch.setattr(shards.pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        nightly(config_path=config, dask_address=threaded_cluster)
    catalog = Catalog(tmp_path / "faulty" / "catalog.duckdb")
    (row,) = catalog.query("SELECT run_id, status, error, run_dir FROM runs").to_pylist()
    assert row["status"] == "failed" and row["error"].startswith("quality: OSError")
    assert "No space left on device" in row["error"]
    quality_dir = tmp_path / "faulty" / "runs" / row["run_id"] / "quality"
    # nothing half-written is visible or registered: no temp file left, no corpus shard, no marker
    assert not [p for p in quality_dir.rglob("*") if p.name.startswith(".")]
    assert not list(quality_dir.glob("corpus-*.parquet"))
    assert StageMarker(quality_dir).read() is None
    for table in ("doc_attributes", "drops"):
        n = catalog.query(f"SELECT count(*) AS n FROM {table} WHERE run_id = ? AND "
                          + ("true" if table == "doc_attributes" else "stage = 'quality'"), [row["run_id"]]).to_pylist()
        assert n == [{"n": 0}], table

    monkeypatch.setattr(shards.pq, "write_table", real_write)  # room on the disk again
    resumed = nightly(config_path=config, dask_address=threaded_cluster, run_id=row["run_id"])
    clean = nightly(config_path=write_config(tmp_path, "clean", bbc_jsonl), dask_address=threaded_cluster)
    clean_catalog = Catalog(tmp_path / "clean" / "catalog.duckdb")
    books = "SELECT status, docs_in, docs_kept, docs_dropped, docs_rejected FROM runs WHERE run_id = ?"
    assert catalog.query(books, [resumed["run_id"]]).to_pylist() == clean_catalog.query(books, [clean["run_id"]]).to_pylist()
    corpus = "SELECT doc_id, text FROM corpus WHERE run_id = ? ORDER BY doc_id"
    assert catalog.query(corpus, [resumed["run_id"]]).to_pylist() == clean_catalog.query(corpus, [clean["run_id"]]).to_pylist()
    assert catalog.query("SELECT count(*) AS n FROM corpus WHERE run_id = ?", [resumed["run_id"]]).to_pylist()[0]["n"] > 0
