"""Hostile input: every bad record ends as a reject (source, location, reason, raw bytes up to a cap)
or in a documented repair, the good records beside it are kept, and writing the shards never fails."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.storage import read_shard
from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.readers import RAW_SNIPPET_CHARS, Record, Reject, doc_id_for, plan_units, read_unit
from refinery.tasks.ingest.shard_tasks import ingest_unit_to_shards


def ingest(path, out=None, **options) -> list[Record | Reject]:
    """Read every unit of one source; with ``out``, also write its shards (so a string that
    cannot be stored would fail here)."""
    ingest_opts = {k: options.pop(k) for k in ("max_chars", "split_bytes", "limit") if k in options}
    cfg = IngestConfig(sources=[SourceConfig(path=str(path), name="s", **options)], **ingest_opts)
    items = []
    for unit in plan_units(cfg):
        items += read_unit(unit, limit=cfg.limit, max_chars=cfg.max_chars)
        if out is not None:
            ingest_unit_to_shards(unit, out, cfg)
    return items


def docs(items):
    return [i for i in items if isinstance(i, Record)]


def rejects(items):
    return [i for i in items if isinstance(i, Reject)]


def reasons(items) -> dict[str, str]:
    return {r.location: r.reason for r in rejects(items)}


# ----------------------------------------------------------------------------- one rule for bytes


def test_invalid_utf8_is_rejected_by_one_rule_in_every_format(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "good"}\n{"text": "caf\xe9 bad"}\n{"text": "also good"}\n')
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "bad.txt").write_bytes(b"caf\xe9 au lait")
    binary = pa.array([b"good row", b"bad \xff row"], pa.binary())
    pq.write_table(pa.table({"text": binary}), tmp_path / "bin.parquet")
    invalid_string = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers())  # unvalidated
    pq.write_table(pa.table({"text": invalid_string}), tmp_path / "str.parquet")
    items = ingest(tmp_path, out=tmp_path / "out")
    assert sorted(d.text for d in docs(items)) == ["also good", "good", "good row", "good row"]
    got = reasons(items)
    assert got == {
        "a.jsonl:2": "undecodable_utf8: invalid continuation byte at byte 13 of the line",
        "t/bad.txt": "undecodable_utf8: invalid continuation byte at byte 3",
        "bin.parquet:1": "undecodable_utf8: invalid start byte at byte 4 of text",
        "str.parquet:1": "undecodable_utf8: invalid start byte at byte 4 of text",
    }
    raw = {r.location: r.record for r in rejects(items)}
    assert raw["a.jsonl:2"] == '{"text": "caf\ufffd bad"}\n' and raw["t/bad.txt"] == "caf\ufffd au lait"


def test_cp1252_text_is_rejected_unless_the_source_names_its_encoding(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_bytes('{"text": "caf\u00e9 \u2013 na\u00efve"}\n'.encode("cp1252"))
    assert reasons(ingest(path)) == {"w.jsonl:1": "undecodable_utf8: invalid continuation byte at byte 13 of the line"}
    assert [d.text for d in docs(ingest(path, encoding="cp1252"))] == ["caf\u00e9 \u2013 na\u00efve"]
    (tmp_path / "t.txt").write_bytes("Headline\u2019s\nbody \u20ac5".encode("cp1252"))
    (doc,) = docs(ingest(tmp_path / "t.txt", encoding="cp1252", title_from_first_line=True))
    assert (doc.title, doc.text) == ("Headline\u2019s", "body \u20ac5")
    (tmp_path / "u.jsonl").write_bytes(b'{"text": "undefined in cp1252: \x81"}\n')
    assert reasons(ingest(tmp_path / "u.jsonl", encoding="cp1252"))["u.jsonl:1"].startswith("undecodable_cp1252:")
    with pytest.raises(ValueError, match="not ASCII-compatible"):
        SourceConfig(path=str(path), encoding="utf-16")


def test_a_bom_is_dropped_and_crlf_becomes_lf(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "first"}\r\n{"id": 2, "text": "a\\r\\nb"}\r\n')
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfTitle\r\nline one\r\nline two\r\n")
    items = ingest(tmp_path, out=tmp_path / "out", title_from_first_line=True)
    by_loc = {d.location: d for d in docs(items)}
    assert not rejects(items)
    assert by_loc["b.jsonl:1"].text == "first" and by_loc["b.jsonl:1"].doc_id == doc_id_for("s", "1")
    assert by_loc["b.jsonl:2"].text == "a\nb"
    assert (by_loc["b.txt"].title, by_loc["b.txt"].text) == ("Title", "line one\nline two")


def test_a_line_cut_inside_a_string_is_called_unterminated(tmp_path):
    # a file whose writer died mid-record: the reason says the string never ended, not that the
    # line's own newline is a control character inside it
    (tmp_path / "cut.jsonl").write_bytes(b'{"text": "whole"}\n{"text": "cut of\n{"text": "cut\r\n')
    got = reasons(ingest(tmp_path, out=tmp_path / "out"))
    assert got["cut.jsonl:2"].startswith("invalid_json: Unterminated string")
    assert got["cut.jsonl:3"].startswith("invalid_json: Unterminated string")


def test_nul_and_control_characters(tmp_path):
    # escaped in JSON: removed from the text (repair); raw inside a JSON string: invalid JSON
    (tmp_path / "c.jsonl").write_bytes(b'{"text": "a\\u0000b\\u0007c\\u001fd"}\n{"text": "raw \x00 nul"}\n')
    # a text file with a NUL in its first 8 KiB is binary; later, the NUL is a control character
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "t" / "late.txt").write_bytes(b"x" * 9000 + b"\x00tail\x07")
    items = ingest(tmp_path, out=tmp_path / "out")
    assert sorted(d.text for d in docs(items)) == ["abcd", "x" * 9000 + "tail"]
    got = reasons(items)
    assert got["c.jsonl:2"].startswith("invalid_json:")
    assert got["t/image.txt"] == "binary_file: NUL byte at offset 8"
    assert {r.location: r.record for r in rejects(items)}["t/image.txt"].startswith("\ufffdPNG")


def test_lone_surrogates_become_replacement_characters_and_are_stored(tmp_path):
    line = {"id": "\\ud800x", "title": "t\\udfff", "label": "l\\ud83d", "text": "before \\udc00 after"}
    (tmp_path / "s.jsonl").write_text("{" + ", ".join(f'"{k}": "{v}"' for k, v in line.items()) + "}\n"
                                      '{"text": 5, "note": "\\ud800"}\n')
    items = ingest(tmp_path / "s.jsonl", out=tmp_path / "out")
    (doc,) = docs(items)
    assert (doc.text, doc.title, doc.label, doc.record_id) == (
        "before \ufffd after", "t\ufffd", "l\ufffd", "\ufffdx")
    assert doc.doc_id == doc_id_for("s", "\ufffdx")
    assert [r.reason for r in rejects(items)] == ["bad_type: text is int"]


def test_file_names_that_are_not_utf8_keep_distinct_locations(tmp_path):
    folder = os.fsencode(tmp_path / "names")
    os.mkdir(folder)
    for name in (b"caf\xe9.jsonl", b"caf\xe8.jsonl"):
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(b'{"text": "hello"}\n')
    items = ingest(tmp_path / "names", out=tmp_path / "out")
    assert sorted(d.location for d in docs(items)) == ["caf\\xe8.jsonl:1", "caf\\xe9.jsonl:1"]


# ----------------------------------------------------------------------------- damaged files


def numbered(n: int, first: int = 1) -> bytes:
    return b"".join(json.dumps({"id": i, "text": f"record {i}"}).encode() + b"\n" for i in range(first, first + n))


def test_truncated_gzip_keeps_the_records_before_the_cut_and_rejects_the_damage_once(tmp_path):
    whole = gzip.compress(numbered(2000), mtime=0)
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    items = ingest(path, out=tmp_path / "out")
    kept = [int(d.record_id) for d in docs(items)]
    assert kept == list(range(1, len(kept) + 1)) and 100 < len(kept) < 2000  # every record before the cut
    (damage,) = rejects(items)
    assert damage.location == f"t.jsonl.gz:{len(kept) + 1}" and damage.reason.startswith("damaged_gzip: EOFError")
    assert numbered(1, first=len(kept) + 1).decode().startswith(damage.record)  # the cut line's bytes, as far as read


def test_corrupt_deflate_data_is_one_reject_after_the_intact_records(tmp_path):
    first = gzip.compress(numbered(50), mtime=0)  # an intact gzip member: lines 1-50
    second = bytearray(gzip.compress(numbered(500, first=51), mtime=0))
    second[30:60] = b"\xff" * 30  # inside the second member's deflate data
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(first + bytes(second))
    items = ingest(path, out=tmp_path / "out")
    assert [int(d.record_id) for d in docs(items)][:50] == list(range(1, 51))
    damaged = [r for r in rejects(items) if r.reason.startswith("damaged_gzip")]
    assert len(damaged) == 1 and int(damaged[0].location.rsplit(":", 1)[1]) >= 51
    assert all(r.reason.startswith(("damaged_gzip", "invalid_json", "undecodable_utf8")) for r in rejects(items))


@pytest.mark.parametrize("tail, reason", [(b"garbage after the stream", "damaged_gzip: BadGzipFile"),
                                          (None, "damaged_gzip: BadGzipFile")])
def test_trailing_garbage_and_a_gzip_that_is_not_one(tmp_path, tail, reason):
    path = tmp_path / "g.jsonl.gz"
    path.write_bytes(gzip.compress(numbered(3), mtime=0) + tail if tail else b'{"text": "plain, not gzip"}\n')
    items = ingest(path)
    (damage,) = rejects(items)
    assert damage.reason.startswith(reason)
    assert len(docs(items)) == (3 if tail else 0)
    if not tail:
        assert damage.location == "g.jsonl.gz:1" and damage.record.startswith('{"text": "plain')


def test_truncated_parquet_is_one_reject(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(100)]}), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    items = ingest(path)
    assert [(r.location, r.reason.split(":")[0]) for r in items] == [("t.parquet", "unreadable_parquet")]


def test_a_damaged_row_group_is_one_reject_and_the_others_are_read_split_or_not(tmp_path):
    path = tmp_path / "g.parquet"
    rows = [f"row {i} " + "words " * (i % 7) for i in range(50)]
    pq.write_table(pa.table({"text": rows}), path, row_group_size=10, compression="zstd")
    meta = pq.read_metadata(path)
    column = meta.row_group(2).column(0)
    start = column.data_page_offset + 20  # past the page header, into the compressed values
    data = bytearray(path.read_bytes())
    data[start : start + 40] = b"\xa5" * 40
    path.write_bytes(bytes(data))
    whole = ingest(path, split_bytes=0)
    assert [(r.location, r.reason.split(":")[0]) for r in rejects(whole)] == [("g.parquet:20", "unreadable_parquet")]
    assert "row group 2, rows 20-29" in rejects(whole)[0].reason
    assert [d.location for d in docs(whole)] == [f"g.parquet:{i}" for i in (*range(20), *range(30, 50))]
    assert ingest(path, split_bytes=1) == whole


def test_json_values_that_are_not_objects_and_json_the_parser_cannot_take(tmp_path):
    lines = [b"null", b'"a string"', b"[1, 2]", b"3.5", b"true", b"[" * 100_000 + b"]" * 100_000,
             b'{"text": ' + b"9" * 5000 + b"}", b'{"text": "fine"}']
    (tmp_path / "j.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    got = reasons(ingest(tmp_path / "j.jsonl"))
    assert [got[f"j.jsonl:{n}"] for n in range(1, 6)] == [
        "not_an_object: NoneType", "not_an_object: str", "not_an_object: list", "not_an_object: float",
        "not_an_object: bool"]
    assert got["j.jsonl:6"] == "invalid_json: nested too deeply"
    assert got["j.jsonl:7"].startswith("invalid_json: Exceeds the limit (4300 digits)")
    assert "j.jsonl:8" not in got


def test_text_longer_than_max_chars_is_rejected_with_its_raw_record_capped(tmp_path):
    huge = "word " * 10_000_000  # 50 MB
    (tmp_path / "h.jsonl").write_text(json.dumps({"id": "huge", "text": huge}) + "\n"
                                      + json.dumps({"id": "edge", "text": "x" * 1000}) + "\n"
                                      + json.dumps({"id": "over", "text": "x" * 1001}) + "\n")
    default = ingest(tmp_path / "h.jsonl", out=tmp_path / "out")
    assert [d.record_id for d in docs(default)] == ["edge", "over"]
    (huge_reject,) = rejects(default)
    assert huge_reject.reason == "text_too_long: more than ingest.max_chars (1,000,000) characters"
    assert len(huge_reject.record) == RAW_SNIPPET_CHARS and huge_reject.record.startswith('{"id": "huge"')
    (tmp_path / "small.jsonl").write_text("\n".join(json.dumps({"id": k, "text": "y" * n})
                                                    for k, n in (("edge", 1000), ("over", 1001), ("2M", 2_000_000))))
    assert [d.record_id for d in docs(ingest(tmp_path / "small.jsonl", max_chars=1000))] == ["edge"]
    assert [d.record_id for d in docs(ingest(tmp_path / "small.jsonl", max_chars=None))] == ["edge", "over", "2M"]
    # the ingest task applies the configured cap too
    cfg = IngestConfig(sources=[SourceConfig(path=str(tmp_path / "small.jsonl"), name="s")], max_chars=1000)
    (unit,) = plan_units(cfg)
    stats = ingest_unit_to_shards(unit, tmp_path / "capped", cfg)
    assert stats["docs"] == 1 and [(r["location"], r["reason"]) for r in read_shard(stats["rejects_path"]).to_pylist()] == [
        ("small.jsonl:2", "text_too_long: more than ingest.max_chars (1,000) characters"),
        ("small.jsonl:3", "text_too_long: more than ingest.max_chars (1,000) characters")]


def test_binary_and_empty_files(tmp_path):
    rng_bytes = bytes((i * 7919 + 13) % 256 for i in range(20_000))  # every byte value, many newlines
    (tmp_path / "noise.jsonl").write_bytes(rng_bytes)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "empty.jsonl.gz").write_bytes(gzip.compress(b"", mtime=0))
    (tmp_path / "blank.jsonl").write_bytes(b"\n  \n\r\n")
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "norows.parquet")
    (tmp_path / "zero.parquet").write_bytes(b"")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "empty.txt").write_bytes(b"")
    items = ingest(tmp_path, out=tmp_path / "out")
    got = reasons(items)
    assert {loc: got[loc] for loc in ("empty.jsonl", "empty.jsonl.gz", "norows.parquet")} == {
        "empty.jsonl": "empty_file", "empty.jsonl.gz": "empty_file", "norows.parquet": "empty_file"}
    assert got["zero.parquet"].startswith("unreadable_parquet")
    assert got["t/empty.txt"] == "empty_text"
    assert not [loc for loc in got if loc.startswith("blank.jsonl")]  # blank lines are not records
    noise = [r for r in rejects(items) if r.location.startswith("noise.jsonl:")]
    assert noise and not [d for d in docs(items) if d.location.startswith("noise")]
    assert all(r.reason.startswith(("invalid_json", "undecodable_utf8", "not_an_object")) for r in noise)
    assert all(len(r.record) <= RAW_SNIPPET_CHARS for r in rejects(items))

