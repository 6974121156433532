"""A night's model half reads the dataset version the night published, not only the night's new
documents: its pairs come from documents earlier nights curated, its evaluation pool and query
sets are the version's, and documents a later night retired are in none of them.

Two real nightly flows (tiny training) into one data home over a mirrored folder of titleless
JSONL with titles: night 1 reads `business.jsonl` and `sport.jsonl`; night 2 finds `tech.jsonl`
added (with a copy of a business article, under another title) and `sport.jsonl` removed, so the
version it publishes retires sport's documents.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog, StageMarker, read_shards
from tests.flows.test_datasets import bodies

PER_FILE = 14
DATASET = "mixed"
COPY_TITLE = "a copy, on night 2, of an article night 1 curated"


def write_titled(path: Path, prefix: str, texts: list[str], extra: list[dict] = ()) -> None:
    rows = [{"id": f"{prefix}{i}", "title": f"headline {prefix}{i}", "text": t} for i, t in enumerate(texts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *extra]))


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("model-half")
    folder = root / "folder"
    folder.mkdir()
    write_titled(folder / "business.jsonl", "b", bodies("business", PER_FILE))
    write_titled(folder / "sport.jsonl", "s", bodies("sports", PER_FILE))
    queries = root / "queries.jsonl"  # one judged document per file, and a query of a retired one
    queries.write_text("".join(json.dumps({"query": q, "record_id": r}) + "\n" for q, r in [
        ("company profits and markets", "b1"), ("a technology story", "t1"), ("a sports story", "s1")]))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / "home"), "dataset": DATASET,
        "ingest": {"shard_size": 8, "sources": [{"path": str(folder), "name": "files", "mode": "mirror",
                                                         "title_field": "title"}]},
        "quality": {"profile": "prose"},
        # every passage of the version is a candidate, so the pairs show which documents were read
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 200},
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64},
        "evaluate": {"queries": [{"name": "mine", "path": str(queries), "source": "files"}], "task": "headline",
                     "pool_docs": 40, "max_seq_length": 128}}))
    first = nightly(config_path=str(config), dask_address=dask_address)
    (folder / "sport.jsonl").unlink()
    copy = {"id": "copy-of-b2", "title": COPY_TITLE, "text": bodies("business", PER_FILE)[2]}
    write_titled(folder / "tech.jsonl", "t", bodies("tech", PER_FILE), [copy])
    second = nightly(config_path=str(config), dask_address=dask_address)
    return {"first": first, "second": second, "catalog": Catalog(root / "home" / "catalog.duckdb")}


def _records(catalog: Catalog, run_id: str, sql: str) -> set[str]:
    """Record ids of the doc ids ``sql`` (over $1 = run id) names, looked up in the dataset's documents."""
    rows = catalog.query(f"SELECT DISTINCT d.record_id FROM ({sql}) x JOIN dataset_documents d USING (doc_id)",
                         [run_id]).to_pylist()
    return {r["record_id"] for r in rows}


@pytest.mark.slow  # trains a model twice
def test_the_second_nights_pairs_come_from_the_whole_version_less_its_retired_documents(two_nights):
    catalog, run_id = two_nights["catalog"], two_nights["second"]["run_id"]
    version = catalog.query("SELECT doc_id, record_id FROM curated_at(?, ?)", [DATASET, run_id]).to_pylist()
    current = {r["record_id"] for r in version}
    assert current and not any(r.startswith("s") for r in current)  # sport's documents were retired
    paired = _records(catalog, run_id, "SELECT doc_id FROM pairs WHERE run_id = $1 AND kept")
    assert paired <= current
    # documents night 1 curated and night 2's own both made pairs on night 2
    assert any(r.startswith("b") for r in paired) and any(r.startswith("t") for r in paired)
    # what the model half read is the version, counted as such
    publish = StageMarker(Path(two_nights["second"]["run_dir"]) / "publish").read()
    shards = read_shards(publish["corpus"]["corpus_shards"], ["doc_id"]).column("doc_id").to_pylist()
    assert sorted(shards) == sorted(r["doc_id"] for r in version) and publish["corpus"]["kept"] == len(version)


@pytest.mark.slow  # trains a model twice
def test_the_second_nights_evaluation_is_on_the_version(two_nights):
    catalog, second = two_nights["catalog"], two_nights["second"]
    run_dir = Path(second["run_dir"])
    evaluation = StageMarker(run_dir / "evaluate").read()
    current = {r["doc_id"] for r in catalog.query("SELECT doc_id FROM curated_at(?, ?)",
                                                  [DATASET, second["run_id"]]).to_pylist()}
    assert evaluation["corpus_docs"] == len(current)
    report = (run_dir / "report.md").read_text()
    assert f"of the {len(current)} curated documents of dataset `{DATASET}` as this night published it" in report
    pool = set(read_shards(evaluation["pool_parts"], ["doc_id"]).column("doc_id").to_pylist())
    assert pool <= current
    counts = {r["metric"]: r["value"] for r in catalog.query(
        "SELECT metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate' AND model = 'queries' "
        "AND task = 'mine'", [second["run_id"]]).to_pylist()}
    # b1 (curated on night 1) and t1 (night 2) are judged and scored; s1 was ingested by night 1
    # and retired by night 2: its query has no kept document
    assert counts["scored"] == 2 and counts["all_relevant_dropped"] == 1 and counts["not_ingested"] == 0
    first = {r["metric"]: r["value"] for r in catalog.query(
        "SELECT metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate' AND model = 'queries' "
        "AND task = 'mine'", [two_nights["first"]["run_id"]]).to_pylist()}
    assert first["scored"] == 2 and first["not_ingested"] == 1  # night 1 had no t1


@pytest.mark.slow  # trains a model twice
def test_night_2_is_scored_on_night_1s_frozen_headlines_less_those_of_documents_it_retired(two_nights):
    catalog, first, second = two_nights["catalog"], two_nights["first"], two_nights["second"]
    (original,) = catalog.query("SELECT doc_id FROM curated_at(?, ?) WHERE record_id = 'b2'",
                                [DATASET, second["run_id"]]).to_pylist()
    (copy,) = catalog.query("SELECT c.kind FROM dedup_clusters c JOIN documents d USING (run_id, doc_id) "
                            "WHERE c.run_id = ? AND d.record_id = 'copy-of-b2'", [second["run_id"]]).to_pylist()
    assert copy == {"kind": "exact_earlier_night"}

    def headlines(run):
        return {r["query"]: r["relevant"] for r in read_shards(
            [Path(run["run_dir"]) / "evaluate" / "queries-headline.parquet"]).to_pylist()}

    night1, night2 = headlines(first), headlines(second)
    # the dataset's evaluation was frozen by night 1: night 2 asks its headlines again, less those
    # of the documents it retired (sport's), and adds none of its own (tech's, the copy's)
    assert "headline s5" in night1 and "headline b5" in night1
    assert set(night2) == {q for q in night1 if not q.startswith("headline s")}
    assert COPY_TITLE not in night2 and "headline t5" not in night2
    # the article a copy of which night 2 dropped is still what its headline finds
    assert night2["headline b2"] == [original["doc_id"]]
