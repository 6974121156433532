"""A big file split over several ingest units reads exactly as the whole file does: the same
documents, rejects, doc ids and locations, wherever the cut points land."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.tasks.ingest import splits
from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.readers import Record, Reject, doc_id_for, plan_units, read_unit


def tricky_jsonl() -> bytes:
    """Records with and without ids (without one, the id is the location), CRLF endings, multi-byte
    UTF-8, blank and whitespace-only lines, broken JSON, a non-object, invalid UTF-8, a line
    longer than the small split sizes, and a last line without a newline."""
    lines = [
        json.dumps({"id": "a", "text": "First record."}).encode() + b"\n",
        json.dumps({"text": "No id: \u00e9t\u00e9 \u4e2d\u6587 \U0001F600"}, ensure_ascii=False).encode() + b"\r\n",
        b"\n",
        b"   \r\n",
        b'{"id": "b", "text": "broken\n',
        json.dumps({"text": "Caf\u00e9 au lait, " * 40}, ensure_ascii=False).encode() + b"\n",  # ~600 bytes
        b"[1, 2, 3]\n",
        b'{"id": "c", "text": "bad \xff byte"}\n',
        json.dumps({"id": 7, "title": "T\u00eftle", "text": "Numbered id.\r\n\r\n\r\nParagraph."},
                   ensure_ascii=False).encode() + b"\r\n",
        b"\r\n",
        json.dumps({"text": "   "}).encode() + b"\n",
        json.dumps({"label": "x"}).encode() + b"\n",
        b'{"text": "trunc',
        b"ated"  # continues the line above: one broken line
        b"\n",
        json.dumps({"text": "\u00bd\u2153\u00bc of a cake"}, ensure_ascii=False).encode() + b"\n",
        json.dumps({"text": "The last line has no newline."}).encode(),
    ]
    return b"".join(lines)


def read_all(path, **ingest) -> tuple[int, list[Record | Reject]]:
    cfg = IngestConfig(sources=[SourceConfig(path=str(path), name="web")], **ingest)
    units = plan_units(cfg)
    return len(units), [item for unit in units for item in read_unit(unit, limit=cfg.limit)]


@pytest.fixture()
def jsonl(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(tricky_jsonl())
    return path


def test_whole_file_reading_gives_the_reference_outcome(jsonl):
    units, items = read_all(jsonl, split_bytes=0)
    assert units == 1
    docs = {i.location: i for i in items if isinstance(i, Record)}
    rejects = {i.location: i.reason.split(":")[0] for i in items if isinstance(i, Reject)}
    assert sorted(docs, key=lambda loc: int(loc.rsplit(":", 1)[1])) == [
        "x.jsonl:1", "x.jsonl:2", "x.jsonl:6", "x.jsonl:9", "x.jsonl:14", "x.jsonl:15"]
    assert rejects == {"x.jsonl:5": "invalid_json", "x.jsonl:7": "not_an_object", "x.jsonl:8": "undecodable_utf8",
                       "x.jsonl:11": "empty_text", "x.jsonl:12": "missing_field", "x.jsonl:13": "invalid_json"}
    assert docs["x.jsonl:2"].doc_id == doc_id_for("web", "x.jsonl:2")  # no id: the location is the key
    assert docs["x.jsonl:9"].doc_id == doc_id_for("web", "7") and docs["x.jsonl:9"].title == "T\u00eftle"


@pytest.mark.parametrize("split_bytes", [1, 2, 3, 5, 7, 16, 64, 333, 500])
def test_any_split_reads_like_the_whole_file(jsonl, split_bytes):
    # split_bytes=1 puts a cut at every byte: mid-line, on each \n, between \r and \n, inside every
    # multi-byte character, in blank lines and broken ones, and in the last, unterminated line
    _, whole = read_all(jsonl, split_bytes=0)
    units, split = read_all(jsonl, split_bytes=split_bytes)
    assert units == -(-jsonl.stat().st_size // split_bytes) > 1
    assert split == whole


@pytest.mark.parametrize("count_chunk, skip_chunk", [(1, 1), (5, 3), (64, 2)])
def test_line_numbers_are_counted_right_across_read_chunks(jsonl, monkeypatch, count_chunk, skip_chunk):
    _, whole = read_all(jsonl, split_bytes=0)
    monkeypatch.setattr(splits, "COUNT_CHUNK_BYTES", count_chunk)
    monkeypatch.setattr(splits, "SKIP_CHUNK_BYTES", skip_chunk)
    for split_bytes in (1, 7, 100):
        assert read_all(jsonl, split_bytes=split_bytes)[1] == whole


def test_lines_before_counts_whole_lines_before_the_first_line_starting_at_an_offset(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_bytes(b"ab\n\ncd\r\nef")  # lines start at bytes 0, 3, 4, 8
    starts = list(range(0, 11))
    # offset 0 -> line 1 (0 before); 1..3 -> line 2; 4 -> line 3; 5..8 -> line 4; 9, 10 -> no line
    assert splits.lines_before(path, starts) == [0, 1, 1, 1, 2, 3, 3, 3, 3, 4, 4]


def test_splitting_is_deterministic_and_gzip_limit_and_small_files_stay_whole(jsonl, tmp_path):
    cfg = IngestConfig(sources=[SourceConfig(path=str(jsonl))], split_bytes=100)
    assert plan_units(cfg) == plan_units(cfg)  # unit indices name shards and markers on resume
    assert [u.index for u in plan_units(cfg)] == list(range(len(plan_units(cfg))))
    zipped = tmp_path / "x.jsonl.gz"
    zipped.write_bytes(gzip.compress(jsonl.read_bytes()))
    assert read_all(zipped, split_bytes=1)[0] == 1
    assert read_all(jsonl, split_bytes=1, limit=3)[0] == 1  # a limit counts from the file's start
    assert read_all(jsonl, split_bytes=jsonl.stat().st_size)[0] == 1
    assert read_all(jsonl, split_bytes=None)[0] == 1


@pytest.fixture()
def parquet(tmp_path):
    path = tmp_path / "p.parquet"
    texts = [f"Row {i} says something about the river." if i % 9 else None for i in range(50)]
    table = pa.table({"id": [f"r{i}" if i % 4 else None for i in range(50)], "text": texts})
    pq.write_table(table, path, row_group_size=4)  # 13 row groups, the last with 2 rows
    return path


@pytest.mark.parametrize("split_bytes", [1, 300, 1000])
def test_parquet_split_by_row_groups_reads_like_the_whole_file(parquet, split_bytes):
    _, whole = read_all(parquet, split_bytes=0)
    units, split = read_all(parquet, split_bytes=split_bytes)
    assert split == whole
    assert 1 < units <= 13
    if split_bytes == 1:
        assert units == 13  # one unit per row group
    locations = [i.location for i in whole]
    assert locations == [f"p.parquet:{n}" for n in range(50)]
    assert sum(isinstance(i, Reject) and i.reason == "missing_field: text" for i in whole) == 6


def test_damaged_parquet_is_one_reject_also_when_it_would_be_split(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 5000)
    units, items = read_all(path, split_bytes=100)
    assert units == 1
    assert [(i.location, i.reason.split(":")[0]) for i in items] == [("bad.parquet", "unreadable_parquet")]
