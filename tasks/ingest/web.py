"""Web pages as documents: an HTML page's charset, title, language and main text, and URLs.

One page, one document. Its bytes are decoded with the charset its HTTP header names, else the
one its ``<meta>`` declares, else the one charset-normalizer detects (a declared charset the bytes
do not decode in counts as none: pages lie). Its main text comes from trafilatura (navigation,
headers, footers, sidebars and banners left out; paragraphs, list items, code blocks and table
rows each a paragraph, separated by a blank line). Its title is the ``<title>``, else the first
``<h1>``; its language the ``lang`` its ``<html>`` declares.

Why trafilatura: on the same pages (bench/extract.py, bench/RESULTS.md) resiliparse's main-content
mode is 13-19x as fast but keeps what a site repeats around its text (the Rust book's "Keyboard
shortcuts" help: 9% of its output lines); trafilatura keeps none, is the extractor datatrove and NeMo
Curator default to, and at 20-70 pages a CPU second costs a fraction of a night.
"""

from __future__ import annotations

import html as html_lib
import re
import warnings
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

# The suffixes taken together as one extension; any other name's extension is its last suffix
# (``email.parser.html`` is ``.html``, ``whatsnew/3.0.html`` too).
COMPOUND_SUFFIXES = (".warc.wet.gz", ".jsonl.gz", ".ndjson.gz", ".json.gz", ".warc.gz", ".wet.gz",
                     ".html.gz", ".htm.gz", ".xhtml.gz")
HTML_SUFFIXES = (".html", ".htm", ".xhtml", ".html.gz", ".htm.gz", ".xhtml.gz")
# Content types of pages that have HTML to extract (WARC records); anything else is rejected.
HTML_TYPES = ("text/html", "application/xhtml+xml")
# The head of a page searched for its <meta> charset, as browsers do (HTML5 prescans 1,024 bytes;
# pages with long inline styles put it later).
META_SCAN_BYTES = 4096

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.+-]+)""", re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1\s*>", re.I | re.S)
_HTML_LANG = re.compile(r"""<html[^>]*?\slang\s*=\s*["']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)""", re.I)
_TAG = re.compile(r"<[^>]*>")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def file_suffix(name: str) -> str:
    """The extension of a file name, lower-cased: a known compound suffix, else the last one ('' if none)."""
    lower = name.lower()
    for suffix in COMPOUND_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return suffix
    dot = lower.rfind(".")
    return lower[dot:] if dot > 0 else ""


def content_type_charset(content_type: str | None) -> tuple[str | None, str | None]:
    """(media type, charset) of a Content-Type header value, each None when absent."""
    if not content_type:
        return None, None
    media, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media.strip().lower() or None, charset


def decode_page(raw: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """(text, charset used): the HTTP header's charset, else the ``<meta>`` one, else detection; a
    declared charset that is unknown or that the bytes do not decode in is passed over. Never fails:
    the last resort is UTF-8 with U+FFFD for the bytes that do not decode."""
    declared = [http_charset]
    if found := _META_CHARSET.search(raw[:META_SCAN_BYTES]):
        declared.append(found.group(1).decode("ascii", "replace"))
    for charset in declared:
        if not charset:
            continue
        charset = charset.strip().lower()
        if charset in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"):
            charset = "cp1252"  # what browsers decode these labels as (WHATWG Encoding)
        try:
            return raw.decode(charset), charset
        except (LookupError, UnicodeDecodeError):
            continue
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is not None:
        return str(best), best.encoding
    return raw.decode("utf-8", "replace"), "utf-8"


def _inline_text(fragment: str) -> str | None:
    text = " ".join(html_lib.unescape(_TAG.sub(" ", fragment)).split())
    return text or None


def page_title(page: str) -> str | None:
    """The page's ``<title>``, else its first ``<h1>``, as plain text; None when it has neither."""
    for pattern in (_TITLE, _H1):
        if (found := pattern.search(page)) and (text := _inline_text(found.group(1))):
            return text
    return None


def page_lang(page: str) -> str | None:
    """The language the page's ``<html lang>`` declares, lower-cased (``en``, ``pt-br``)."""
    found = _HTML_LANG.search(page)
    return found.group(1).lower().replace("_", "-") if found else None


def _element_text(element, *, keep_lines: bool) -> str:  # noqa: ANN001 - an lxml element
    """An extracted element's text: ``<lb/>`` a line break; other whitespace collapsed, unless
    ``keep_lines`` (code)."""
    parts: list[str] = []

    def walk(node) -> None:  # noqa: ANN001
        if node.tag == "lb":
            parts.append("\n")
        elif node.text:
            parts.append(node.text)
        for child in node:
            walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(element)
    text = "".join(parts)
    if keep_lines:
        return text.strip("\n")
    return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()


def _paragraphs(body, *, tables: bool, code: bool) -> list[str]:  # noqa: ANN001
    out: list[str] = []
    for element in body:
        tag = element.tag
        if tag == "list":
            items = [_element_text(item, keep_lines=False) for item in element.iter("item")]
            text = "\n".join(f"- {item}" for item in items if item)
        elif tag == "table":
            if not tables:
                continue
            rows = [" | ".join(_element_text(cell, keep_lines=False) for cell in row.iter("cell"))
                    for row in element.iter("row")]
            text = "\n".join(row for row in rows if row.strip(" |"))
        elif tag == "code":
            if not code:
                continue
            text = _element_text(element, keep_lines=True)
        else:
            text = _element_text(element, keep_lines=False)
        if text.strip():
            out.append(text)
    return out


def extract_main_text(page: str, *, tables: bool = True, code: bool = True) -> str:
    """The page's main text as paragraphs separated by a blank line; '' when there is none."""
    import trafilatura

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = trafilatura.bare_extraction(page, include_comments=False, include_tables=tables,
                                                with_metadata=False, deduplicate=False)
        except Exception:  # noqa: BLE001 - a page the extractor chokes on is a page without text
            return ""
    if found is None or found.body is None:
        return ""
    return "\n\n".join(_paragraphs(found.body, tables=tables, code=code))


def normalize_url(url: str) -> str:
    """The URL in one spelling: scheme and host lower-cased, the default port dropped, the fragment
    dropped, an empty path as ``/``, query parameters sorted, percent-escapes made uniform. A string
    that is not an absolute URL (a file path) comes back as it is."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    path = quote(unquote(parts.path), safe="/:@!$&'()*+,;=~-._") or "/"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)), quote_via=quote)
    return SplitResult(scheme, netloc, path, query, "").geturl()


def url_domain(url: str | None) -> str | None:
    """The host of an absolute URL, lower-cased (None for a file path)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return (parts.hostname or "").rstrip(".") or None if parts.scheme and parts.netloc else None
