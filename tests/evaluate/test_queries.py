"""The user's query sets (tasks/evaluate/queries.py): reading, sampling, and the check before a run."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from refinery.storage import write_shard
from refinery.tasks.evaluate.config import QuerySetConfig
from refinery.tasks.evaluate.queries import (
    QuerySetError,
    check_query_set,
    first_matching_record,
    read_judgements,
    read_query_set,
    sample_query_ids,
)
from refinery.tasks.ingest.config import IngestConfig, SourceConfig


def beir(root: Path, qrels: str, queries: list[dict] | None = None, split: str = "test") -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    queries = queries if queries is not None else [{"_id": f"q{i}", "text": f"query {i}"} for i in range(4)]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / f"{split}.tsv").write_text(qrels)
    return root


def source(path: Path, **options) -> QuerySetConfig:
    return QuerySetConfig(name="set", path=str(path), **options)


def test_beir_folder_reads_the_chosen_split_and_skips_zero_relevance(tmp_path):
    folder = beir(tmp_path, "query-id\tcorpus-id\tscore\nq0\td1\t1\nq0\td2\t2\nq1\td3\t0\nq2\td3\t1\nq2\td3\t1\n")
    beir(tmp_path, "query-id\tcorpus-id\tscore\nq3\td9\t1\n", split="dev")
    judged = read_judgements(source(folder))
    assert judged.relevant == {"q0": ["d1", "d2"], "q2": ["d3"]}  # q1 judged 0 only; duplicates once
    assert judged.queries == {"q0": "query 0", "q2": "query 2"}
    assert judged.file == folder / "qrels" / "test.tsv"
    assert read_judgements(source(folder, split="dev")).relevant == {"q3": ["d9"]}


def test_beir_errors_name_the_file_and_line(tmp_path):
    folder = beir(tmp_path, "query-id\tcorpus-id\tscore\nq0\td1\n")
    with pytest.raises(QuerySetError, match=r"test\.tsv line 2: expected query-id, corpus-id and score"):
        read_judgements(source(folder))
    beir(folder, "query-id\tcorpus-id\tscore\nq0\td1\thigh\n")
    with pytest.raises(QuerySetError, match=r"line 2: score 'high' is not a number"):
        read_judgements(source(folder))
    beir(folder, "query-id\tcorpus-id\tscore\nq7\td1\t1\n")
    with pytest.raises(QuerySetError, match=r"1 query ids of .*test\.tsv are not in .*queries\.jsonl \(e\.g\. q7\)"):
        read_judgements(source(folder))
    with pytest.raises(QuerySetError, match=r"splits found: test"):
        read_judgements(source(folder, split="train"))
    with pytest.raises(QuerySetError, match="does not exist"):
        read_judgements(source(tmp_path / "nowhere"))
    beir(folder, "query-id\tcorpus-id\tscore\nq0\td1\t0\n")
    with pytest.raises(QuerySetError, match="no judgement with relevance > 0"):
        read_judgements(source(folder))
    beir(folder, "query-id\tcorpus-id\tscore\nq0\td1\t1\n")
    (folder / "queries.jsonl").write_text('{"_id": "q0", "text": "x"}\n{broken\n')
    with pytest.raises(QuerySetError, match=r"queries\.jsonl line 2: not JSON"):
        read_judgements(source(folder))


def test_jsonl_rows_group_by_query_and_read_relevance(tmp_path):
    rows = [{"query": "a", "record_id": 1}, {"query": "a", "record_id": "2", "relevance": 3},
            {"query": "b", "record_id": "3", "relevance": 0}, {"query": "c", "record_id": "4", "relevance": None}]
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    judged = read_judgements(source(path))
    assert judged.relevant == {"a": ["1", "2"], "c": ["4"]}
    assert judged.queries == {"a": "a", "c": "c"}


def test_parquet_rows_with_configured_fields(tmp_path):
    path = write_shard(pa.table({"qid": ["x", "x", "y"], "text": ["first", "first", "second"],
                                 "doc": ["r1", "r2", "r3"], "grade": [1.0, 0.0, 2.0]}), tmp_path / "rows.parquet")
    judged = read_judgements(source(path, query_id_field="qid", query_field="text", record_id_field="doc",
                                    relevance_field="grade"))
    assert judged.relevant == {"x": ["r1"], "y": ["r3"]} and judged.queries == {"x": "first", "y": "second"}
    with pytest.raises(QuerySetError, match=r"rows\.parquet row 1: no record id in `record_id`"):
        read_judgements(source(path, query_field="text"))


def test_sample_is_seeded_bounded_and_keeps_small_sets_whole():
    ids = [f"q{i}" for i in range(500)]
    chosen = sample_query_ids(ids, 50, seed=0)
    assert len(chosen) == 50 and chosen == sorted(chosen) and set(chosen) <= set(ids)
    assert sample_query_ids(ids[::-1], 50, seed=0) == chosen  # not the file's order
    assert sample_query_ids(ids, 50, seed=1) != chosen
    assert sample_query_ids(ids[:20], 50, seed=0) == sorted(ids[:20])


def test_read_query_set_counts_what_it_sampled(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"query": f"q {i}", "record_id": f"r{i}"}) + "\n" for i in range(30)))
    table, counts = read_query_set(source(path), max_queries=10, seed=0)
    assert counts == {"in_source": 30, "sampled": 10}
    assert table.num_rows == 10 and table.column("record_ids").to_pylist()[0][0].startswith("r")


def corpus(tmp_path: Path) -> IngestConfig:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(json.dumps({"id": f"a{i}", "text": "some text"}) + "\n"
                                                     for i in range(5)) + '{"id": "empty", "text": ""}\n')
    (tmp_path / "in" / "b.jsonl").write_text(json.dumps({"id": "b0", "text": "other text"}) + "\n")
    return IngestConfig(sources=[SourceConfig(path=str(tmp_path / "in" / "a.jsonl"), name="A"),
                                 SourceConfig(path=str(tmp_path / "in" / "b.jsonl"), name="B")])


def test_first_matching_record_reads_the_inputs_as_ingest_does(tmp_path):
    ingest = corpus(tmp_path)
    assert first_matching_record(ingest, {"zz", "a3"}) == "a3"
    assert first_matching_record(ingest, {"b0"}, source="A") is None
    assert first_matching_record(ingest, {"b0"}, source="B") == "b0"
    assert first_matching_record(ingest, {"empty"}) is None  # rejected at ingest: not a document
    with pytest.raises(QuerySetError, match=r"no ingest source is named 'C' \(sources: A, B\)"):
        first_matching_record(ingest, {"a0"}, source="C")


def test_check_names_the_file_and_a_few_ids_when_nothing_matches(tmp_path):
    ingest = corpus(tmp_path)
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"query": "q", "record_id": f"x{i}"}) + "\n" for i in range(9)))
    with pytest.raises(QuerySetError, match=r"none of the 9 record ids judged relevant in .*q\.jsonl .*x0, x1, x2"):
        check_query_set(source(path), ingest)
    path.write_text(path.read_text() + json.dumps({"query": "q", "record_id": "a4"}) + "\n")
    check_query_set(source(path), ingest)  # one match is enough
