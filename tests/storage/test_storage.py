"""Storage: atomic shards, stage markers, and idempotent registration in the DuckDB catalog."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from refinery.storage import (
    Catalog, CatalogError, DataHome, StageMarker, fixed_size_list, read_rows, read_shard, to_matrix, write_shard,
)


def test_write_shard_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = write_shard(pa.table({"a": [1, 2]}), tmp_path / "s" / "x.parquet")
    assert read_shard(path).column("a").to_pylist() == [1, 2]

    import pyarrow.parquet as pq

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        write_shard(pa.table({"a": [3]}), tmp_path / "s" / "y.parquet")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["x.parquet"]


def test_read_rows_reads_the_wanted_rows_and_no_other_shards_columns(tmp_path):
    a = write_shard(pa.table({"doc_id": ["a1", "a2", "a3"], "text": ["one", "two", "three"]}), tmp_path / "a.parquet")
    # a shard without a wanted row: only its doc_id column is read (it has no text to read)
    b = write_shard(pa.table({"doc_id": ["b1", "b2"]}), tmp_path / "b.parquet")
    c = write_shard(pa.table({"doc_id": ["c1", "c2"], "text": ["four", "five"]}), tmp_path / "c.parquet")
    rows = read_rows([a, b, c], ["c2", "a1", "a3", "zz"], ["doc_id", "text"])
    assert rows.to_pylist() == [{"doc_id": "a1", "text": "one"}, {"doc_id": "a3", "text": "three"},
                                {"doc_id": "c2", "text": "five"}]
    assert read_rows([a, c], ["zz"], ["doc_id", "text"]).to_pylist() == []
    with pytest.raises(Exception, match="text"):
        read_rows([b], ["b1"], ["doc_id", "text"])


def test_marker_round_trip(tmp_path):
    marker = StageMarker(tmp_path, "_unit-00001")
    assert marker.read() is None
    marker.write({"docs": 3})
    assert StageMarker(tmp_path, "_unit-00001").read() == {"docs": 3}


def test_vectors_round_trip():
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    col = pa.chunked_array([fixed_size_list(m[:1]), fixed_size_list(m[1:])])
    np.testing.assert_array_equal(to_matrix(col), m)


def test_replace_is_idempotent_and_scoped(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb").ensure_schema()
    shard = write_shard(pa.table({"doc_id": ["a", "b"], "stage": ["dedup"] * 2, "reason": ["r1", "r2"]}),
                        tmp_path / "d.parquet")
    for _ in range(2):
        cat.replace("drops", "run1", parquet=[shard], where={"stage": "dedup"})
    cat.replace("drops", "run1", rows=pa.table({"doc_id": ["c"], "stage": ["quality"], "reason": ["q"]}),
                where={"stage": "quality"})
    cat.replace("drops", "run2", parquet=[shard], where={"stage": "dedup"})
    rows = cat.query("SELECT run_id, stage, count(*) n FROM drops GROUP BY ALL ORDER BY ALL").to_pylist()
    assert rows == [{"run_id": "run1", "stage": "dedup", "n": 2}, {"run_id": "run1", "stage": "quality", "n": 1},
                    {"run_id": "run2", "stage": "dedup", "n": 2}]


def test_query_is_read_only_and_errors_are_clear(tmp_path):
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog(tmp_path / "missing.duckdb").query("SELECT 1")
    cat = Catalog(tmp_path / "c.duckdb").ensure_schema()
    with pytest.raises(CatalogError, match="read-only"):
        cat.query("DELETE FROM runs")
    with pytest.raises(CatalogError):
        cat.query("SELECT * FROM no_such_table")


def test_home_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("REFINERY_HOME", raising=False)
    assert DataHome.resolve(str(tmp_path / "cfg")).root == (tmp_path / "cfg").resolve()
    monkeypatch.setenv("REFINERY_HOME", str(tmp_path / "env"))
    assert DataHome.resolve(str(tmp_path / "cfg")).root == (tmp_path / "env").resolve()
