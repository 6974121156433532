"""Items of web inputs: HTML files, WARC files (response and resource records) and WET files.

Each function yields ``(location, record, reason, raw)`` as the other readers do (``readers.py``
turns them into documents and rejects): ``record`` holds ``text`` (the page's main text, or a WET
record's text as is), ``title``, ``id``, ``url``, ``fetched_at`` and ``lang``; a page that cannot
be a document is a reject with its reason and raw bytes. A WARC record's location is its file and
the byte offset its record starts at (``crawl.warc.gz:40213``), so a reject can be found again.

What a WARC file's books count: its ``response``, ``resource`` and ``conversion`` records (each a
document or a reject) and any damage (one reject at the offset where reading stopped). Request,
metadata, revisit and warcinfo records carry no page and are not counted.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from refinery.tasks.ingest.web import (HTML_TYPES, content_type_charset, decode_page, extract_main_text,
                                       normalize_url, page_lang, page_title)

Item = tuple[str, "dict[str, Any] | None", "str | None", bytes]
PAGE_RECORDS = ("response", "resource")
# How much of a record that is not a page (an image, a PDF) a reject keeps: its headers and the start.
NOT_A_PAGE_BYTES = 4096


def _page(raw: bytes, *, charset: str | None, max_chars: int | None, tables: bool,
          code: bool) -> tuple[dict[str, Any] | None, str | None]:
    """(record fields, None) of a page's bytes, or (None, reject reason)."""
    page, _ = decode_page(raw, charset)
    if max_chars is not None and len(page) > max_chars:
        return None, f"text_too_long: a page of more than ingest.max_page_chars ({max_chars:,}) characters of HTML"
    text = extract_main_text(page, tables=tables, code=code)
    if not text.strip():
        return None, "extract_empty: the page has no main text"
    return {"text": text, "title": page_title(page), "lang": page_lang(page)}, None


def html_file_items(path: str, location: str, *, max_chars: int | None, tables: bool, code: bool) -> Iterator[Item]:
    """The one item of an HTML file (``.gz`` too): its url is its location."""
    try:
        with (gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")) as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        yield location, None, f"unreadable_file: {type(exc).__name__}: {exc}", b""
        return
    fields, reason = _page(raw, charset=None, max_chars=max_chars, tables=tables, code=code)
    if fields is None:
        yield location, None, reason, raw
        return
    yield location, {**fields, "id": location, "url": location, "fetched_at": None}, None, b""


def _warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp.astimezone(timezone.utc) if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


_GZIP_MAGIC = b"\x1f\x8b\x08"
SCAN_BYTES = 2**20  # a range looks for its first gzip member this much at a time


def _is_member_start(fh, offset: int) -> bool:  # noqa: ANN001
    """True when a gzip member starts at ``offset`` and inflates to the start of a WARC record."""
    fh.seek(offset)
    head = fh.read(4096)
    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(head, 16)
    except zlib.error:
        return False
    return out.startswith(b"WARC/")


def next_member(fh, start: int, stop: int) -> int | None:  # noqa: ANN001
    """The offset of the first WARC gzip member starting in ``[start, stop)``, None if none does."""
    pos = start
    while pos < stop:
        fh.seek(pos)
        chunk = fh.read(min(SCAN_BYTES, stop - pos) + len(_GZIP_MAGIC) - 1)
        if not chunk:
            return None
        at = chunk.find(_GZIP_MAGIC)
        while at >= 0 and pos + at < stop:
            if _is_member_start(fh, pos + at):
                return pos + at
            at = chunk.find(_GZIP_MAGIC, at + 1)
        pos += SCAN_BYTES
    return None


def warc_items(path: str, location: str, *, wet: bool, max_chars: int | None, tables: bool,
               code: bool, span: tuple[int, int] | None = None) -> Iterator[Item]:
    """The items of a WARC file (gzip or not), or of the records whose gzip member starts in
    ``span``: pages of its response/resource records with an HTML content type, or (``wet``) the
    text of its conversion records as is."""
    from warcio.archiveiterator import ArchiveIterator

    try:
        fh = open(path, "rb")
    except OSError as exc:
        yield location, None, f"unreadable_file: {exc}", b""
        return
    with fh:
        size = os.fstat(fh.fileno()).st_size
        start, stop = span or (0, size)
        if start > 0:
            found = next_member(fh, start, stop)
            if found is None:  # a record bigger than the range began before it: its range reads it
                return
            start = found
        fh.seek(start)
        records = ArchiveIterator(fh)
        offset = start
        wanted = ("conversion",) if wet else PAGE_RECORDS
        try:
            for record in records:
                if records.offset >= stop:  # this record starts in the next range
                    return
                if record.rec_type not in wanted:
                    records.read_to_end()
                    offset = records.offset
                    continue
                body = record.content_stream().read()
                offset = records.get_record_offset()
                where = f"{location}:{offset}"
                if getattr(record.raw_stream, "limit", 0) > 0:  # the file ends inside the record
                    yield (where, None, f"damaged_warc: truncated: the record at byte {offset:,} is cut off "
                           f"{record.raw_stream.limit:,} bytes before its end", _bytes_at(path, offset))
                    return
                headers = record.rec_headers
                url = headers.get_header("WARC-Target-URI")
                meta = {"id": headers.get_header("WARC-Record-ID") or where,
                        "url": normalize_url(url) if url else None,
                        "fetched_at": _warc_date(headers.get_header("WARC-Date"))}
                offset = records.offset
                yield _warc_item(record, body, where, meta, wet=wet, max_chars=max_chars, tables=tables, code=code)
        except Exception as exc:  # noqa: BLE001 - damage is a reject where reading stopped, not a crash
            yield f"{location}:{offset}", None, f"damaged_warc: {type(exc).__name__}: {exc}", _bytes_at(path, offset)
            return
        if offset < size:
            # warcio ends quietly at a cut gzip member or record: what it left unread is the damage
            yield (f"{location}:{offset}", None,
                   f"damaged_warc: truncated: bytes {offset:,} to {size:,} hold no complete record",
                   _bytes_at(path, offset))


def _warc_item(record: Any, body: bytes, where: str, meta: dict[str, Any], *, wet: bool, max_chars: int | None,
               tables: bool, code: bool) -> Item:
    if wet:
        _, charset = content_type_charset(record.rec_headers.get_header("Content-Type"))
        try:
            text = body.decode(charset or "utf-8")
        except (LookupError, UnicodeDecodeError) as exc:
            return where, None, f"undecodable_utf8: {exc}", body
        lang = record.rec_headers.get_header("WARC-Identified-Content-Language")
        return where, {**meta, "text": text, "title": None, "lang": lang.split(",")[0] if lang else None}, None, b""
    if record.http_headers is not None and record.rec_type == "response":
        status = record.http_headers.get_statuscode()
        content_type = record.http_headers.get_header("Content-Type")
        if status and not status.startswith("2"):
            return where, None, f"http_status: {status}", _head_of(record, body)
    else:
        content_type = record.rec_headers.get_header("Content-Type")
    media, charset = content_type_charset(content_type)
    if media not in HTML_TYPES:
        return (where, None, f"unsupported_content_type: {media or 'none'} ({meta['url'] or 'no url'})",
                _head_of(record, body))
    fields, reason = _page(body, charset=charset, max_chars=max_chars, tables=tables, code=code)
    if fields is None:
        return where, None, reason, body
    return where, {**meta, **fields}, None, b""


def _head_of(record: Any, body: bytes) -> bytes:
    head = record.rec_headers.to_str().encode("utf-8", "replace")
    if record.http_headers is not None:
        head += record.http_headers.to_str().encode("utf-8", "replace")
    return head + body[:NOT_A_PAGE_BYTES]


def _bytes_at(path: str, offset: int, size: int = 100_000) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)
    except OSError:
        return b""
