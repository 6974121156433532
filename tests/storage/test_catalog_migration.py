"""A catalog written before a column was added gets it from ensure_schema, with its rows intact."""

from __future__ import annotations

import pyarrow as pa

from refinery.storage import Catalog, write_shard
from refinery.storage.catalog import SCHEMA


def test_ensure_schema_adds_the_later_pairs_columns_to_an_old_catalog(tmp_path):
    catalog = Catalog(tmp_path / "catalog.duckdb")
    old_pairs = ("run_id VARCHAR, pair_id VARCHAR, query VARCHAR, doc_id VARCHAR, generator VARCHAR, "
                 "prompt_id VARCHAR, kept BOOLEAN, score DOUBLE, rank INTEGER, negative_doc_id VARCHAR")
    catalog.execute_write(f"CREATE TABLE pairs ({old_pairs})")
    catalog.execute_write("INSERT INTO pairs (run_id, pair_id, query, doc_id, kept) VALUES ('r0', 'p', 'q', 'd', true)")

    catalog.ensure_schema().ensure_schema()  # twice: adding is idempotent

    columns = catalog.query("DESCRIBE pairs").column("column_name").to_pylist()
    fresh = Catalog(tmp_path / "fresh.duckdb").ensure_schema()
    assert columns == fresh.query("DESCRIBE pairs").column("column_name").to_pylist()
    assert columns[-4:] == ["split", "style", "attributes", "reason"]
    assert "split VARCHAR" in SCHEMA["pairs"] and "reason VARCHAR" in SCHEMA["pairs"]
    assert catalog.query("SELECT run_id, query, split, reason FROM pairs").to_pylist() == [
        {"run_id": "r0", "query": "q", "split": None, "reason": None}]
    catalog.replace("pairs", "r1", rows=pa.table({"pair_id": ["p1"], "split": ["heldout"], "reason": ["too_short"]}))
    assert catalog.query("SELECT split, reason FROM pairs WHERE run_id = 'r1'").to_pylist() == [
        {"split": "heldout", "reason": "too_short"}]


def test_a_catalog_with_document_tables_keeps_their_rows_behind_the_views(tmp_path):
    """Before documents and doc_attributes were views over shards they were tables holding the text."""
    catalog = Catalog(tmp_path / "catalog.duckdb")
    catalog.execute_write("CREATE TABLE documents (run_id VARCHAR, doc_id VARCHAR, source VARCHAR, location VARCHAR, "
                          "title VARCHAR, text VARCHAR, label VARCHAR, n_chars BIGINT)")
    catalog.execute_write("INSERT INTO documents VALUES ('old', 'd1', 's', 'f:1', NULL, 'old text', NULL, 8)")

    catalog.ensure_schema().ensure_schema()
    shard = tmp_path / "documents-00000-000.parquet"
    write_shard(pa.table({"doc_id": ["d2"], "text": ["new text"], "record_id": ["r2"]}), shard)
    catalog.replace("documents", "new", parquet=[shard])

    rows = catalog.query("SELECT run_id, doc_id, text, record_id FROM documents ORDER BY run_id").to_pylist()
    assert rows == [{"run_id": "new", "doc_id": "d2", "text": "new text", "record_id": "r2"},
                    {"run_id": "old", "doc_id": "d1", "text": "old text", "record_id": None}]
    assert catalog.query("SELECT count(*) AS n FROM corpus WHERE run_id = 'old'").to_pylist() == [{"n": 1}]
