"""A curation-only run, a run started from its curated corpus (--from-run), and `refinery gc`.

Real Prefect, the shared Dask cluster and a DuckDB file; one small JSONL corpus with an exact
duplicate and a broken line, so every curation table has rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import Catalog, DataHome, StageMarker
from refinery.tasks.ingest.readers import bbc_folder

CURATION = ["ingest", "dedup", "quality"]
ARTICLES = 40


def write_corpus(root: Path) -> Path:
    bodies = [p.read_text(encoding="utf-8").partition("\n")[2].strip()
              for p in sorted((bbc_folder() / "tech").glob("*.txt"))[:ARTICLES]]
    lines = [json.dumps({"id": f"t-{i:03d}", "text": b}) for i, b in enumerate(bodies)]
    lines.append(json.dumps({"id": "t-copy", "text": bodies[0]}))  # dedup drops one of the two
    lines.append("{not json")  # a reject
    path = root / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def curated(tmp_path_factory, prefect_api, dask_address):
    """A curation-only run, then a second one started from it."""
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("lifecycle")
    config = {"home": str(root / "home"), "stages": CURATION,
              "ingest": {"shard_size": 15, "sources": [{"path": str(write_corpus(root)), "name": "tech"}]}}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    first = nightly(config_path=str(path), dask_address=dask_address)
    second = nightly(config_path=str(path), dask_address=dask_address, from_run=first["run_id"])
    return {"root": root, "config": path, "first": first, "second": second,
            "catalog": Catalog(root / "home" / "catalog.duckdb"), "home": DataHome(root / "home")}


def rows(catalog: Catalog, sql: str, run_id: str) -> list[dict]:
    return catalog.query(sql, [run_id]).to_pylist()


def test_a_curation_only_run_is_complete_and_accounted(curated):
    catalog, run_id = curated["catalog"], curated["first"]["run_id"]
    (run,) = rows(catalog, "SELECT * FROM runs WHERE run_id = ?", run_id)
    assert run["status"] == "completed" and run["error"] is None
    assert run["docs_in"] == ARTICLES + 2 == run["docs_kept"] + run["docs_dropped"] + run["docs_rejected"]
    assert run["docs_rejected"] == 1 and run["docs_dropped"] >= 1
    stages = [r["stage"] for r in rows(catalog, "SELECT stage FROM stage_runs WHERE run_id = ? ORDER BY started_at", run_id)]
    assert stages == [*CURATION, "publish"]  # and the night published its dataset version
    for later in ("synthesize", "train", "evaluate"):
        assert StageMarker(curated["home"].stage_dir(run_id, later)).read() is None
    assert (Path(curated["first"]["run_dir"]) / "report.md").exists()


CURATION_TABLES = {
    "documents": "SELECT doc_id, record_id, text FROM documents WHERE run_id = ? ORDER BY doc_id",
    "corpus": "SELECT doc_id FROM corpus WHERE run_id = ? ORDER BY doc_id",
    "rejects": "SELECT source, location, reason FROM rejects WHERE run_id = ? ORDER BY location",
    "drops": "SELECT doc_id, stage, reason FROM drops WHERE run_id = ? ORDER BY doc_id",
    "dedup_clusters": "SELECT cluster_id, doc_id, is_survivor FROM dedup_clusters WHERE run_id = ? ORDER BY doc_id",
    "doc_attributes": "SELECT doc_id, name, value FROM doc_attributes WHERE run_id = ? ORDER BY doc_id, name",
}


def test_from_run_reuses_the_curated_corpus_without_redoing_it(curated):
    catalog, first, second = curated["catalog"], curated["first"]["run_id"], curated["second"]["run_id"]
    assert second != first
    for table, sql in CURATION_TABLES.items():
        assert rows(catalog, sql, second) == rows(catalog, sql, first), table
    books = "SELECT status, docs_in, docs_kept, docs_dropped, docs_rejected FROM runs WHERE run_id = ?"
    assert rows(catalog, books, second) == rows(catalog, books, first)
    stages = rows(catalog, "SELECT stage, status, stats->>'reused_from' AS source FROM stage_runs WHERE run_id = ?"
                           " ORDER BY stage", second)
    # the reused stages, and a publish that published nothing: the first run published these documents
    assert stages == sorted([{"stage": s, "status": "reused", "source": first} for s in CURATION]
                            + [{"stage": "publish", "status": "completed", "source": None}], key=lambda r: r["stage"])
    assert curated["second"]["publish"] == {"dataset": "default", "published": False,
                                            "why": f"curation reused from run {first}"}
    # linked, not copied or recomputed: the new run's shards are the same files, under its own folder
    new = StageMarker(curated["home"].stage_dir(second, "quality")).read()["corpus_shards"]
    old = StageMarker(curated["home"].stage_dir(first, "quality")).read()["corpus_shards"]
    assert all(p.startswith(curated["second"]["run_dir"] + "/") for p in new)
    assert [os.stat(p).st_ino for p in new] == [os.stat(p).st_ino for p in old]


def test_from_run_of_an_unknown_run_is_an_error(curated):
    result = CliRunner().invoke(app, ["run", "--config", str(curated["config"]), "--from-run", "no-such-run"])
    assert result.exit_code == 3  # InputError
    assert "no run no-such-run to reuse" in result.output


def test_gc_refuses_while_a_run_is_live(curated):
    with curated["home"].run_lock("a test holding the lock"):
        result = CliRunner().invoke(app, ["gc", "--keep", "0", "--config", str(curated["config"])])
    assert result.exit_code == 4  # HomeBusyError
    assert "refusing to collect" in result.output and "a test holding the lock" in result.output
    assert {r["run_id"] for r in curated["catalog"].query("SELECT run_id FROM runs").to_pylist()} >= {
        curated["first"]["run_id"], curated["second"]["run_id"]}


def test_gc_keeps_the_newest_runs_and_deletes_the_rest_whole(curated):
    """Runs last in this module: it deletes the first run. The second, started from it, stays whole."""
    catalog, home = curated["catalog"], curated["home"]
    first, second = curated["first"]["run_id"], curated["second"]["run_id"]
    before = {t: rows(catalog, sql, second) for t, sql in CURATION_TABLES.items()}
    (home.root / "runs" / "stray-folder").mkdir()
    dry = CliRunner().invoke(app, ["gc", "--keep", "1", "--dry-run", "--config", str(curated["config"])])
    assert dry.exit_code == 0 and f"would delete 1 run(s): {first}" in dry.output
    assert home.run_dir(first).exists()

    result = CliRunner().invoke(app, ["gc", "--keep", "1", "--config", str(curated["config"])])
    assert result.exit_code == 0, result.output
    assert f"kept 1 run(s): {second}" in result.output and f"deleted 1 run(s): {first}" in result.output
    assert not home.run_dir(first).exists() and not (home.root / "runs" / "stray-folder").exists()
    for table in ("runs", "stage_runs", "rejects", "drops", "dedup_clusters", "shard_files", "documents",
                  "doc_attributes"):
        assert rows(catalog, f"SELECT count(*) AS n FROM {table} WHERE run_id = ?", first) == [{"n": 0}], table
    # the kept run lost nothing: its shards are its own links
    assert {t: rows(catalog, sql, second) for t, sql in CURATION_TABLES.items()} == before
    assert catalog.query("SELECT count(*) AS n FROM documents").to_pylist() == [{"n": ARTICLES + 1}]


def test_the_catalog_holds_no_document_text(curated):
    """Text stays in the Parquet shards: no column of any table in the DuckDB file holds a document."""
    catalog, run_id = curated["catalog"], curated["second"]["run_id"]
    kinds = {r["table_name"]: r["table_type"] for r in catalog.query(
        "SELECT table_name, table_type FROM information_schema.tables").to_pylist()}
    assert kinds["documents"] == kinds["doc_attributes"] == kinds["corpus"] == "VIEW"
    texts = catalog.query("SELECT text FROM documents WHERE run_id = ?", [run_id]).column("text").to_pylist()
    assert len(texts) == ARTICLES + 1
    columns = catalog.query("SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal AND "
                            "data_type = 'VARCHAR' AND table_name IN (SELECT table_name FROM duckdb_tables())").to_pylist()
    for c in columns:
        (hit,) = catalog.query(f'SELECT count(*) AS n FROM "{c["table_name"]}" WHERE "{c["column_name"]}" IN '
                               "(SELECT text FROM documents WHERE run_id = ?)", [run_id]).to_pylist()
        assert hit["n"] == 0, c
