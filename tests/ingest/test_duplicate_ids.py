"""Duplicate record ids through the ingest flow on the shared Dask cluster: the first occurrence in
reading order keeps the id, every later one is a `duplicate_id` reject, so doc ids stay unique and
every record is accounted for; and the books of every input file balance."""

from __future__ import annotations

import gzip
import json

import pytest
from prefect_dask import DaskTaskRunner

from refinery.flows.ingest import ingest_flow
from refinery.flows.nightly import prepare_run
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
