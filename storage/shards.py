"""Parquet shards: atomic writes, reads, and stage completion markers.

Every function takes a local path or a location in object storage (:mod:`.location`): locally a
write goes to a temp file and is renamed into place; in a bucket an object appears whole when its
upload completes, so it is written in place, and a stage's marker, written last, is what says its
files are finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.storage.location import arrow_target, is_remote, location

SUCCESS_NAME = "_SUCCESS"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file sits beside the target so the rename stays on one filesystem; its name
    # starts with a dot so globs over "*.parquet" never pick up a half-written shard.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; shards are read by other workers and users
    return fd, tmp


def write_shard(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` atomically (temp file + rename); returns the path."""
    if is_remote(path := location(path)):
        with path.open("wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        return path
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_shard(path: str | os.PathLike[str], columns: Sequence[str] | None = None, *,
               missing_ok: bool = False) -> pa.Table:
    """The shard's ``columns`` (all when None); ``missing_ok``: those the file lacks (a shard written
    before a column existed) are left out instead of raising."""
    fs, path = arrow_target(path)
    if columns is not None and missing_ok:
        present = set(pq.read_schema(path, filesystem=fs).names)
        columns = [c for c in columns if c in present]
    return pq.read_table(path, columns=list(columns) if columns is not None else None, filesystem=fs)


def read_shards(paths: Sequence[str | os.PathLike[str]], columns: Sequence[str] | None = None) -> pa.Table:
    """Concatenate shards in the order given (callers sort paths for determinism)."""
    tables = [read_shard(p, columns) for p in paths]
    if not tables:
        raise ValueError("read_shards needs at least one shard")
    return pa.concat_tables(tables, promote_options="default")


def read_rows(paths: Sequence[str | os.PathLike[str]], doc_ids: Sequence[str], columns: Sequence[str],
              *, key: str = "doc_id") -> pa.Table:
    """The rows whose ``key`` is one of ``doc_ids``, from the shards in the order given, one shard at
    a time: memory of the rows found plus one shard's ``key`` column (the other columns of a shard
    holding none of them are never read). When no shard holds one: an empty table of string ``columns``."""
    wanted = pa.array(list(doc_ids), pa.string())
    pieces = []
    for path in paths:
        mask = pc.is_in(read_shard(path, [key]).column(key), value_set=wanted)
        if pc.any(mask).as_py():
            pieces.append(read_shard(path, columns).filter(mask))
    if not pieces:
        return pa.schema([(c, pa.string()) for c in columns]).empty_table()
    return pa.concat_tables(pieces, promote_options="default")


def iter_parquet_records(path: str | os.PathLike[str], batch_size: int = 1024, *,
                         row_groups: Sequence[int] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of an input Parquet file as dicts (ingest reads user files through this); with
    ``row_groups``, only the rows of those row groups, in file order. In a batch where a string
    column holds invalid UTF-8, that batch's string values come as bytes (the reader decides)."""
    fs, path = arrow_target(path)
    with pq.ParquetFile(path, filesystem=fs) as f:
        for batch in f.iter_batches(batch_size=batch_size, row_groups=row_groups):
            try:
                rows = batch.to_pylist()
            except UnicodeDecodeError:
                rows = _strings_as_binary(batch).to_pylist()
            yield from rows


def _strings_as_binary(batch: pa.RecordBatch) -> pa.RecordBatch:
    columns = [c.cast(pa.binary()) if pa.types.is_string(c.type) else
               c.cast(pa.large_binary()) if pa.types.is_large_string(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def parquet_row_groups(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """(rows, compressed bytes) of each row group of a Parquet file, read from its footer alone."""
    fs, path = arrow_target(path)
    meta = pq.read_metadata(path, filesystem=fs)
    groups = (meta.row_group(i) for i in range(meta.num_row_groups))
    return [(g.num_rows, sum(g.column(j).total_compressed_size for j in range(g.num_columns))) for g in groups]


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + rename), so a reader (or a run killed
    mid-write, then resumed) finds the old file or the new one, never half of it; returns the path."""
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """:func:`write_text_atomic` for bytes (a plot's PNG)."""
    if is_remote(path := location(path)):
        path.write_bytes(data)
        return path
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(payload: Any, path: str | os.PathLike[str]) -> Path:
    return write_text_atomic(json.dumps(payload, indent=2, sort_keys=True, default=str), path)


def link_tree(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, rewrite: tuple[str, str],
              skip: Sequence[str] = ()) -> int:
    """Make ``dst`` a copy of the finished folder ``src`` that costs no disk: every file hard-linked
    (copied where links are impossible), except JSON files (markers, stats), which are rewritten
    with ``rewrite=(old, new)`` path prefixes replaced so they name the files under ``dst``.
    Top-level files named in ``skip`` are left out (a marker the caller writes last).

    Built beside ``dst`` and renamed into place, so a killed copy leaves nothing half-made;
    returns the number of files.
    """
    old, new = rewrite
    if is_remote(dst := location(dst)):
        return _copy_tree(location(src), dst, rewrite, skip)
    src = Path(src)
    tmp = dst.with_name(f".{dst.name}.linking")
    shutil.rmtree(tmp, ignore_errors=True)
    count = 0
    for folder, _, names in os.walk(src):
        target = tmp / Path(folder).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name.startswith(".") or (folder == str(src) and name in skip):  # "." : an unfinished write
                continue
            source = Path(folder) / name
            if name.endswith(".json"):
                payload = rewrite_paths(json.loads(source.read_text()), old, new)
                (target / name).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
            else:
                try:
                    os.link(source, target / name)
                except OSError:
                    shutil.copy2(source, target / name)
            count += 1
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return count


def _copy_tree(src, dst, rewrite: tuple[str, str], skip: Sequence[str]) -> int:
    """:func:`link_tree` in object storage: a server-side copy of each object (JSON rewritten), after
    ``dst`` is cleared; the caller's marker, written after, is what says it is whole."""
    old, new = rewrite
    remove_tree(dst)
    fs, count = dst.fs, 0
    for key in sorted(fs.find(src.path)):
        rel = key[len(src.path):].lstrip("/")
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(".") or ("/" not in rel and name in skip):
            continue
        target = dst / rel
        if name.endswith(".json"):
            payload = rewrite_paths(json.loads(fs.cat_file(key)), old, new)
            target.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        else:
            fs.copy(key, target.path)
        count += 1
    return count


def swap_folder(tmp: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename the finished folder ``tmp`` to ``dst``, replacing what is there: ``dst`` holds the old
    folder or the new one, never part of either (a folder cannot be replaced in one rename, so the
    old one is moved aside first, and removed after). ``dst`` in object storage: the local folder
    ``tmp`` is uploaded there after the old objects are removed, and then deleted."""
    if is_remote(dst := location(dst)):
        remove_tree(dst)
        dst.fs.put(str(tmp).rstrip("/") + "/", dst.path, recursive=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp, dst = Path(tmp), Path(dst)
    if not dst.exists():
        os.replace(tmp, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}-old-", dir=dst.parent))
    os.replace(dst, old / dst.name)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)


def link_files(paths: Sequence[str | os.PathLike[str]], dst: str | os.PathLike[str]) -> list[str]:
    """Make folder ``dst`` hold ``paths`` (hard links: no disk; copies where links are impossible),
    built beside it and renamed into place, so ``dst`` is whole or absent. The paths in ``dst``."""
    if is_remote(dst := location(dst)):
        remove_tree(dst)
        for path in map(location, paths):
            dst.fs.copy(path.path, (dst / path.name).path)
        return sorted(str(dst / location(p).name) for p in paths)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.linking")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in map(Path, paths):
        try:
            os.link(path, tmp / path.name)
        except OSError:
            shutil.copy2(path, tmp / path.name)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return sorted(str(dst / Path(p).name) for p in paths)


def rewrite_paths(value: Any, old: str, new: str) -> Any:
    """``value`` (JSON data) with every string that starts with ``old`` starting with ``new`` instead."""
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, list):
        return [rewrite_paths(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: rewrite_paths(v, old, new) for k, v in value.items()}
    return value


def sweep_partial_writes(root: str | os.PathLike[str]) -> int:
    """Delete what interrupted writes left under ``root``: temp files of :func:`write_shard` and
    :func:`write_text_atomic` and half-linked folders of :func:`link_tree` (all start with a dot).
    Call only while nothing writes there (a resumed run, under the home's run lock). Object storage
    keeps no partial writes: nothing to do there."""
    if is_remote(location(root)):
        return 0
    removed = 0
    for path in sorted(Path(root).rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file() and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
            removed += 1
        elif path.is_dir() and path.name.endswith(".linking"):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete a folder and what it holds (gc); nothing when it is not there."""
    if is_remote(loc := location(path)):
        if loc.fs.exists(loc.path):
            loc.fs.rm(loc.path, recursive=True)
        return
    shutil.rmtree(path, ignore_errors=True)


class StageMarker:
    """A completion marker, written last, so its presence means the work before it is done.

    ``StageMarker(stage_dir)`` marks a whole stage; ``StageMarker(stage_dir, "_unit-00003")`` one
    unit of work inside it. The stats it holds are what a rerun returns instead of redoing work.
    """

    def __init__(self, stage_dir: str | os.PathLike[str], name: str = SUCCESS_NAME):
        self.path = location(stage_dir) / f"{name}.json"

    def read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return json.loads(self.path.read_text())

    def write(self, stats: dict[str, Any]) -> None:
        write_json_atomic(stats, self.path)


def fixed_size_list(matrix: "np.ndarray") -> pa.FixedSizeListArray:
    """A 2-D array as one Arrow column of fixed-size lists (signatures, embeddings)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).reshape(-1)), matrix.shape[1])


def to_matrix(column: pa.ChunkedArray | pa.Array) -> "np.ndarray":
    """The inverse of :func:`fixed_size_list`: a ``(rows, width)`` numpy array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = arr.type.list_size
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
