"""Batch text normalization into one UTF-8 byte buffer: casefolding and whitespace collapsing.

Both exact keys and signatures start here. The per-text Python work is one encode(); ASCII is
lowercased by bytes.lower() over the whole batch and only runs of non-ASCII bytes are decoded and
casefolded (context-free per character, so folding runs equals folding the text). Results equal the
plain-Python references normalize_for_exact() and str.casefold(), which the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Zero bytes after every buffer so 8-byte gathers and 3-byte pattern checks never read past the end.
PADDING = 8
# What str.split() splits on beyond ASCII (str.isspace()), as UTF-8; the tests check the list.
UNICODE_SPACES = tuple(
    chr(c).encode() for c in (0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
)
_SPACE = np.uint8(ord(" "))
_ENCODING = ("utf-8", "surrogatepass")


def normalize_for_exact(text: str) -> str:
    """casefold, then collapse every run of Unicode whitespace to one space and strip the ends.

    So "Hello  World\\n" and "hello world" are the same text; punctuation still counts.
    """
    return " ".join(text.casefold().split())


def _casefold_runs(joined: bytes, bounds: np.ndarray) -> tuple[list[bytes], np.ndarray] | None:
    """Pieces of `joined` with its changed non-ASCII runs casefolded, and each piece's old start;
    None when casefolding changes nothing (the common case: £, ’ and the like have no case).
    Runs are cut at text bounds so every bound stays at a piece start or in an unchanged piece."""
    high = np.frombuffer(joined, dtype=np.uint8) >= 0x80
    if not high.any():
        return None
    cut = np.zeros(high.size + 1, dtype=bool)
    cut[bounds[bounds <= high.size]] = True
    padded = np.concatenate(([False], high, [False]))
    run_lo = np.flatnonzero(high & (~padded[:-2] | cut[:-1])).tolist()
    run_hi = np.flatnonzero(padded[:-1] & (~padded[1:] | cut)).tolist()
    runs = [joined[a:b] for a, b in zip(run_lo, run_hi)]
    folded = {r: r.decode(*_ENCODING).casefold().encode(*_ENCODING) for r in set(runs)}
    if all(folded[r] == r for r in folded):
        return None
    pieces, old_starts, pos = [], [], 0
    for a, b, run in zip(run_lo, run_hi, runs):
        pieces += [joined[pos:a], folded[run]]
        old_starts += [pos, a]
        pos = b
    pieces.append(joined[pos:])
    old_starts.append(pos)
    return pieces, np.asarray(old_starts, dtype=np.int64)


def utf8_casefolded(texts: Sequence[str], *, separator: bytes = b"") -> tuple[np.ndarray, np.ndarray]:
    """(buffer, bounds): UTF-8 of each text's casefold(), joined by separator, then PADDING zero bytes.

    Text i occupies buffer[bounds[i]:bounds[i + 1] - len(separator)].
    """
    encoded = [t.encode(*_ENCODING) for t in texts]
    step = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + len(separator)
    bounds = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(step, out=bounds[1:])
    joined = separator.join(encoded).lower()  # bytes.lower() folds ASCII letters only
    folded = _casefold_runs(joined, bounds)
    if folded is not None:
        pieces, old_starts = folded
        new_starts = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in pieces], out=new_starts[1:])
        # Bounds sit on ASCII bytes or text ends, never inside a run: shift them with their piece.
        piece = np.searchsorted(old_starts, bounds, side="right") - 1
        bounds = new_starts[piece] + (bounds - old_starts[piece])
        joined = b"".join(pieces)
    return np.frombuffer(joined + bytes(PADDING), dtype=np.uint8), bounds


def _space_mask(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(first byte of each whitespace character, other bytes of multi-byte ones or None)."""
    space = (buf == _SPACE) | ((buf - np.uint8(9)) < 5) | ((buf - np.uint8(0x1C)) < 4)
    candidates = np.flatnonzero((buf - np.uint8(0xC2)) < 0x22)  # lead bytes C2..E3 of UNICODE_SPACES
    if candidates.size == 0:
        return space, None
    tail = np.zeros(buf.size, dtype=bool)
    for pattern in UNICODE_SPACES:
        match = candidates[buf[candidates] == pattern[0]]
        for k in range(1, len(pattern)):
            match = match[buf[match + k] == pattern[k]]
        space[match] = True
        for k in range(1, len(pattern)):
            tail[match + k] = True
    return space, (tail if tail.any() else None)


def collapse_whitespace(buf: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per text (bounds as from utf8_casefolded with no separator): whitespace runs become one space
    and the ends are stripped, as " ".join(text.split()) does. Returns a new padded buffer and bounds."""
    space, tail = _space_mask(buf)
    size = int(bounds[-1])
    body, space = buf[:size], space[:size]
    if tail is not None:  # keep one byte per multi-byte space character
        kept = np.flatnonzero(~tail[:size])
        body, space, bounds = body[kept], space[kept], np.searchsorted(kept, bounds)
    starts, ends = bounds[:-1], bounds[1:]
    after_space = np.empty_like(space)
    after_space[1:] = space[:-1]
    after_space[starts[ends > starts]] = True  # leading whitespace is dropped whole
    kept = np.flatnonzero(~(space & after_space))  # each run's first character survives
    if kept.size:
        last = np.searchsorted(kept, ends) - 1
        trailing = (last >= np.searchsorted(kept, starts)) & space[kept[np.maximum(last, 0)]]
        kept = np.delete(kept, last[trailing])  # at most one space was left at a text's end
    out = np.zeros(kept.size + PADDING, dtype=np.uint8)
    out[: kept.size] = np.where(space[kept], _SPACE, body[kept])
    return out, np.searchsorted(kept, bounds)
