"""The catalog's named verbs answer what their names say, on a real catalog file; and config text is
written atomically."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from refinery.storage import Catalog, DataHome, write_shard, write_text_atomic


@pytest.fixture()
def catalog(tmp_path) -> Catalog:
    return Catalog(tmp_path / "catalog.duckdb").ensure_schema()


def test_write_text_atomic_replaces_whole_and_leaves_no_temp_file_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "run" / "config.yaml"
    write_text_atomic("a: 1\n", path)
    write_text_atomic("a: 2\n", path)
    assert path.read_text() == "a: 2\n"

    import os

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic("a: 3\n", path)
    assert path.read_text() == "a: 2\n"
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]


def test_a_run_folder_is_under_its_data_home(tmp_path):
    home = DataHome(tmp_path / "home")
    assert home.run_config_path("r1") == tmp_path / "home" / "runs" / "r1" / "config.yaml"


def test_run_rows_from_start_to_reuse(catalog, tmp_path):
    catalog.start_run("old", config={"seed": 1}, run_dir=tmp_path / "runs" / "old")
    catalog.finish_run("old", status="completed", docs_in=3)
    catalog.start_run("new", config={"seed": 1}, run_dir=tmp_path / "runs" / "new")
    assert catalog.runs_newest_first() == [{"run_id": "new", "status": "running"},
                                           {"run_id": "old", "status": "completed"}]
    assert catalog.mark_interrupted() == 1

    catalog.update_run_config("old", {"seed": 2})
    assert catalog.query("SELECT config->>'seed' AS seed FROM runs WHERE run_id = 'old'").to_pylist() == [{"seed": "2"}]

    catalog.record_stage("old", "dedup", status="completed", started_at=datetime.now(timezone.utc), stats={"kept": 2})
    shard = write_shard(pa.table({"doc_id": ["d1"], "stage": ["dedup"], "reason": ["exact"]}),
                        tmp_path / "runs" / "old" / "dedup" / "drops.parquet")
    catalog.replace("drops", "old", parquet=[shard], where={"stage": "dedup"})
    catalog.copy_stage_rows("dedup", "old", "new", paths=(str(tmp_path / "runs" / "old"), str(tmp_path / "runs" / "new")))
    catalog.mark_reused("new", "dedup", "old")
    assert catalog.query("SELECT doc_id, reason FROM drops WHERE run_id = 'new'").to_pylist() == [
        {"doc_id": "d1", "reason": "exact"}]
    (row,) = catalog.query("SELECT status, stats->>'kept' AS kept, stats->>'reused_from' AS source FROM stage_runs "
                           "WHERE run_id = 'new'").to_pylist()
    assert row == {"status": "reused", "kept": "2", "source": "old"}


def test_book_counts_and_the_corpus_shards(catalog, tmp_path):
    docs = write_shard(pa.table({"doc_id": ["a", "b", "c", "d"], "source": ["s"] * 4,
                                 "location": ["f.jsonl:1", "f.jsonl:2", "f.jsonl:3", "g.txt"]}), tmp_path / "docs.parquet")
    catalog.replace("documents", "r", parquet=[docs])
    catalog.replace("rejects", "r", rows=pa.table({"source": ["s", "s"], "location": ["f.jsonl:4", "h.jsonl"],
                                                   "reason": ["duplicate_id: x (first at f.jsonl:1)", "unreadable"]}))
    catalog.replace("drops", "r", rows=pa.table({"doc_id": ["b", "c", "c"], "stage": ["dedup", "quality", "quality"],
                                                 "reason": ["exact", "short", "short"]}))
    assert catalog.book_counts("r") == {"documents": 4, "dropped": 3, "distinct_dropped": 2, "rejected": 2}
    kept = write_shard(pa.table({"doc_id": ["a", "b", "d"]}), tmp_path / "corpus.parquet")
    assert catalog.corpus_shard_counts("r", [str(kept)]) == (3, 1)  # b is kept and dropped
    assert catalog.corpus_shard_counts("r", []) == (0, 0)


def test_file_books_are_filled_from_what_the_catalog_holds(catalog, tmp_path):
    docs = write_shard(pa.table({"doc_id": ["a", "b", "c"], "source": ["s"] * 3,
                                 "location": ["f.jsonl:1", "f.jsonl:3", "notes:05"]}), tmp_path / "docs.parquet")
    catalog.replace("documents", "r", parquet=[docs])
    catalog.replace("rejects", "r", rows=pa.table({"source": ["s"], "location": ["f.jsonl:2"], "reason": ["bad json"]}))
    catalog.replace("file_books", "r", rows=pa.table({
        "source": ["s", "s"], "path": ["f.jsonl", "notes:05"], "records_read": [3, 1], "documents": [0, 0],
        "rejected": [0, 0], "bytes": [10, 5]}))
    assert len(catalog.unbalanced_files("r")) == 2  # not filled in yet
    catalog.update_file_books("r")
    assert catalog.query("SELECT path, documents, rejected FROM file_books WHERE run_id = 'r' ORDER BY path").to_pylist() == [
        {"path": "f.jsonl", "documents": 2, "rejected": 1}, {"path": "notes:05", "documents": 1, "rejected": 0}]
    assert catalog.unbalanced_files("r") == [] and catalog.file_books_rows("r") == 2


def test_later_occurrences_of_an_id_in_reading_order(catalog, tmp_path):
    first = write_shard(pa.table({"doc_id": ["x", "y"], "record_id": ["1", "2"], "location": ["b.jsonl:1", "b.jsonl:2"]}),
                        tmp_path / "documents-00001-000.parquet")
    second = write_shard(pa.table({"doc_id": ["x"], "record_id": ["1"], "location": ["a.jsonl:1"]}),
                         tmp_path / "documents-00000-000.parquet")
    # a.jsonl comes first in its source's reading order, whatever the units' indices
    found = catalog.later_occurrences([(str(first), 0, None, 1, 0), (str(second), 0, None, 0, 0)]).to_pylist()
    assert found == [{"filename": str(first), "location": "b.jsonl:1", "record_id": "1", "first": "a.jsonl:1"}]
    assert catalog.later_occurrences([(str(first), 0, None, 1, 0)]).num_rows == 0


def test_a_catalog_made_before_runs_had_warnings_gains_the_columns_and_keeps_its_rows(tmp_path):
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # the runs table as catalogs were made before runs.warnings
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, status VARCHAR, started_at TIMESTAMPTZ, "
                "finished_at TIMESTAMPTZ, docs_in BIGINT, docs_kept BIGINT, docs_dropped BIGINT, docs_rejected BIGINT, "
                "error VARCHAR, config JSON, run_dir VARCHAR)")
    con.execute("INSERT INTO runs (run_id, status, docs_kept) VALUES ('old', 'completed', 7)")
    # and dedup_clusters before its jaccard column
    con.execute("CREATE TABLE dedup_clusters (run_id VARCHAR, cluster_id VARCHAR, doc_id VARCHAR, "
                "is_survivor BOOLEAN, kind VARCHAR)")
    con.execute("INSERT INTO dedup_clusters VALUES ('old', 'a', 'b', false, 'near')")
    con.close()
    catalog = Catalog(path).add_new_columns()  # what a refilter does first
    assert catalog.run_warnings("old") == []
    catalog.ensure_schema()  # what a run does first
    assert catalog.recent_runs(5)[0]["docs_kept"] == 7
    warning = {"rule": "gopher_quality.min_alpha_words", "share": 0.94}
    catalog.record_warnings("old", [warning])
    assert catalog.run_warnings("old") == [warning]
    catalog.start_run("old", config={}, run_dir=tmp_path)  # a resumed run's warnings are this attempt's
    assert catalog.run_warnings("old") == []
    Catalog(path).ensure_schema()  # and again: nothing to add
    assert catalog.run_record("old")["docs_kept"] == 7
    assert catalog.query("SELECT doc_id, jaccard FROM dedup_clusters").to_pylist() == [{"doc_id": "b", "jaccard": None}]
