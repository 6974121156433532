"""Duplicate record ids through the ingest flow on the shared Dask cluster: the first occurrence in
reading order keeps the id, every later one is a `duplicate_id` reject, so doc ids stay unique and
every record is accounted for; and the books of every input file balance."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
import yaml
from prefect_dask import DaskTaskRunner

from refinery.flows.ingest import ingest_flow
from refinery.flows.nightly import nightly, prepare_run
from refinery.storage import Catalog
from refinery.tasks.books import file_books_problems
from refinery.tasks.config import parse_config
from refinery.tasks.ingest.duplicates import reading_order, reasons_by_shard
from refinery.tasks.ingest.readers import doc_id_for, plan_units
from refinery.tasks.ingest.shard_tasks import ingest_unit_to_shards, reject_duplicates_in_shard


def jsonl(path, *records) -> int:
    """Write records ({"id", "text"} from (id, text) pairs, or raw lines) as JSONL; their number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps({"id": r[0], "text": r[1]}) for r in records]
    path.write_text("".join(f"{line}\n" for line in lines))
    return len(lines)


def ingest(tmp_path, dask_address, sources, **ingest_options):
    cfg = parse_config({"home": str(tmp_path / "home"), "ingest": {"sources": sources, **ingest_options}})
    run = prepare_run(cfg)
    stats = ingest_flow.with_options(task_runner=DaskTaskRunner(address=dask_address))(run)

    def q(sql: str) -> list[dict]:
        return run.catalog.query(sql.replace("$run", "?"), [run.run_id] * sql.count("$run")).to_pylist()

    return run, stats, q


def documents(q) -> list[tuple]:
    return sorted((d["source"], d["record_id"], d["location"], d["text"])
                  for d in q("SELECT * FROM documents WHERE run_id = $run"))


def rejects(q) -> dict[str, str]:
    return {r["location"]: r["reason"] for r in q("SELECT location, reason FROM rejects WHERE run_id = $run")}


def test_a_repeated_id_in_one_file_keeps_the_first_and_rejects_the_others(tmp_path, prefect_api, dask_address):
    jsonl(tmp_path / "a.jsonl", ("x", "first x"), ("y", "only y"), ("x", "second x"), ("z", "only z"),
          ("x", "third x"))
    run, stats, q = ingest(tmp_path, dask_address, [{"path": str(tmp_path / "a.jsonl"), "name": "s"}])

    assert documents(q) == [("s", "x", "a.jsonl:1", "first x"), ("s", "y", "a.jsonl:2", "only y"),
                            ("s", "z", "a.jsonl:4", "only z")]
    assert rejects(q) == {"a.jsonl:3": "duplicate_id: x (first at a.jsonl:1)",
                          "a.jsonl:5": "duplicate_id: x (first at a.jsonl:1)"}
    (dup,) = q("SELECT source, record FROM rejects WHERE run_id = $run AND location = 'a.jsonl:5'")
    assert dup["source"] == "s" and json.loads(dup["record"]) == {
        "record_id": "x", "title": None, "text": "third x", "label": None}
    assert stats["docs"] == 3 and stats["rejects"] == 2 and stats["duplicate_ids"] == 2
    assert q("SELECT count(DISTINCT doc_id) AS n FROM documents WHERE run_id = $run") == [{"n": 3}]


def test_ids_repeated_across_files_parts_and_formats_keep_the_first_in_path_order(tmp_path, prefect_api, dask_address):
    folder = tmp_path / "folder"
    jsonl(folder / "b.jsonl", ("2", "b two"), ("3", "b three"))
    jsonl(folder / "a.jsonl", ("1", "a one"), ("2", "a two"), ("b.txt", "a jsonl record whose id is a text file's"))
    (folder / "b.txt").write_text("a text file: its record id is its path")
    # a file read in byte ranges, each its own unit, repeating an id of its own and one of a.jsonl
    big = [(f"c{i}", f"c record {i} " + "filler " * 20) for i in range(60)] + [("c3", "c3 again"), ("1", "1 again")]
    jsonl(folder / "c.jsonl", *big)
    run, stats, q = ingest(tmp_path, dask_address, [{"path": str(folder), "name": "f"}], split_bytes=1024)

    assert stats["units"] > 4
    assert rejects(q) == {
        "b.jsonl:1": "duplicate_id: 2 (first at a.jsonl:2)",
        "b.txt": "duplicate_id: b.txt (first at a.jsonl:3)",  # a.jsonl comes before b.txt, though read later
        "c.jsonl:61": "duplicate_id: c3 (first at c.jsonl:4)",
        "c.jsonl:62": "duplicate_id: 1 (first at a.jsonl:1)",
    }
    docs = documents(q)
    assert len(docs) == 3 + 1 + 60
    assert ("f", "2", "a.jsonl:2", "a two") in docs and ("f", "3", "b.jsonl:2", "b three") in docs
    ids = q("SELECT doc_id, record_id FROM documents WHERE run_id = $run")
    assert len({r["doc_id"] for r in ids}) == len(ids) and all(r["doc_id"] == doc_id_for("f", r["record_id"]) for r in ids)
    # every record is one document or one reject
    assert stats["docs"] + stats["rejects"] == 5 + 1 + len(big)


def test_the_same_ids_in_two_sources(tmp_path, prefect_api, dask_address):
    jsonl(tmp_path / "one" / "x.jsonl", ("1", "one: 1"), ("2", "one: 2"))
    jsonl(tmp_path / "two" / "x.jsonl", ("1", "two: 1"), ("3", "two: 3"))
    # differently named sources: different doc ids, both kept
    run, stats, q = ingest(tmp_path, dask_address, [{"path": str(tmp_path / "one"), "name": "one"},
                                                    {"path": str(tmp_path / "two"), "name": "two"}])
    assert rejects(q) == {}
    assert [(d[0], d[1]) for d in documents(q)] == [("one", "1"), ("one", "2"), ("two", "1"), ("two", "3")]
    assert q("SELECT count(DISTINCT doc_id) AS n FROM documents WHERE run_id = $run") == [{"n": 4}]
    # sources given one name share its ids: the first source as configured keeps them
    run, stats, q = ingest(tmp_path / "same", dask_address, [{"path": str(tmp_path / "two"), "name": "n"},
                                                             {"path": str(tmp_path / "one"), "name": "n"}])
    assert rejects(q) == {"x.jsonl:1": "duplicate_id: 1 (first at x.jsonl:1)"}
    assert sorted(d[3] for d in documents(q)) == ["one: 2", "two: 1", "two: 3"]


@pytest.mark.parametrize("done", [0, 1])
def test_a_killed_duplicate_pass_resumes_to_the_same_result(tmp_path, prefect_api, dask_address, done):
    folder = tmp_path / "folder"
    jsonl(folder / "a.jsonl", ("1", "a1"), ("2", "a2"))
    jsonl(folder / "b.jsonl", ("1", "b1"), ("2", "b2"))  # all duplicates: its shard is emptied
    jsonl(folder / "c.jsonl", ("3", "c3"), ("1", "c1"))
    sources = [{"path": str(folder), "name": "f"}]
    _, _, whole = ingest(tmp_path / "whole", dask_address, sources)

    # a run killed in the middle of the pass: every unit written, one of the two shards holding
    # duplicates handled (b.jsonl's is emptied, so deleted; c.jsonl's rewritten), no ingest marker
    cfg = parse_config({"home": str(tmp_path / "home"), "ingest": {"sources": sources}})
    run = prepare_run(cfg)
    out = run.stage_dir("ingest")
    out.mkdir(parents=True)
    units = plan_units(cfg.ingest)
    written = {u.index: ingest_unit_to_shards(u, out, cfg.ingest)["documents"] for u in units}
    found = reasons_by_shard(run.catalog.later_occurrences(reading_order(units, written)))
    assert len(found) == 2
    shard = sorted(found)[done]
    reject_duplicates_in_shard(shard, found[shard])
    stats = ingest_flow.with_options(task_runner=DaskTaskRunner(address=dask_address))(run)

    def q(sql):
        return run.catalog.query(sql.replace("$run", "?"), [run.run_id]).to_pylist()

    assert documents(q) == documents(whole) and rejects(q) == rejects(whole)
    assert rejects(q) == {"b.jsonl:1": "duplicate_id: 1 (first at a.jsonl:1)",
                          "b.jsonl:2": "duplicate_id: 2 (first at a.jsonl:2)",
                          "c.jsonl:2": "duplicate_id: 1 (first at a.jsonl:1)"}
    assert stats["docs"] == 3 and stats["rejects"] == 3 and len(stats["shards"]) == 2
    assert file_books_problems(run.catalog, run.run_id, stats["files"]) == []


def test_every_input_file_has_books_that_balance(tmp_path, prefect_api, dask_address):
    folder = tmp_path / "folder"
    good = jsonl(folder / "good.jsonl", *((f"g{i}", f"good record {i}") for i in range(5)), "", "{broken")
    packed = gzip.compress("".join(json.dumps({"id": f"z{i}", "text": f"zipped {i} " * 50}) + "\n"
                                   for i in range(40)).encode(), mtime=0)
    (folder / "tail.jsonl.gz").write_bytes(packed[: len(packed) // 2])  # a damaged tail
    jsonl(folder / "repeats.jsonl", *((f"g{i}", f"again {i}") for i in range(3)))  # after good.jsonl
    (folder / "blank.jsonl").write_text("\n\n")
    (folder / "notes.md5").write_text("unsupported")
    run, stats, q = ingest(tmp_path, dask_address, [{"path": str(folder), "name": "f"}])

    books = {r["path"]: r for r in q("SELECT * FROM file_books WHERE run_id = $run")}
    assert set(books) == {"good.jsonl", "tail.jsonl.gz", "repeats.jsonl", "blank.jsonl", "notes.md5"}
    assert stats["files"] == 5
    row = lambda path: (books[path]["records_read"], books[path]["documents"], books[path]["rejected"])  # noqa: E731
    assert row("good.jsonl") == (good - 1, 5, 1)  # the blank line is not a record
    kept_zipped = books["tail.jsonl.gz"]["documents"]
    assert 0 < kept_zipped < 40 and row("tail.jsonl.gz") == (kept_zipped + 1, kept_zipped, 1)
    assert row("repeats.jsonl") == (3, 0, 3) and row("blank.jsonl") == (0, 0, 0) and row("notes.md5") == (1, 0, 1)
    assert all(b["source"] == "f" and b["bytes"] == (folder / p).stat().st_size for p, b in books.items())
    assert sum(b["documents"] for b in books.values()) == stats["docs"]
    assert sum(b["rejected"] for b in books.values()) == stats["rejects"]
    assert file_books_problems(run.catalog, run.run_id, stats["files"]) == []

    # a reject that goes missing (or a document) is an imbalance that names its file
    run.catalog._execute_write("DELETE FROM rejects WHERE run_id = ? AND location LIKE 'tail.jsonl.gz:%'", [run.run_id])
    assert file_books_problems(run.catalog, run.run_id, stats["files"]) == [
        f"file tail.jsonl.gz of source f: its books say {kept_zipped} documents and 1 rejected, "
        f"the catalog holds {kept_zipped} and 0"]
    run.catalog._execute_write("UPDATE file_books SET rejected = 0 WHERE run_id = ? AND path = 'tail.jsonl.gz'",
                               [run.run_id])
    assert file_books_problems(run.catalog, run.run_id, stats["files"]) == [
        f"file tail.jsonl.gz of source f: {kept_zipped + 1} records read != {kept_zipped} documents + 0 rejected"]
    run.catalog._execute_write("DELETE FROM file_books WHERE run_id = ? AND path = 'good.jsonl'", [run.run_id])
    problems = file_books_problems(run.catalog, run.run_id, stats["files"])
    assert "file good.jsonl of source f has no books: 5 documents, 1 rejects" in problems
    assert "file_books has 4 files, ingest read 5" in problems


def test_a_file_whose_name_ends_like_a_line_number_keeps_its_books(tmp_path, prefect_api, dask_address):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes:05").write_text("a text file")
    (folder / "notes").write_text("another")
    run, stats, q = ingest(tmp_path, dask_address, [{"path": str(folder), "name": "t", "format": "text"}])
    assert q("SELECT path, records_read, documents, rejected FROM file_books WHERE run_id = $run ORDER BY path") == [
        {"path": "notes", "records_read": 1, "documents": 1, "rejected": 0},
        {"path": "notes:05", "records_read": 1, "documents": 1, "rejected": 0}]
    assert file_books_problems(run.catalog, run.run_id, stats["files"]) == []


# -- id scope: shards that each number their ids from 0 -------------------------------------------

def shards(folder, *, texts=lambda f, i: f"shard {f} record {i}: a text of its own about topic {i * 7 + len(f)}", n=6):
    """a.jsonl and b.jsonl, each numbering its ids from 0 (as `split` or a per-shard export makes them)."""
    for f in ("a", "b"):
        jsonl(folder / f"{f}.jsonl", *((str(i), texts(f, i)) for i in range(n)))
    return folder


def test_shards_numbered_from_zero_under_source_scope_are_named_at_the_end_of_the_run(tmp_path, prefect_api,
                                                                                     dask_address):
    folder = shards(tmp_path / "shards")
    jsonl(tmp_path / "notes.jsonl", *((f"n{i}", f"a note of its own, number {i}") for i in range(3)))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), "stages": ["ingest", "dedup", "quality"],
                                      "ingest": {"sources": [{"path": str(tmp_path / "notes.jsonl"), "name": "notes"},
                                                             {"path": str(folder), "name": "shards"}]}}))
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    try:
        stats = nightly(config_path=str(config), dask_address=dask_address)
    finally:
        logger.removeHandler(handler)

    # the whole second shard is lost to duplicate_id under the default scope ...
    q = lambda sql: Catalog(tmp_path / "home" / "catalog.duckdb").query(sql, [stats["run_id"]]).to_pylist()  # noqa: E731
    assert q("SELECT count(*) AS n FROM documents WHERE run_id = ? AND source = 'shards'") == [{"n": 6}]
    assert q("SELECT count(*) AS n FROM rejects WHERE run_id = ? AND starts_with(reason, 'duplicate_id:')") == [{"n": 6}]
    # ... with today's doc ids (the source scope's are pinned: they name documents across runs)
    assert q("SELECT doc_id FROM documents WHERE run_id = ? AND record_id IN ('0', '1') ORDER BY record_id") == [
        {"doc_id": "5c6d9f41d4a4525c"}, {"doc_id": "0cb550a0aa9160d8"}]
    # ... and the run says so, naming the source's setting: in the ingest stage's stats,
    assert stats["ingest"]["id_scope_warnings"] == [{
        "source": "shards", "rejects": 6, "different_text": 6, "other_file": 6, "share": 1.0, "limit": 0.5,
        "settings": ["ingest.sources[1].id_scope"], "example": "b.jsonl:1", "example_first": "a.jsonl:1"}]
    # in the log when ingest finds it and again at the end of the run,
    lines = [m for m in seen if "set ingest.sources[1].id_scope: file" in m]
    assert len(lines) == 2 and all("6 of the 6 duplicate_id rejects of source shards" in m for m in lines)
    assert "e.g. b.jsonl:1, its id first at a.jsonl:1" in lines[0]
    # and in the report's Warnings section, before the accounting
    report = (Path(stats["run_dir"]) / "report.md").read_text()
    assert report.index("## Warnings") < report.index("## Accounting")
    assert "| shards | 6 | 6 (100%) | `b.jsonl:1` (id first at `a.jsonl:1`) | `ingest.sources[1].id_scope: file` |" in report


def test_under_file_scope_each_file_numbers_its_own_ids(tmp_path, prefect_api, dask_address):
    folder = shards(tmp_path / "shards")
    jsonl(folder / "a.jsonl", *((str(i), f"shard a record {i}") for i in range(6)), ("3", "a second record 3 in a"))
    run, stats, q = ingest(tmp_path, dask_address, [{"path": str(folder), "name": "shards", "id_scope": "file"}])

    # every record of both files is a document, its record_id the id as the file wrote it
    docs = documents(q)
    assert [(d[1], d[2]) for d in docs] == sorted((str(i), f"{f}.jsonl:{i + 1}") for f in "ab" for i in range(6))
    assert q("SELECT count(DISTINCT doc_id) AS n FROM documents WHERE run_id = $run") == [{"n": 12}]
    # the same id twice in one file is still a duplicate
    assert rejects(q) == {"a.jsonl:7": "duplicate_id: 3 (first at a.jsonl:4)"}
    assert stats["docs"] == 12 and stats["duplicate_ids"] == 1 and stats["id_scope_warnings"] == []
    # a file's records keep their doc ids however many other files number ids the same way
    run2, _, q2 = ingest(tmp_path / "alone", dask_address,
                         [{"path": str(folder / "a.jsonl"), "name": "shards", "id_scope": "file"}])
    ids = "SELECT record_id, doc_id FROM documents WHERE run_id = $run AND location LIKE 'a.jsonl:%' ORDER BY ALL"
    assert q2(ids) == q(ids)


def test_true_duplicates_and_repeats_within_a_file_are_not_named(tmp_path, prefect_api, dask_address):
    folder = shards(tmp_path / "shards", texts=lambda f, i: f"the same record {i}, exported twice")  # same texts
    # ids repeated within one file, with other texts: id_scope: file would not keep them
    jsonl(folder / "c.jsonl", *((f"c{i // 2}", f"c record {i}") for i in range(12)))
    # a duplicate whose raw record was cut (over 100,000 characters) is not compared
    jsonl(folder / "d.jsonl", ("long", "d " * 60_000))
    jsonl(folder / "e.jsonl", ("long", "e " * 60_000))
    run, stats, q = ingest(tmp_path, dask_address, [{"path": str(folder), "name": "shards"}])

    assert stats["duplicate_ids"] == 6 + 6 + 1 and stats["id_scope_warnings"] == []
    assert run.catalog.duplicate_id_texts(stats["reject_shards"], stats["shards"]) == [{
        "source": "shards", "rejects": 13, "compared": 12, "different_text": 6, "other_file": 0,
        "example": None, "example_first": None}]
