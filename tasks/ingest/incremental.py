"""What is new in a dataset's sources tonight: each input file compared with what the dataset
remembers of it (its size, modification time and content hash when it was last read).

- a file whose size and mtime are what the dataset remembers is **unchanged**: not opened at all
  (as make and rsync decide), its ``file_books`` row says so with 0 records read;
- an uncompressed JSONL file that only **grew** (its first bytes hash as the whole file did, and
  they ended a line) is read from where it ended (a byte range whose line numbers continue the
  file's, so locations and ids are those a whole read gives);
- any other file whose bytes differ is **changed** and read whole; dedup then diffs its records
  with the dataset's by doc id and content (tasks/dedup/against.py);
- a file never seen is **new**;
- a remembered file that is gone is **removed**: under ``mode: mirror`` its documents are retired.

Hashing reads each new or changed file once, in 16 MiB chunks (xxh3-128, several GB/s from the page
cache), in the flow process before the units are planned; an unchanged file costs one ``stat``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from pathlib import Path

import pyarrow as pa
import xxhash

from refinery.tasks.ingest.config import IngestConfig
from refinery.tasks.ingest.readers import Unit, _location, plan_units, source_name
from refinery.tasks.ingest.splits import WHOLE, Piece

CHUNK_BYTES = 16 * 2**20

NEW, CHANGED, GROWN, UNCHANGED, REMOVED = "new", "changed", "grown", "unchanged", "removed"
INPUTS_SCHEMA = pa.schema([("source", pa.string()), ("path", pa.string()), ("size", pa.int64()),
                           ("mtime_ns", pa.int64()), ("hash", pa.string()), ("lines", pa.int64()),
                           ("ends_line", pa.bool_()), ("status", pa.string())])


@dataclass(frozen=True)
class InputState:
    """What a dataset remembers of one input file (a row of ``dataset_inputs``)."""

    source: str
    path: str  # the file's location, as documents' locations and file_books name it
    size: int
    mtime_ns: int
    hash: str
    lines: int  # newlines in the file (where a grown JSONL file's new lines start counting)
    ends_line: bool  # the last byte is a newline (or the file is empty): appending starts a new record


@dataclass(frozen=True)
class InputFile:
    """One input file as tonight's night sees it."""

    state: InputState
    status: str  # NEW, CHANGED, GROWN, UNCHANGED (REMOVED: ``state`` is what was remembered)


def _scan(path: Path, prefix: int | None = None) -> tuple[str, int, bool, str | None]:
    """(hash of the whole file, its newlines, whether it ends a line, hash of its first ``prefix`` bytes)."""
    whole = xxhash.xxh3_128()
    head = None
    lines = read = 0
    last = b"\n"
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK_BYTES):
            if prefix is not None and head is None and read + len(chunk) >= prefix:
                whole.update(chunk[: prefix - read])
                head = whole.hexdigest()
                whole.update(chunk[prefix - read:])
            else:
                whole.update(chunk)
            lines += chunk.count(b"\n")
            read += len(chunk)
            last = chunk[-1:]
    if prefix is not None and head is None and read == prefix:
        head = whole.hexdigest()
    return whole.hexdigest(), lines, last == b"\n", head


def inspect_file(path: Path, source: str, location: str, kind: str, before: InputState | None) -> InputFile:
    """Tonight's state of one input file and what changed since ``before`` (None: never read)."""
    stat = path.stat()
    if before is not None and before.size == stat.st_size and before.mtime_ns == stat.st_mtime_ns:
        return InputFile(before, UNCHANGED)
    appendable = (before is not None and kind == "jsonl" and not path.name.endswith(".gz")
                  and before.ends_line and stat.st_size > before.size)
    digest, lines, ends_line, head = _scan(path, before.size if appendable else None)
    state = InputState(source, location, stat.st_size, stat.st_mtime_ns, digest, lines, ends_line)
    if before is None:
        return InputFile(state, NEW)
    if digest == before.hash:  # touched, same bytes
        return InputFile(state, UNCHANGED)
    return InputFile(state, GROWN if appendable and head == before.hash else CHANGED)


@dataclass
class NightPlan:
    """Tonight's units, and every input file with what changed (for ``file_books`` and the registry)."""

    units: list[Unit]
    files: list[InputFile]
    removed: list[InputState]

    def as_rows(self) -> list[dict[str, Any]]:
        """The registry rows tonight publishes: every file seen, and those gone (status ``removed``)."""
        return ([{**asdict(f.state), "status": f.status} for f in self.files]
                + [{**asdict(s), "status": REMOVED} for s in self.removed])


def plan_night(cfg: IngestConfig, remembered: Iterable[InputState]) -> NightPlan:
    """Tonight's units over what is new in ``cfg``'s sources, given what the dataset remembers."""
    before: Mapping[tuple[str, str], InputState] = {(s.source, s.path): s for s in remembered}
    files: list[InputFile] = []

    def only(source: str, path: Path, kind: str, base: str) -> Piece | None:
        seen = inspect_file(path, source, _location(str(path), base), kind, before.get((source, _location(str(path), base))))
        files.append(seen)
        if seen.status == UNCHANGED:
            return None
        if seen.status == GROWN:
            old = before[(source, seen.state.path)]
            return Piece((old.size, seen.state.size), old.lines)
        return WHOLE

    units = plan_units(cfg, only)
    seen_keys = {(f.state.source, f.state.path) for f in files}
    sources = {f.state.source for f in files} | {source_name(s) for s in cfg.sources}
    removed = [s for key, s in sorted(before.items()) if key not in seen_keys and s.source in sources]
    return NightPlan(units, files, removed)


def mirrored_removals(cfg: IngestConfig, plan: NightPlan) -> list[InputState]:
    """The removed files whose source is in ``mode: mirror`` (their documents are retired)."""
    mirror = {source_name(s) for s in cfg.sources if s.mode == "mirror"}
    return [s for s in plan.removed if s.source in mirror]
