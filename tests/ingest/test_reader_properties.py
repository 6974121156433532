"""Properties of the readers over seeded random inputs: any bytes in gives documents and rejects,
never an exception; every non-blank JSONL line is exactly one of them; a split file reads like the
whole one; what is read can always be written. (hypothesis is not in the lock: a seeded generator
of hostile fragments stands in for it, so a failure names its seed and case.)"""

from __future__ import annotations

import gzip
import random
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.readers import Record, Reject, normalize, plan_units, read_unit
from refinery.tasks.ingest.shard_tasks import ingest_unit_to_shards

CASES = 150
FRAGMENTS = [
    b'{"id": 1, "text": "a fine record"}', b'{"text": "caf\xc3\xa9 \xe4\xb8\xad"}', b'{"text": "\\ud800 lone"}',
    b'{"id": 18446744073709551616, "text": "big id"}', b'{"text": NaN}', b'{"text": "t", "title": {"x": [1]}}',
    b"\xef\xbb\xbf", b"\r\n", b"\n", b"\n\n", b"   ", b"\x00", b"\x07", b"\xff", b"\xc3", b"\xe9", b"\x80\x80",
    b'{"text": ', b'"', b"}", b"[", b"]" * 3, b"[" * 3000, b"null", b"123", b'"str"', b'{"text": 5}',
    b'{"text": ""}', b'{"text": "x\\u0000y"}', b'{"label": "\\udfff", "text": "z"}', b"\t", b"\\",
]


def hostile_bytes(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(0, 25)):
        if rng.random() < 0.15:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
        else:
            parts.append(rng.choice(FRAGMENTS))
    return b"".join(parts)


def read(path, **ingest) -> tuple[list, IngestConfig]:
    cfg = IngestConfig(sources=[SourceConfig(path=str(path), name="p")], **ingest)
    return [item for unit in plan_units(cfg) for item in read_unit(unit)], cfg


def write_all(cfg: IngestConfig, out) -> dict[str, int]:
    counts = {"docs": 0, "rejects": 0}
    for unit in plan_units(cfg):
        stats = ingest_unit_to_shards(unit, out, cfg)
        counts["docs"] += stats["docs"]
        counts["rejects"] += stats["rejects"]
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


@pytest.mark.parametrize("seed", range(3))
def test_any_jsonl_bytes_give_one_item_per_record_line_and_split_reads_like_whole(tmp_path, seed):
    rng = random.Random(seed)
    for case in range(CASES):
        data = hostile_bytes(rng)
        path = tmp_path / f"{seed}-{case}.jsonl"
        path.write_bytes(data)
        items, cfg = read(path, split_bytes=0)
        assert all(isinstance(i, (Record, Reject)) for i in items)
        expected = non_blank_lines(data) if data else 1  # an empty file is one empty_file reject
        assert len(items) == expected, (seed, case, data)
        assert read(path, split_bytes=rng.randint(1, 64))[0] == items, (seed, case, data)
        counts = write_all(cfg, tmp_path / f"out-{seed}-{case}")
        assert counts["docs"] + counts["rejects"] == expected


@pytest.mark.parametrize("seed", range(2))
def test_any_damage_to_a_gzip_file_keeps_what_came_before_and_rejects_the_rest_once(tmp_path, seed):
    rng = random.Random(seed)
    for case in range(CASES):
        data = b"".join(rng.choice(FRAGMENTS[:6]) + b"\n" for _ in range(rng.randint(1, 200)))
        packed = bytearray(gzip.compress(data, mtime=0))
        if rng.random() < 0.5:
            packed = packed[: rng.randrange(len(packed))]  # truncated
        else:
            at = rng.randrange(len(packed))
            packed[at : at + 8] = bytes(rng.randrange(256) for _ in range(8))  # corrupted
        path = tmp_path / f"{seed}-{case}.jsonl.gz"
        path.write_bytes(bytes(packed))
        items, cfg = read(path)
        damaged = [i for i, item in enumerate(items) if isinstance(item, Reject) and item.reason.startswith("damaged_gzip")]
        assert len(damaged) <= 1 and (not damaged or damaged[0] == len(items) - 1), (seed, case)
        write_all(cfg, tmp_path / f"out-{seed}-{case}")


@pytest.mark.parametrize("seed", range(2))
def test_any_bytes_as_a_text_file_or_a_parquet_file(tmp_path, seed):
    rng = random.Random(seed)
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(64)]}), good, row_group_size=8)
    parquet = good.read_bytes()
    for case in range(CASES // 3):
        text = tmp_path / f"{seed}-{case}.txt"
        text.write_bytes(hostile_bytes(rng))
        items, cfg = read(text)
        assert len(items) == 1  # a text file is one record: a document or a reject
        write_all(cfg, tmp_path / f"out-t-{seed}-{case}")
        damaged = bytearray(parquet)
        if rng.random() < 0.5:
            damaged = damaged[: rng.randrange(len(damaged))]
        else:
            at = rng.randrange(len(damaged))
            damaged[at : at + 16] = bytes(rng.randrange(256) for _ in range(16))
        path = tmp_path / f"{seed}-{case}.parquet"
        path.write_bytes(bytes(damaged))
        items, cfg = read(path, split_bytes=0)
        assert read(path, split_bytes=rng.choice([1, 200]))[0] == items
        write_all(cfg, tmp_path / f"out-p-{seed}-{case}")


def test_normalized_text_is_storable_tidy_and_stable():
    alphabet = ["a", " ", "\t", "\n", "\r", "\x00", "\x0b", "\x7f", "\ufeff", "\u00e9", "e\u0301", "\ufb01",
                "\ud800", "\udfff", "\U0001f600", "\u2028", "\x85", "\u3000"]
    rng = random.Random(0)
    for _ in range(5000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for form in ("NFC", "NFKC"):
            text = normalize(raw, form)
            text.encode("utf-8")  # no lone surrogate survives
            assert "\r" not in text and "\n\n\n" not in text and " \n" not in text and "\t\n" not in text
            assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t\x85" for c in text)
            assert text == text.strip() and normalize(text, form) == text
