"""A dataset's dedup index: the exact and LSH band keys of every document it ever published, and
their MinHash signatures, as Parquet beside the dataset (``<home>/datasets/dataset=NAME/index``).

    index/keys/part=PP/<version>.parquet     band SMALLINT (-1: the exact key), key UBIGINT, doc UBIGINT, added_in
    index/signatures/part=PP/<version>.parquet  doc UBIGINT, added_in, n_chars, exact_key, signature
    index/urls/part=PP/<version>.parquet     key UBIGINT (the URL's hash), doc UBIGINT, added_in, fetched_at

(``urls``: documents with an absolute URL only; a dataset indexed before URLs were has none until
``refinery dataset reindex``.)

``doc`` is the doc id as a number (a doc id is the 16 hex digits of an xxh3-64 hash): 8 bytes a row
where the hex string took 17, and a join on integers; ``added_in`` is one value per file, which
Parquet's dictionary encoding stores once.

Keys are spread over :data:`PARTS` partitions by their top bits, signatures by their doc id's hash,
each version's rows in a file of its own, written by the worker that publishes the night (before
the catalog names the version: a reader only trusts files a published version lists). A night's
lookup joins its own keys (small: the night's size) with the files of the partitions they fall in,
in DuckDB, which streams the index and builds its hash table on the night's side, so memory is
bounded by the night, not the dataset. Retired documents stay in the index; lookups leave out the
(doc, added_in) pairs the caller says are retired.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from refinery.storage.location import location, register_filesystems
from refinery.storage.shards import write_shard

PARTS = 16
_SHIFT = np.uint64(64 - 4)  # top 4 bits: 16 partitions
EXACT_BAND = -1


def key_part(keys: np.ndarray) -> np.ndarray:
    return (keys.astype(np.uint64) >> _SHIFT).astype(np.int64)


def doc_part(docs: np.ndarray) -> np.ndarray:
    """The partition of each doc (uint64): its top bits, uniform as the hash it is."""
    return (np.asarray(docs, dtype=np.uint64) >> _SHIFT).astype(np.int64)


def _partitioned(table: pa.Table, parts: np.ndarray, folder: Path, version: str) -> list[str]:
    written = []
    for p in range(PARTS):
        rows = np.flatnonzero(parts == p)
        if rows.size:
            path = folder / f"part={p:02d}" / f"{version}.parquet"
            written.append(str(write_shard(table.take(pa.array(rows)), path)))
    return written


def write_index(index_dir: str | os.PathLike[str], name: str, keys: pa.Table, signatures: pa.Table,
                urls: pa.Table | None = None) -> list[str]:
    """Write keys (band, key, doc, added_in), signatures (doc, added_in, n_chars, exact_key,
    signature) and URLs (key, doc, added_in, fetched_at), each split over the partitions into files
    called ``name`` (a version, or a version and one of its files); the files written (atomic, each)."""
    index_dir = location(index_dir)
    key_col = keys.column("key").to_numpy() if keys.num_rows else np.zeros(0, np.uint64)
    doc_col = signatures.column("doc").to_numpy() if signatures.num_rows else np.zeros(0, np.uint64)
    written = (_partitioned(keys, key_part(key_col), index_dir / "keys", name)
               + _partitioned(signatures, doc_part(doc_col), index_dir / "signatures", name))
    if urls is not None and urls.num_rows:
        written += _partitioned(urls, key_part(urls.column("key").to_numpy()), index_dir / "urls", name)
    return written


def _files(files: Sequence[str], kind: str, parts: set[int]) -> list[str]:
    return [f for f in files if f"/{kind}/part=" in f and int(f.rsplit("part=", 1)[1][:2]) in parts]


def _query(sql: str, files: Sequence[str], **tables: pa.Table) -> pa.Table:
    """``sql`` over ``tables`` (registered under their names) and the index ``files`` (its one
    parameter), on a connection of its own."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    register_filesystems(con)
    try:
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql, params=[list(files)]).to_arrow_table()
    finally:
        con.close()


def doc_numbers(doc_ids: Sequence[str]) -> np.ndarray:
    """Doc ids (16 hex digits) as the index stores them (uint64)."""
    return np.array([int(d, 16) for d in doc_ids], dtype=np.uint64)


def doc_ids_of(numbers: Sequence[int] | np.ndarray) -> list[str]:
    return [f"{int(n):016x}" for n in numbers]


def lookup_keys(index_files: Sequence[str], night: pa.Table, retired: pa.Table) -> pa.Table:
    """Every indexed document sharing a (band, key) with a night row: ``row, band, doc, added_in``.

    ``night``: (row int64, band int16, key uint64); ``retired``: (doc uint64, added_in) left out."""
    parts = set(key_part(night.column("key").to_numpy()).tolist()) if night.num_rows else set()
    files = _files(index_files, "keys", parts)
    if not files:
        return pa.table({"row": pa.array([], pa.int64()), "band": pa.array([], pa.int16()),
                         "doc": pa.array([], pa.uint64()), "added_in": pa.array([], pa.string())})
    return _query(
        "SELECT n.row, n.band, i.doc, i.added_in FROM night n"
        " JOIN read_parquet(?::VARCHAR[]) i ON i.band = n.band AND i.key = n.key"
        " WHERE NOT EXISTS (SELECT 1 FROM retired r WHERE r.doc = i.doc AND r.added_in = i.added_in)"
        " ORDER BY n.row, i.doc, i.added_in", files, night=night, retired=retired)


def lookup_urls(index_files: Sequence[str], night: pa.Table, retired: pa.Table) -> pa.Table:
    """Every indexed document whose URL has a night row's key: ``row, doc, added_in, fetched_at``.

    ``night``: (row int64, key uint64); ``retired``: (doc uint64, added_in) left out."""
    parts = set(key_part(night.column("key").to_numpy()).tolist()) if night.num_rows else set()
    files = _files(index_files, "urls", parts)
    if not files:
        return pa.table({"row": pa.array([], pa.int64()), "doc": pa.array([], pa.uint64()),
                         "added_in": pa.array([], pa.string()),
                         "fetched_at": pa.array([], pa.timestamp("us", tz="UTC"))})
    return _query(
        "SELECT n.row, i.doc, i.added_in, i.fetched_at FROM night n"
        " JOIN read_parquet(?::VARCHAR[]) i ON i.key = n.key"
        " WHERE NOT EXISTS (SELECT 1 FROM retired r WHERE r.doc = i.doc AND r.added_in = i.added_in)"
        " ORDER BY n.row, i.doc, i.added_in", files, night=night, retired=retired)


def indexed_exact_keys(index_files: Sequence[str], docs: np.ndarray, retired: pa.Table) -> pa.Table:
    """The exact keys (doc, added_in, key) the index holds for the given docs (uint64), not retired:
    whether a night's record is already in the dataset, and with which text."""
    files = [f for f in index_files if "/keys/part=" in f]
    if not files or not len(docs):
        return pa.table({"doc": pa.array([], pa.uint64()), "added_in": pa.array([], pa.string()),
                         "key": pa.array([], pa.uint64())})
    return _query(
        f"SELECT i.doc, i.added_in, i.key FROM read_parquet(?::VARCHAR[]) i SEMI JOIN wanted w ON w.doc = i.doc"
        f" WHERE i.band = {EXACT_BAND}"
        " AND NOT EXISTS (SELECT 1 FROM retired r WHERE r.doc = i.doc AND r.added_in = i.added_in)"
        " ORDER BY i.doc, i.added_in", files, wanted=_docs_table(docs), retired=retired)


def indexed_signatures(index_files: Sequence[str], docs: np.ndarray, retired: pa.Table) -> pa.Table:
    """The signatures (doc, added_in, n_chars, exact_key, signature) of the given docs (uint64) that
    the index holds and that are not retired."""
    files = _files(index_files, "signatures", set(doc_part(docs).tolist())) if len(docs) else []
    if not files:
        return pa.table({"doc": pa.array([], pa.uint64()), "added_in": pa.array([], pa.string()),
                         "n_chars": pa.array([], pa.int64()), "exact_key": pa.array([], pa.uint64()),
                         "signature": pa.array([], pa.list_(pa.uint32()))})
    found = _query(
        "SELECT s.doc, s.added_in, s.n_chars, s.exact_key, s.signature FROM read_parquet(?::VARCHAR[]) s"
        " SEMI JOIN wanted w ON w.doc = s.doc"
        " WHERE NOT EXISTS (SELECT 1 FROM retired r WHERE r.doc = s.doc AND r.added_in = s.added_in)"
        " ORDER BY s.doc, s.added_in", files, wanted=_docs_table(docs), retired=retired)
    return _fixed_width(found, "signature")


def _docs_table(docs: np.ndarray) -> pa.Table:
    return pa.table({"doc": pa.array(np.unique(docs), pa.uint64())})


def _fixed_width(table: pa.Table, column: str) -> pa.Table:
    """DuckDB answers a fixed-size list column as a list: back to fixed size (all rows are as wide)."""
    values = table.column(column)
    if pa.types.is_fixed_size_list(values.type) or not table.num_rows:
        return table
    width = len(values[0])
    return table.set_column(table.schema.get_field_index(column), column,
                            values.cast(pa.list_(values.type.value_type, width)))
