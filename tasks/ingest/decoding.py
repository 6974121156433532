"""How input bytes become text: one rule for every format, and the few repairs that are made.

The rule: a record's bytes (a JSONL line, a text file, a Parquet binary ``text`` value) are decoded
strictly with its source's ``encoding`` (UTF-8 unless the source sets one). A record that does not
decode is rejected (``undecodable_utf8: <why> at byte N``), its raw bytes kept with U+FFFD for the
bad ones; nothing is guessed and nothing is replaced silently. Latin-1/cp1252 text is therefore
rejected unless its source says ``encoding: cp1252`` (or ``latin-1``).

Repairs, each harmless to a record that needs none:
- a UTF-8 byte-order mark at the start of a record (a file's first line, a text file) is dropped;
- a lone surrogate (JSON's ``"\\ud800"`` escape: well-formed JSON, not a character) becomes U+FFFD;
- a file name that is not valid UTF-8 is written with backslash escapes (``caf\\xe9.jsonl``);
- CRLF and CR become LF, and control characters are removed, by ``readers.normalize``.
"""

from __future__ import annotations

import codecs
import re

BINARY_SNIFF_BYTES = 8192  # a text file with a NUL byte this early is binary (as git and grep decide)
_SURROGATES = re.compile("[\ud800-\udfff]")


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; an error for an unknown codec or one in which a newline is not
    the byte ``\\n`` (UTF-16/32: their lines cannot be found in the bytes)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None
    if "\n".encode(name) != b"\n" or "a".encode(name) != b"a":
        raise ValueError(f"encoding {encoding!r} is not ASCII-compatible (lines are found by their \\n byte)")
    return name


def reason_tag(encoding: str) -> str:
    """``utf8``, ``cp1252``, ``iso8859_1``: the codec as a reject reason names it."""
    return codecs.lookup(encoding).name.replace("utf-8", "utf8").replace("-", "_")


def decode_record(raw: bytes, encoding: str, where: str = "") -> tuple[str | None, str | None]:
    """(text, None), or (None, reject reason) for bytes that do not decode; a leading UTF-8 BOM
    is dropped. ``where`` ends the reason (e.g. `` of the line``)."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return None, f"undecodable_{reason_tag(encoding)}: {exc.reason} at byte {exc.start}{where}"
    if text.startswith("\ufeff") and reason_tag(encoding) == "utf8":
        text = text[1:]
    return text, None


def storable(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, so it can be written as UTF-8."""
    if text.isascii():  # O(1) in CPython
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def path_text(path: str) -> str:
    """A path as text: bytes of a name that is not valid UTF-8 (held by Python as surrogate
    escapes) written as ``\\xNN``, so distinct names stay distinct."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def nul_offset(head: bytes) -> int:
    """Offset of the first NUL byte in ``head``, -1 if none."""
    return head.find(b"\0")
