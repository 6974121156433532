"""Document files written before the web columns existed (url, domain, fetched_at, lang) still read:
a dataset published by older code, alone or beside newer files, answers `curated` with NULLs there,
and so does a run's `documents` view."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from refinery.storage import Catalog
from refinery.tasks.ingest.incremental import INPUTS_SCHEMA

OLD = pa.schema([("doc_id", pa.string()), ("source", pa.string()), ("location", pa.string()), ("title", pa.string()),
                 ("text", pa.string()), ("label", pa.string()), ("n_chars", pa.int64()), ("record_id", pa.string())])


def _old_file(folder, ids: list[str]) -> str:
    folder.mkdir(parents=True)
    rows = {"doc_id": ids, "source": ["s"] * len(ids), "location": ids, "title": [None] * len(ids),
            "text": [f"text {i}" for i in ids], "label": [None] * len(ids), "n_chars": [6] * len(ids), "record_id": ids}
    path = folder / "part.parquet"
    pq.write_table(pa.table(rows, schema=OLD), path)
    return str(path)


def _publish(catalog: Catalog, version: str, files: list[str]) -> None:
    inputs = pa.table({"source": ["s"], "path": [f"{version}.jsonl"], "size": [1], "mtime_ns": [1], "hash": ["h"],
                       "lines": [1], "ends_line": [True], "status": ["new"]}, schema=INPUTS_SCHEMA)
    catalog.publish_version("d", version, files=files, index_files=[], scored_files=[], quality={}, inputs=inputs,
                            changed=[], removed=[], dedup={})


def test_a_dataset_of_files_without_the_web_columns_reads_them_as_null(tmp_path):
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    old = _old_file(tmp_path / "datasets" / "dataset=d" / "added_in=v1", ["a", "b"])
    _publish(catalog, "v1", [old])
    rows = catalog.query("SELECT doc_id, url, domain, fetched_at, lang FROM curated ORDER BY doc_id").to_pylist()
    assert rows == [{"doc_id": d, "url": None, "domain": None, "fetched_at": None, "lang": None} for d in "ab"]
    # a newer night's file has them: both read together
    new = tmp_path / "datasets" / "dataset=d" / "added_in=v2"
    new.mkdir(parents=True)
    table = pq.read_table(old).append_column("url", pa.array(["https://x.org/c"] * 2)).set_column(
        0, "doc_id", pa.array(["c", "e"]))
    pq.write_table(table, new / "part.parquet")
    _publish(catalog, "v2", [str(new / "part.parquet")])
    urls = {r["doc_id"]: r["url"] for r in catalog.query("SELECT doc_id, url FROM curated").to_pylist()}
    assert urls == {"a": None, "b": None, "c": "https://x.org/c", "e": "https://x.org/c"}
