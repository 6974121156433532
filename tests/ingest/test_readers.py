"""Ingest: every input format, stable ids, normalization, and bad records as rejects."""

from __future__ import annotations

import gzip
import json
import random
import re
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.readers import Record, Reject, doc_id_for, normalize, plan_units, read_unit


def read_all(cfg: IngestConfig) -> list[Record | Reject]:
    return [item for unit in plan_units(cfg) for item in read_unit(unit, limit=cfg.limit)]


def test_bbc_builtin_splits_headline_and_label():
    items = read_all(IngestConfig(shard_size=7, limit=20))
    docs = [i for i in items if isinstance(i, Record)]
    assert len(items) == 20
    first = docs[0]
    assert first.source == "bbc" and first.location == "business/001.txt" and first.label == "business"
    assert first.title == "Ad sales boost Time Warner profit"
    assert not first.text.startswith(first.title)  # the headline never stays in the body
    assert len(plan_units(IngestConfig(shard_size=7, limit=20))) == 3


def test_full_bbc_corpus_has_one_undecodable_article():
    items = read_all(IngestConfig())
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(items) == 2225
    assert [(r.location, r.reason.split(":")[0]) for r in rejects] == [("sports/199.txt", "undecodable_utf8")]
    assert "Chelsea" in rejects[0].record  # the raw record is kept, nothing is lost


def test_doc_ids_are_stable_and_distinct():
    a = [i.doc_id for i in read_all(IngestConfig(limit=50)) if isinstance(i, Record)]
    b = [i.doc_id for i in read_all(IngestConfig(limit=50, shard_size=3)) if isinstance(i, Record)]
    assert a == b and len(set(a)) == 50
    assert doc_id_for("s", "1") != doc_id_for("s", "2")


def test_normalize_unicode_controls_and_blank_lines():
    assert normalize("Cafe\u0301\r\nx\x07y  \n\n\n\nend ") == "Caf\u00e9\nxy\n\nend"
    assert normalize("\ufb01", "NFKC") == "fi" and normalize("\ufb01", "NFC") == "\ufb01"


def test_jsonl_plain_and_gzip_with_bad_records(tmp_path):
    lines = [
        json.dumps({"id": 1, "title": "T", "text": "hello   world"}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"id": 3}),
        json.dumps({"id": 4, "text": 42}),
        json.dumps({"id": 5, "text": "   "}),
        "",
        json.dumps({"id": 6, "text": "fine", "label": "x"}),
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    for name in ("a.jsonl", "b.jsonl.gz"):
        items = read_all(IngestConfig(sources=[SourceConfig(path=str(tmp_path / name), name="web")]))
        docs = [i for i in items if isinstance(i, Record)]
        rejects = {i.location.rsplit(":", 1)[1]: i.reason for i in items if isinstance(i, Reject)}
        assert [d.text for d in docs] == ["hello   world", "fine"]
        assert docs[0].title == "T" and docs[1].label == "x"
        assert docs[0].doc_id == doc_id_for("web", "1")
        assert rejects["2"].startswith("invalid_json")
        assert rejects["3"].startswith("not_an_object")
        assert rejects["4"] == "missing_field: text"
        assert rejects["5"] == "bad_type: text is int"
        assert rejects["6"] == "empty_text"
        assert len(docs) + len(rejects) == 7  # blank lines are not records


def test_parquet_folder_and_text_folder(tmp_path):
    pq.write_table(pa.table({"text": ["one doc", "two doc"], "title": ["a", "b"]}), tmp_path / "p.parquet")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x.txt").write_text("Headline\n\nBody text.")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    items = read_all(IngestConfig(sources=[SourceConfig(path=str(tmp_path), title_from_first_line=True)]))
    docs = sorted((i.location, i.title, i.text) for i in items if isinstance(i, Record))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert docs == [("p.parquet:0", "a", "one doc"), ("p.parquet:1", "b", "two doc"), ("t/x.txt", "Headline", "Body text.")]
    assert [r.location for r in rejects] == ["bad.parquet"] and rejects[0].reason.startswith("unreadable_parquet")


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plan_units(IngestConfig(sources=[SourceConfig(path=str(tmp_path / "nope.jsonl"))]))


def test_unknown_extensions_in_a_folder_are_one_reject_each_not_an_abort(tmp_path):
    (tmp_path / "notes.jsonl").write_text(json.dumps({"id": "a", "text": "The river rose in the night."}) + "\n")
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4 binary \x00\xff stuff")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "LICENSE").write_text("MIT License, the text of it")
    items = read_all(IngestConfig(sources=[SourceConfig(path=str(tmp_path))]))
    docs = [i for i in items if isinstance(i, Record)]
    rejects = {r.location: r for r in items if isinstance(r, Reject)}
    assert [d.text for d in docs] == ["The river rose in the night."]
    assert set(rejects) == {"scan.pdf", "sub/LICENSE"}
    assert rejects["scan.pdf"].reason.startswith("unsupported_format: extension .pdf")
    assert rejects["sub/LICENSE"].reason.startswith("unsupported_format: extension (none)")
    assert rejects["scan.pdf"].record.startswith("%PDF-1.4")  # the raw bytes are kept


_RULE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize_by_the_rules(text: str, form: str) -> str:
    """normalize() as its docstring states it, one regex per rule (slow, plainly right)."""
    text = unicodedata.normalize(form, text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub("[\ud800-\udfff]", "\ufffd", text)
    text = re.sub(r"[ \t]+\n", "\n", _RULE_CONTROL.sub("", text))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def test_normalize_follows_its_rules_on_any_mix_of_tricky_characters():
    alphabet = [" ", "\t", "\n", "\r", "\r\n", "\x00", "\x07", "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\u2028",
                "\u3000", "\xa0", "a", "\u00e9", "e\u0301", "\ufb01", "\ud800", "\U0001f600", "\n\n\n"]
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        for form in ("NFC", "NFKC"):
            assert normalize(text, form) == normalize_by_the_rules(text, form), repr(text)


def test_jsonl_values_read_as_the_json_module_reads_them(tmp_path):
    # orjson parses most lines; where it would read a value differently (integers beyond 64 bits,
    # NaN, lone surrogates) or refuse the line, the json module's reading is the one kept
    big = 123456789012345678901234567890
    lines = [
        f'{{"id": {big}, "text": "huge id", "title": {{"n": {big}}}}}',
        '{"id": "nan", "text": "a NaN elsewhere", "score": NaN}',
        '{"id": "inf", "text": 1e400}',
        f'{{"id": "int", "text": {big}}}',
        '{"id": "dup", "text": "first", "text": "second"}',
        '{"id": "esc", "text": "tab\\tand \\u00e9 and \\ud83d\\ude00"}',
        f"{big}",
    ]
    (tmp_path / "v.jsonl").write_text("\n".join(lines) + "\n")
    items = read_all(IngestConfig(sources=[SourceConfig(path=str(tmp_path / "v.jsonl"), name="v")]))
    by_line = {i.location.rsplit(":", 1)[1]: i for i in items}
    assert by_line["1"].doc_id == doc_id_for("v", str(big)) and by_line["1"].title == f"{{'n': {big}}}"
    assert by_line["2"].text == "a NaN elsewhere"
    assert by_line["3"].reason == "bad_type: text is float"
    assert by_line["4"].reason == "bad_type: text is int"
    assert by_line["5"].text == "second"
    assert by_line["6"].text == "tab\tand \u00e9 and \U0001f600"
    assert by_line["7"].reason == "not_an_object: int"
