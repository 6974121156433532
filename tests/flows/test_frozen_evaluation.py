"""A dataset's evaluation is frozen by its first night: later nights are scored on the same
held-out queries, hold nothing new out, and never train on a frozen passage (not as a passage, not
as a hard negative), so their figures compare night over night.

Two real nightly flows (tiny training) into one data home over a mirrored folder of technical
documentation without titles (the Python reference and library docstrings): night 2 finds a
second file added.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog, StageMarker, read_shards
from tests.fixtures.techdocs import techdoc_sections

DATASET = "docs"


def _write(path: Path, prefix: str, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": f"{prefix}{i}", "text": t}) + "\n" for i, t in enumerate(texts)))


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("frozen")
    folder = root / "folder"
    folder.mkdir()
    sections = [s.text for s in techdoc_sections(every=24)]
    _write(folder / "first.jsonl", "a", sections[:40])
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / "home"), "dataset": DATASET,
        "ingest": {"shard_size": 16, "sources": [{"path": str(folder), "name": "docs", "mode": "mirror"}]},
        "quality": {"profile": "technical"},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 200, "heldout_fraction": 0.25},
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64},
        "evaluate": {"pool_docs": 80, "max_seq_length": 128}}))
    first = nightly(config_path=str(config), dask_address=dask_address)
    _write(folder / "second.jsonl", "b", sections[40:70])
    second = nightly(config_path=str(config), dask_address=dask_address)
    return {"first": first, "second": second, "catalog": Catalog(root / "home" / "catalog.duckdb")}


def _heldout(catalog: Catalog, run_id: str) -> set[tuple[str, str]]:
    rows = catalog.query("SELECT DISTINCT query, doc_id FROM pairs WHERE run_id = ? AND kept AND split = 'heldout'",
                         [run_id]).to_pylist()
    return {(r["query"], r["doc_id"]) for r in rows}


def _scored_queries(run: dict) -> set[str]:
    shard = Path(run["run_dir"]) / "evaluate" / "queries-synthetic_heldout.parquet"
    return set(read_shards([shard]).column("query").to_pylist())


@pytest.mark.slow  # trains a model twice
def test_the_first_night_freezes_its_heldout_queries_and_the_second_is_scored_on_them(two_nights):
    catalog, first, second = two_nights["catalog"], two_nights["first"], two_nights["second"]
    held = _heldout(catalog, first["run_id"])
    assert held, "night 1 held no pair out"
    frozen = catalog.query("SELECT DISTINCT query, doc_id, frozen_by FROM evaluation_sets WHERE dataset = ?",
                           [DATASET]).to_pylist()
    assert {(r["query"], r["doc_id"]) for r in frozen} == held
    assert {r["frozen_by"] for r in frozen} == {first["run_id"]}
    # night 2 holds nothing new out and is scored on night 1's queries, though it has new documents
    assert not _heldout(catalog, second["run_id"])
    assert _scored_queries(second) == _scored_queries(first) == {q for q, _ in held}
    evaluation = StageMarker(Path(second["run_dir"]) / "evaluate").read()
    assert evaluation["frozen"]["synthetic_heldout"]["frozen_by"] == first["run_id"]
    report = (Path(second["run_dir"]) / "report.md").read_text()
    assert f"the frozen evaluation set of dataset `{DATASET}`" in report and "interval is" in report


@pytest.mark.slow  # trains a model twice
def test_the_second_night_never_trains_on_a_frozen_passage(two_nights):
    catalog, first, second = two_nights["catalog"], two_nights["first"], two_nights["second"]
    frozen_docs = {d for _, d in _heldout(catalog, first["run_id"])}
    pairs = catalog.query("SELECT doc_id, negative_doc_id, kept FROM pairs WHERE run_id = ?",
                          [second["run_id"]]).to_pylist()
    assert any(p["kept"] for p in pairs)
    # no frozen passage was even a generator's passage, nor any kept pair's hard negative
    assert not {p["doc_id"] for p in pairs} & frozen_docs
    assert not {p["negative_doc_id"] for p in pairs if p["kept"]} & frozen_docs
    # while night 2's training did read documents night 1 curated (the whole version, not its night)
    night1 = {r["doc_id"] for r in catalog.query("SELECT doc_id FROM documents WHERE run_id = ?",
                                                 [first["run_id"]]).to_pylist()}
    assert {p["doc_id"] for p in pairs if p["kept"]} & night1
