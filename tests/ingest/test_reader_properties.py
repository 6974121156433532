"""Properties of the readers and of text normalization, tested with hypothesis: any bytes in gives
documents and rejects, never an exception; every non-blank JSONL line is exactly one of them; a
split file reads like the whole one; what is read can always be written; normalized text is
storable, tidy, in its Unicode form and stable, and normalizing removes nothing but whitespace and
control characters.

Examples are drawn from a fixed seed (``derandomize``) and bounded in number, so a run is as fast
and as repeatable as a table of cases; a failure prints the smallest input hypothesis found."""

from __future__ import annotations

import gzip
import re
import tempfile
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.decoding import storable
from refinery.tasks.ingest.readers import Record, Reject, normalize, plan_units, read_unit
from refinery.tasks.ingest.shard_tasks import ingest_unit_to_shards


def properties(examples: int) -> settings:
    """``examples`` inputs per test, the same ones on every run; no deadline (a loaded machine is
    slow), no example database written into the checkout."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


FRAGMENTS = [
    b'{"id": 1, "text": "a fine record"}', b'{"text": "caf\xc3\xa9 \xe4\xb8\xad"}', b'{"text": "\\ud800 lone"}',
    b'{"id": 18446744073709551616, "text": "big id"}', b'{"text": NaN}', b'{"text": "t", "title": {"x": [1]}}',
    b"\xef\xbb\xbf", b"\r\n", b"\n", b"\n\n", b"   ", b"\x00", b"\x07", b"\xff", b"\xc3", b"\xe9", b"\x80\x80",
    b'{"text": ', b'"', b"}", b"[", b"]" * 3, b"[" * 3000, b"null", b"123", b'"str"', b'{"text": 5}',
    b'{"text": ""}', b'{"text": "x\\u0000y"}', b'{"label": "\\udfff", "text": "z"}', b"\t", b"\\",
]
# Hostile input: mostly fragments that each break a reader in its own way, some random bytes.
hostile_bytes = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.sampled_from(FRAGMENTS), st.binary(min_size=1, max_size=40)),
                         max_size=25).map(b"".join)
GOOD_LINES = FRAGMENTS[:6]


def read(path: Path, **ingest) -> tuple[list, IngestConfig]:
    cfg = IngestConfig(sources=[SourceConfig(path=str(path), name="p")], **ingest)
    return [item for unit in plan_units(cfg) for item in read_unit(unit)], cfg


def write_all(cfg: IngestConfig, out: Path) -> dict[str, int]:
    """Every unit written as shards (a string that cannot be stored would fail here); the counts."""
    counts = {"docs": 0, "rejects": 0, "read": 0}
    for unit in plan_units(cfg):
        stats = ingest_unit_to_shards(unit, out, cfg)
        counts["docs"] += stats["docs"]
        counts["rejects"] += stats["rejects"]
        counts["read"] += sum(records for _, records, _ in stats["files"])
    return counts


def non_blank_lines(data: bytes) -> int:
    """Lines that are records: all but those that decode to nothing but whitespace (or a BOM)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    count = 0
    for line in lines:
        try:
            count += bool(line.decode("utf-8").removeprefix("\ufeff").strip())
        except UnicodeDecodeError:
            count += 1
    return count


@properties(examples=200)
@given(data=hostile_bytes, split=st.integers(1, 64))
def test_any_jsonl_bytes_give_one_item_per_record_line_and_split_reads_like_whole(data, split):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl"
        path.write_bytes(data)
        items, cfg = read(path, split_bytes=0)
        assert all(isinstance(i, (Record, Reject)) for i in items)
        expected = non_blank_lines(data) if data else 1  # an empty file is one empty_file reject
        assert len(items) == expected
        assert read(path, split_bytes=split)[0] == items
        counts = write_all(cfg, Path(tmp) / "out")
        assert counts["docs"] + counts["rejects"] == counts["read"] == expected


@st.composite
def damaged_gzip(draw) -> bytes:
    """A gzip file of good lines, truncated or with 8 bytes overwritten somewhere."""
    lines = draw(st.lists(st.sampled_from(GOOD_LINES), min_size=1, max_size=200))
    packed = bytearray(gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0))
    at = draw(st.integers(0, len(packed) - 1))
    if draw(st.booleans()):
        return bytes(packed[:at])
    packed[at : at + 8] = draw(st.binary(min_size=8, max_size=8))
    return bytes(packed)


@properties(examples=150)
@given(data=damaged_gzip())
def test_any_damage_to_a_gzip_file_keeps_what_came_before_and_rejects_the_rest_once(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl.gz"
        path.write_bytes(data)
        items, cfg = read(path)
        damaged = [i for i, item in enumerate(items) if isinstance(item, Reject) and item.reason.startswith("damaged_gzip")]
        assert len(damaged) <= 1 and (not damaged or damaged[0] == len(items) - 1)
        counts = write_all(cfg, Path(tmp) / "out")
        assert counts["docs"] + counts["rejects"] == counts["read"] == len(items)


def _good_parquet() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "good.parquet"
        pq.write_table(pa.table({"text": [f"row {i}" for i in range(64)]}), path, row_group_size=8)
        return path.read_bytes()


GOOD_PARQUET = _good_parquet()


@st.composite
def damaged_parquet(draw) -> bytes:
    """A Parquet file of 8 row groups, truncated or with 16 bytes overwritten somewhere."""
    data = bytearray(GOOD_PARQUET)
    at = draw(st.integers(0, len(data) - 1))
    if draw(st.booleans()):
        return bytes(data[:at])
    data[at : at + 16] = draw(st.binary(min_size=16, max_size=16))
    return bytes(data)


@properties(examples=60)
@given(text=hostile_bytes, parquet=damaged_parquet(), split=st.sampled_from([1, 200]))
def test_any_bytes_as_a_text_file_or_a_parquet_file(text, parquet, split):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.txt"
        path.write_bytes(text)
        items, cfg = read(path)
        assert len(items) == 1  # a text file is one record: a document or a reject
        assert write_all(cfg, Path(tmp) / "out-t")["read"] == 1
        path = Path(tmp) / "input.parquet"
        path.write_bytes(parquet)
        items, cfg = read(path, split_bytes=0)
        assert read(path, split_bytes=split)[0] == items
        counts = write_all(cfg, Path(tmp) / "out-p")
        assert counts["docs"] + counts["rejects"] == counts["read"] == len(items)


# Characters that normalization treats specially, mixed into arbitrary text: whitespace and line
# ends of every kind, control characters, a BOM, combining marks and compatibility forms, lone
# surrogates (from JSON escapes).
SPECIAL = ["a", "e", " ", "\t", "\n", "\r", "\x00", "\x0b", "\x1c", "\x7f", "\x85", "\ufeff", "\u00e9", "\u0301",
           "\u0327", "\ufb01", "\u00a8", "\u00b4", "\ud800", "\udfff", "\U0001f600", "\u2028", "\u3000", "\u00a0"]
texts = st.one_of(st.text(st.sampled_from(SPECIAL), max_size=40),
                  st.text(st.one_of(st.sampled_from(SPECIAL), st.characters()), max_size=60))
# What normalization removes: C0 controls but tab, newline and CR (which becomes a newline), and DEL.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@properties(examples=1000)
@given(raw=texts, form=st.sampled_from(["NFC", "NFKC"]))
def test_normalized_text_is_storable_tidy_in_its_form_and_stable(raw, form):
    text = normalize(raw, form)
    text.encode("utf-8")  # no lone surrogate survives
    assert unicodedata.is_normalized(form, text)
    assert "\r" not in text and "\n\n\n" not in text and " \n" not in text and "\t\n" not in text
    assert not CONTROL.search(text)  # nor CR (above)
    assert text == text.strip()
    assert normalize(text, form) == text


@properties(examples=1000)
@given(raw=texts, form=st.sampled_from(["NFC", "NFKC"]))
def test_normalizing_removes_only_whitespace_and_control_characters(raw, form):
    def visible(s: str) -> str:
        return "".join(c for c in s if not c.isspace())

    expected = unicodedata.normalize(form, storable(CONTROL.sub("", raw.replace("\r", "\n"))))
    assert visible(normalize(raw, form)) == visible(expected)
