"""bench.nightly: a titleless corpus with planted duplicates, low-quality rows and rejects, and the
real `refinery run` on it, measured and accounted."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from bench import nightly
from refinery.storage import Catalog
from refinery.tasks.dedup import normalize_for_exact
from refinery.tasks.ingest.readers import doc_id_for
from tests.fixtures.corpora import NIGHTLY_SOURCE, nightly_corpus


# what bench.nightly prints: per-stage figures, memory, the books and catalog growth
PER_STAGE = ("stage_seconds", "peak_rss_mb_by_stage")
REPORTED = {*PER_STAGE, "peak_rss_mb", "books", "catalog", "planted_vs_found"}

def _records(root: Path) -> list[dict]:
    out = []
    for path in sorted((root / "docs").iterdir()):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"invalid": line})
    return out


def _planted(root: Path) -> list[dict]:
    with open(root / "planted.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_corpus_is_titleless_reproducible_and_records_what_it_plants(tmp_path):
    options = {"seed": 3, "chunk_docs": 1000, "reject_fraction": 0.01}
    manifest = nightly_corpus(tmp_path / "a", 3000, **options)
    again = nightly_corpus(tmp_path / "b", 3000, **options)
    names = [f["name"] for f in manifest["files"]]
    for name in names:
        assert (tmp_path / "a" / "docs" / name).read_bytes() == (tmp_path / "b" / "docs" / name).read_bytes()
    assert manifest["planted"] == again["planted"] and not manifest["reused"]

    records = _records(tmp_path / "a")
    assert len(records) == 3000 == sum(manifest["planted"].values())
    docs = [r for r in records if isinstance(r.get("text"), str) and r["text"].strip()]
    assert all(set(r) == {"id", "text"} for r in docs)  # no title field
    assert len({r["id"] for r in docs}) == len(docs) == manifest["documents"]
    assert 1500 < manifest["avg_text_bytes"] < 2600
    sizes = [f["docs"] for f in manifest["files"]]
    assert sum(sizes) == 3000 and max(sizes) >= 0.5 * 3000 and len(sizes) > 2  # one large file, a few small

    planted = _planted(tmp_path / "a")
    kinds = Counter(p["kind"] for p in planted)
    assert {k: kinds[k] for k in ("exact", "near", "low_quality", "reject")} == {
        k: manifest["planted"][k] for k in ("exact", "near", "low_quality", "reject")}
    assert all(kinds[k] > 0 for k in ("exact", "near", "low_quality", "reject"))
    text = {r["id"]: r["text"] for r in docs}
    base_ids = set(text) - {p["record_id"] for p in planted}
    for p in planted:
        if p["kind"] in ("exact", "near"):
            assert p["source_record_id"] in base_ids  # every copy has one original, never a copy
            assert p["source_doc_id"] == doc_id_for(NIGHTLY_SOURCE, p["source_record_id"])
        if p["kind"] == "exact":
            assert normalize_for_exact(text[p["record_id"]]) == normalize_for_exact(text[p["source_record_id"]])
        if p["kind"] == "near":
            copy, original = text[p["record_id"]].split(), text[p["source_record_id"]].split()
            assert abs(len(copy) - len(original)) <= max(10, len(original) // 20)  # a few word edits

    assert nightly_corpus(tmp_path / "a", 3000, **options)["reused"]
    other = nightly_corpus(tmp_path / "a", 3000, **{**options, "seed": 4})
    assert not other["reused"] and _records(tmp_path / "a") != records


@pytest.fixture()
def workers_use_the_session_prefect_api(prefect_api, monkeypatch):
    # the bench's `refinery run` subprocess reports to the session's API instead of starting a server
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)


def test_the_bench_runs_curation_and_accounts_for_every_planted_document(tmp_path, capsys,
                                                                         workers_use_the_session_prefect_api):
    out = tmp_path / "nightly.json"
    rc = nightly.main(["--docs", "400", "--work", str(tmp_path / "work"), "--stages", "ingest,dedup,quality",
                       "--workers", "1", "--keep-corpus", "--json", str(out)])
    result = json.loads(out.read_text())
    assert rc == 0, result
    assert json.loads(capsys.readouterr().out) == result
    assert result["status"] == "completed"
    # the fields a reader of the JSON relies on, for every stage the run did (what the figures are
    # is bench/RESULTS.md's business)
    assert REPORTED <= set(result)
    assert set(result["stage_status"]) == {"ingest", "dedup", "quality", "publish"}
    assert all(set(result[field]) == set(result["stage_status"]) for field in PER_STAGE)

    books = result["books"]
    assert books["docs_in"] == 400 == books["docs_kept"] + books["docs_dropped"] + books["docs_rejected"]
    planted = result["planted_vs_found"]["planted"]
    assert books["docs_rejected"] == planted["reject"]
    assert result["peak_rss_mb"]["flow"] > 0 and result["peak_rss_mb"]["worker_max"] > 0
    assert result["peak_rss_mb"]["workers_seen"] == 1
    assert set(result["peak_rss_mb_by_stage"]) == {"ingest", "dedup", "quality", "publish"}
    by_stage = [p["worker_max"] for p in result["peak_rss_mb_by_stage"].values()]
    assert 0 < max(by_stage) <= result["peak_rss_mb"]["worker_max"]
    assert result["catalog"]["bytes_after"] > result["catalog"]["bytes_before"] == 0
    assert result["catalog"]["run_dir_bytes"] > 0

    # every planted exact copy ends in one dedup cluster with its original (whichever survives)
    corpus = Path(result["corpus"]["path"])
    catalog = Catalog(tmp_path / "work" / "home" / "catalog.duckdb")
    rows = catalog.query("SELECT doc_id, cluster_id FROM dedup_clusters WHERE run_id = ?", [result["run_id"]])
    cluster = {r["doc_id"]: r["cluster_id"] for r in rows.to_pylist()}
    exact = [p for p in _planted(corpus) if p["kind"] == "exact"]
    assert exact and all(cluster.get(p["doc_id"]) == cluster.get(p["source_doc_id"]) is not None for p in exact)
    found = result["planted_vs_found"]["dedup"]["copies_found"]["exact"]
    assert found == {"planted": len(exact), "found": len(exact)}
    assert result["planted_vs_found"]["dedup"]["dropped"] == books["docs_dropped"] - result["planted_vs_found"][
        "quality"]["dropped"]

    # a second run from the first one's curation: nothing is redone, and the reused stages' seconds
    # (the first run's, as the catalog keeps them) stay out of this run's stage figures
    again = tmp_path / "again.json"
    rc = nightly.main(["--docs", "400", "--work", str(tmp_path / "work"), "--stages", "ingest,dedup,quality",
                       "--workers", "1", "--from-run", result["run_id"], "--json", str(again)])
    reused = json.loads(again.read_text())
    assert rc == 0, reused
    assert reused["run_id"] != result["run_id"]
    # the curation stages reused; publish ran and published nothing (the first run published them)
    assert reused["stage_status"] == {"ingest": "reused", "dedup": "reused", "quality": "reused", "publish": "completed"}
    assert reused["stage_stats"]["publish"]["published"] is False
    # which stages each field reports, not how long they took
    reported = {field: set(reused[field]) for field in ("stage_seconds", "peak_rss_mb_by_stage", "reused_stage_seconds")}
    expected = {"stage_seconds": {"publish"}, "peak_rss_mb_by_stage": {"publish"},
                "reused_stage_seconds": {"ingest", "dedup", "quality"}}
    assert reported == expected
    assert reused["books"] == books


def test_a_run_that_cannot_start_is_a_failure(tmp_path, capsys, workers_use_the_session_prefect_api):
    rc = nightly.main(["--docs", "50", "--work", str(tmp_path / "work"), "--stages", "dedup"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 1 and result["exit_status"] == 2 and result["run_id"] is None
    assert not (tmp_path / "work" / "corpus-50-seed0").exists()  # not kept without --keep-corpus

