"""Where a big input file is cut, so that several ingest tasks share it.

An uncompressed JSONL file is cut into byte ranges ``[start, stop)``; a range owns every line that
*starts* in it (a line starts at byte 0 or right after a ``\\n``), so whatever the cut points, every
line is read by exactly one range and lines are never cut: a range skips the tail of the line it
opens in, and reads its own last line to its end past ``stop``. ``\\n`` is one byte that never occurs
inside a multi-byte UTF-8 character, and a CRLF line ends at its ``\\n`` as it does when read whole.

A location is ``file:line`` with the line's number in the whole file, so a range needs the number of
lines before its first one. Planning counts them in one chunked pass over the file up to the last
cut (``bytes.count`` on 16 MiB reads from the page cache: ~2 GB per CPU second on the 2-core
machine, 0.17 s CPU for a 351 MB file; the workers then read it from a warm cache). Counting on
the workers instead would have each range count everything before it: quadratic in the file size.

A Parquet file is cut between row groups (its footer alone says their rows and bytes), a row's
location counting rows from the file's start as when it is read whole.

A gzip WARC file is cut into byte ranges too: a range owns every record whose gzip member *starts*
in it (WARC writers compress each record as a member of its own, which is what makes a WARC
seekable). A range other than the first starts reading at the first member start at or after its
start (``web_readers.next_member``); a record's location is its byte offset, the same whatever
the cut points. An uncompressed WARC is read whole (a record's start cannot be told from payload
bytes that look like one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from refinery.storage import parquet_row_groups

COUNT_CHUNK_BYTES = 16 * 2**20  # newline counting reads this much at a time (bounded memory)
SKIP_CHUNK_BYTES = 2**20  # a range skips the line it opens in this much at a time


@dataclass(frozen=True)
class Piece:
    """The part of a file one unit reads: ``span`` is a byte range (JSONL) or a row-group range
    (Parquet), ``None`` for the whole file; ``offset`` counts the lines (rows) of the file before
    the span's first one, so locations are numbered as in the whole file."""

    span: tuple[int, int] | None = None
    offset: int = 0


WHOLE = Piece()


def jsonl_pieces(path: Path, split_bytes: int | None) -> list[Piece]:
    """Byte ranges of ``split_bytes`` (the last one shorter) of an uncompressed JSONL file larger
    than that; one whole-file piece for a small or gzip file, or when ``split_bytes`` is 0/None."""
    size = path.stat().st_size
    if not split_bytes or size <= split_bytes or path.name.endswith(".gz"):
        return [WHOLE]
    starts = list(range(0, size, split_bytes))
    return [Piece((a, min(a + split_bytes, size)), n) for a, n in zip(starts, lines_before(path, starts))]


def lines_before(path: Path, starts: list[int]) -> list[int]:
    """For each (ascending) byte offset, the number of lines before the first line starting at or
    after it: 0 for offset 0, else the newlines in ``[0, start - 1)`` plus the one that ends the
    line the offset falls in (byte ``start - 1`` or later). One pass, up to the last offset."""
    targets = [a - 1 for a in starts if a > 0]
    counts: list[int] = []
    seen = pos = 0
    buf = bytearray(COUNT_CHUNK_BYTES)
    with open(path, "rb", buffering=0) as fh:
        while len(counts) < len(targets):
            n = fh.readinto(buf)
            if not n:
                break
            while len(counts) < len(targets) and targets[len(counts)] < pos + n:
                counts.append(seen + buf.count(b"\n", 0, targets[len(counts)] - pos) + 1)
            seen += buf.count(b"\n", 0, n)
            pos += n
    counts += [seen + 1] * (len(targets) - len(counts))  # the file shrank since stat(): those ranges are empty
    return [0] * (len(starts) - len(targets)) + counts


def range_lines(fh: BinaryIO, span: tuple[int, int], offset: int) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of the lines starting in ``span`` of the open binary file ``fh``."""
    start, stop = span
    pos = start
    if start > 0:
        fh.seek(start - 1)
        pos = start - 1
        while True:  # skip to just after the first newline at or after start - 1
            part = fh.readline(SKIP_CHUNK_BYTES)
            pos += len(part)
            if not part or part.endswith(b"\n"):
                break
    number = offset
    while pos < stop:
        line = fh.readline()
        if not line:
            return
        number += 1
        pos += len(line)
        yield number, line


def warc_pieces(path: Path, split_bytes: int | None) -> list[Piece]:
    """Byte ranges of ``split_bytes`` of a gzip WARC file larger than that (a range owns the
    records whose gzip member starts in it); one whole-file piece otherwise."""
    size = path.stat().st_size
    if not split_bytes or size <= split_bytes or not path.name.lower().endswith(".gz"):
        return [WHOLE]
    return [Piece((a, min(a + split_bytes, size))) for a in range(0, size, split_bytes)]


def parquet_pieces(path: Path, split_bytes: int | None) -> list[Piece]:
    """Runs of whole row groups of about ``split_bytes`` compressed bytes each (at least one group)
    of a Parquet file larger than that; one whole-file piece otherwise, also for a file whose
    footer cannot be read (reading it whole then turns the damage into a reject)."""
    if not split_bytes or path.stat().st_size <= split_bytes:
        return [WHOLE]
    try:
        groups = parquet_row_groups(path)
    except Exception:  # noqa: BLE001 - a damaged footer is the reader's reject, not a planning error
        return [WHOLE]
    pieces: list[Piece] = []
    first = rows_before = run_rows = run_bytes = 0
    for index, (rows, n_bytes) in enumerate(groups):
        run_rows += rows
        run_bytes += n_bytes
        if run_bytes >= split_bytes or index == len(groups) - 1:
            pieces.append(Piece((first, index + 1), rows_before))
            first, rows_before, run_rows, run_bytes = index + 1, rows_before + run_rows, 0, 0
    return pieces if len(pieces) > 1 else [WHOLE]
