"""The catalog opens in the DuckDB CLI a user installs (`pip install duckdb-cli`, 1.5.x, the dev
extra's): Refinery's DuckDB (2.0) writes it in the storage format DuckDB 1.5 reads, and a catalog an
older Refinery wrote in DuckDB 2.0's own format is rewritten in it when a run next opens it to write."""

from __future__ import annotations

import json
import logging
import subprocess
import sysconfig
from pathlib import Path

import pyarrow as pa

from refinery.storage import Catalog, write_shard
from refinery.storage import catalog as catalog_module

# the `duckdb` command `pip install duckdb-cli` puts beside the environment's python
CLI = Path(sysconfig.get_path("scripts")) / "duckdb"

RUNS = "SELECT run_id, status, docs_kept, config->>'dataset' AS dataset, started_at < finished_at AS ordered FROM runs"
CORPUS = "SELECT doc_id, text FROM corpus ORDER BY doc_id"
ATTRIBUTES = "SELECT doc_id, name, value FROM doc_attributes ORDER BY doc_id"
RUN_ROW = [{"run_id": "r1", "status": "completed", "docs_kept": 2, "dataset": "news", "ordered": True}]
CORPUS_ROWS = [{"doc_id": "d1", "text": "kept one"}, {"doc_id": "d3", "text": "kept two"}]
ATTRIBUTE_ROWS = [{"doc_id": d, "name": "words", "value": v} for d, v in (("d1", 2.0), ("d2", 2.0), ("d3", 2.0))]


def cli(catalog: Path, sql: str) -> subprocess.CompletedProcess[str]:
    """``duckdb -readonly -json CATALOG -c SQL``, as a user types it."""
    assert CLI.exists(), f"no {CLI}: the dev extra's duckdb-cli is not installed (run `make install`)"
    return subprocess.run([str(CLI), "-readonly", "-json", str(catalog), "-c", sql],
                          capture_output=True, text=True, timeout=120)


def answer(catalog: Path, sql: str) -> list[dict]:
    done = cli(catalog, sql)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    return json.loads(done.stdout)


def write_run(home: Path) -> Path:
    """A finished run's catalog as the stages leave it: its row in ``runs`` (JSON config,
    timestamps), its documents and attributes (views over the Parquet shards a worker wrote), a
    dedup drop, and the ``corpus`` view over them."""
    catalog = Catalog(home / "catalog.duckdb").ensure_schema()
    run_dir = home / "runs" / "r1"
    catalog.start_run("r1", config={"dataset": "news"}, run_dir=run_dir)
    docs = write_shard(pa.table({"doc_id": ["d1", "d2", "d3"], "source": ["bbc"] * 3,
                                 "text": ["kept one", "a copy", "kept two"]}), run_dir / "ingest" / "part-0.parquet")
    attrs = write_shard(pa.table({"doc_id": ["d1", "d2", "d3"], "name": ["words"] * 3, "value": [2.0] * 3}),
                        run_dir / "quality" / "part-0.parquet")
    catalog.replace("documents", "r1", parquet=[docs])
    catalog.replace("doc_attributes", "r1", parquet=[attrs])
    catalog.replace("drops", "r1", rows=pa.table({"doc_id": ["d2"], "stage": ["dedup"], "reason": ["dedup_exact"]}))
    catalog.finish_run("r1", status="completed", docs_in=3, docs_kept=2, docs_dropped=1)
    return catalog.path


def test_a_runs_catalog_opens_in_the_duckdb_cli(tmp_path):
    path = write_run(tmp_path)
    assert answer(path, RUNS) == RUN_ROW  # a table
    assert answer(path, CORPUS) == CORPUS_ROWS  # a view over a view over the Parquet shards
    assert answer(path, ATTRIBUTES) == ATTRIBUTE_ROWS


def test_a_catalog_in_duckdb_2_storage_is_rewritten_on_the_next_write_and_opens_in_the_cli(
        tmp_path, monkeypatch, caplog):
    # what Refinery wrote before it chose the storage format: DuckDB 2.0's own, "v2.0.0+"
    monkeypatch.setattr(catalog_module, "CATALOG_STORAGE_VERSION", "v2.0.0", raising=False)
    path = write_run(tmp_path)
    monkeypatch.undo()
    refused = cli(path, RUNS)
    assert refused.returncode != 0 and "version number" in refused.stderr, refused.stderr
    # a reader (`refinery sql`, `refinery runs`) reads it as it is and leaves it so
    assert Catalog(path).query("SELECT count(*) AS n FROM corpus").to_pylist() == [{"n": 2}]
    assert cli(path, RUNS).returncode != 0

    with caplog.at_level(logging.WARNING, logger="refinery.storage.catalog"):
        Catalog(path).ensure_schema()  # what the next run does first, holding the home's run lock
        Catalog(path).ensure_schema()
    assert answer(path, RUNS) == RUN_ROW
    assert answer(path, CORPUS) == CORPUS_ROWS
    assert answer(path, ATTRIBUTES) == ATTRIBUTE_ROWS
    assert answer(path, "SELECT doc_id, reason FROM drops") == [{"doc_id": "d2", "reason": "dedup_exact"}]
    rewrites = [r.getMessage() for r in caplog.records if "rewrote the catalog" in r.getMessage()]
    assert len(rewrites) == 1 and str(path) in rewrites[0], rewrites  # once, and said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.duckdb", "runs"]  # no temporary file left
    # and the run goes on writing to it, still readable by the CLI
    Catalog(path).finish_run("r1", status="completed", docs_kept=3)
    assert answer(path, "SELECT docs_kept FROM runs") == [{"docs_kept": 3}]
