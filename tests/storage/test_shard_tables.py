"""documents and doc_attributes: views over the registered Parquet shards, replaced like tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from refinery.storage import Catalog, CatalogError, write_shard


def attributes(tmp_path, name: str, doc_ids: list[str], value: float) -> str:
    table = pa.table({"doc_id": doc_ids, "name": ["score"] * len(doc_ids), "value": [value] * len(doc_ids)})
    return str(write_shard(table, tmp_path / f"{name}.parquet"))


@pytest.fixture()
def catalog(tmp_path):
    return Catalog(tmp_path / "catalog.duckdb").ensure_schema()


def test_registered_shards_are_the_runs_rows(tmp_path, catalog):
    a = attributes(tmp_path, "a", ["d1", "d2"], 1.0)
    b = attributes(tmp_path, "b", ["d3"], 2.0)
    assert catalog.replace("doc_attributes", "r1", parquet=[a, b]) == 3
    assert catalog.replace("doc_attributes", "r2", parquet=[b]) == 1
    q = "SELECT run_id, doc_id, value FROM doc_attributes ORDER BY run_id, doc_id"
    assert catalog.query(q).to_pylist() == [
        {"run_id": "r1", "doc_id": "d1", "value": 1.0}, {"run_id": "r1", "doc_id": "d2", "value": 1.0},
        {"run_id": "r1", "doc_id": "d3", "value": 2.0}, {"run_id": "r2", "doc_id": "d3", "value": 2.0}]
    # registering again replaces the run's rows (a rerun is a no-op), other runs untouched
    catalog.replace("doc_attributes", "r1", parquet=[b])
    catalog.replace("doc_attributes", "r1", parquet=[b])
    assert catalog.query(q).to_pylist() == [
        {"run_id": "r1", "doc_id": "d3", "value": 2.0}, {"run_id": "r2", "doc_id": "d3", "value": 2.0}]
    assert catalog.shard_paths("doc_attributes", "r1") == [b]
    catalog.replace("doc_attributes", "r1")
    assert catalog.query("SELECT DISTINCT run_id FROM doc_attributes").to_pylist() == [{"run_id": "r2"}]


def test_rows_are_refused_for_a_shard_table(tmp_path, catalog):
    with pytest.raises(CatalogError, match="register files, not rows"):
        catalog.replace("documents", "r1", rows=pa.table({"doc_id": ["d1"], "text": ["t"]}))


def test_missing_columns_are_null_and_the_door_reads_the_views(tmp_path, catalog):
    shard = write_shard(pa.table({"doc_id": ["d1"], "text": ["some text"]}), tmp_path / "home" / "docs.parquet")
    catalog = Catalog(tmp_path / "home" / "catalog.duckdb").ensure_schema()
    catalog.replace("documents", "r1", parquet=[shard])
    # through the SQL door, whose file access is limited to the data home
    assert catalog.user_query("SELECT doc_id, title, text FROM corpus").to_pylist() == [
        {"doc_id": "d1", "title": None, "text": "some text"}]
    with pytest.raises(CatalogError):
        catalog.user_query(f"SELECT * FROM read_parquet('{tmp_path / 'outside.parquet'}')")


def test_copy_run_rows_registers_the_same_files_under_new_paths(tmp_path, catalog):
    old_dir, new_dir = tmp_path / "runs" / "r1", tmp_path / "runs" / "r2"
    a = attributes(old_dir, "a", ["d1"], 1.0)
    attributes(new_dir, "a", ["d1"], 1.0)  # what linking the run folder made
    catalog.replace("doc_attributes", "r1", parquet=[a])
    catalog.copy_run_rows("doc_attributes", "r1", "r2", paths=(f"{old_dir}/", f"{new_dir}/"))
    assert catalog.shard_paths("doc_attributes", "r2") == [str(new_dir / "a.parquet")]
    catalog.replace("drops", "r1", rows=pa.table({"doc_id": ["d9"], "stage": ["dedup"], "reason": ["dedup_exact"]}))
    assert catalog.copy_run_rows("drops", "r1", "r2", where={"stage": "dedup"}) == 1
    assert catalog.copy_run_rows("drops", "r1", "r2", where={"stage": "dedup"}) == 1  # replaces, no doubles
    assert catalog.query("SELECT run_id, doc_id FROM drops ORDER BY run_id").to_pylist() == [
        {"run_id": "r1", "doc_id": "d9"}, {"run_id": "r2", "doc_id": "d9"}]
    catalog.delete_runs(["r1"])
    assert catalog.query("SELECT DISTINCT run_id FROM doc_attributes").to_pylist() == [{"run_id": "r2"}]
    assert catalog.query("SELECT DISTINCT run_id FROM drops").to_pylist() == [{"run_id": "r2"}]
