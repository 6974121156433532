"""Corpora of other shapes than the bundled one, through the real nightly flow.

- plain JSONL article bodies with no titles and no duplicates: the run completes, and it is
  evaluated on synthetic pairs held out from training;
- a corpus of which no document survives curation: the run completes with empty outputs and
  says why;
- input of which every record is rejected at ingest: the same;
- a folder whose files repeat record ids: the later records are rejected, the run completes and
  the books balance, overall and per file.

One run per corpus, shared by the tests of this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from refinery.storage import Catalog, StageMarker
from refinery.tasks.ingest.readers import bbc_folder

ARTICLES = 60
HELDOUT_FRACTION = 0.25
NO_CORPUS = "no new document survived curation tonight"


def titleless_records(n: int = ARTICLES) -> list[str]:
    """Distinct English article bodies as JSONL, without titles (the body text of BBC business
    articles; their headline line is dropped)."""
    out, seen = [], set()
    for i, path in enumerate(sorted((bbc_folder() / "business").glob("*.txt"))[:n]):
        body = path.read_text(encoding="utf-8").partition("\n")[2].strip()
        if body not in seen:
            seen.add(body)
            out.append(json.dumps({"id": f"doc-{i:03d}", "text": body}))
    return out


def nothing_survives_records() -> list[str]:
    """German paragraphs (language ID drops them), symbol junk, an exact duplicate and a broken line."""
    german = [
        "Die Bundesregierung hat am Mittwoch beschlossen, die Förderung für erneuerbare Energien deutlich "
        "auszubauen. Nach Angaben des Ministeriums sollen zusätzliche Milliarden in Windkraft fließen. ",
        "Der Verein gewann am Samstag das Spiel gegen den Tabellenführer mit drei zu eins. Die Zuschauer im "
        "ausverkauften Stadion feierten die Mannschaft noch lange nach dem Schlusspfiff. ",
        "In der Stadt wird seit Wochen über den Neubau der Brücke gestritten. Die Anwohner fürchten Lärm und "
        "Verkehr, die Verwaltung verweist auf die marode alte Konstruktion aus den sechziger Jahren. ",
        "Das Museum zeigt ab dem kommenden Monat eine Ausstellung über die Geschichte der Eisenbahn. Zu sehen "
        "sind historische Lokomotiven, Fahrkarten und Fotografien aus mehr als hundert Jahren. ",
    ]
    records = [json.dumps({"id": f"de-{i}", "text": text * 3}) for i, text in enumerate(german)]
    records.append(json.dumps({"id": "de-0-copy", "text": german[0] * 3}))
    records += [json.dumps({"id": "junk-1", "text": "$$$ !!! ### @@@ click here $$$"}),
                json.dumps({"id": "junk-2", "text": "%%% *** ^^^ ~~~ >>> <<< |||"})]
    records.append("{this is not json")
    return records


def run_nightly(root: Path, records: list[str] | dict[str, list[str]], dask_address: str, **sections) -> dict:
    """The nightly flow on ``records`` as one JSONL file, or as a folder of them ({name: records})."""
    from refinery.flows.nightly import nightly

    files = records if isinstance(records, dict) else {"corpus.jsonl": records}
    data = root / "corpus"
    data.mkdir()
    for name, lines in files.items():
        (data / name).write_text("\n".join(lines) + "\n")
    if not isinstance(records, dict):
        data = data / "corpus.jsonl"
    config = {"home": str(root / "home"),
              "ingest": {"shard_size": 30, "sources": [{"path": str(data), "name": "plain"}]}, **sections}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    stats = nightly(config_path=str(path), dask_address=dask_address)
    catalog = Catalog(root / "home" / "catalog.duckdb")

    def q(sql: str) -> list[dict]:
        return catalog.query(sql.replace("$run", f"'{stats['run_id']}'")).to_pylist()

    return {"stats": stats, "config": path, "q": q, "records": records, "run_dir": Path(stats["run_dir"])}


@pytest.fixture(scope="module")
def titleless_run(tmp_path_factory, prefect_api, dask_address):
    return run_nightly(
        tmp_path_factory.mktemp("titleless"), titleless_records(), dask_address,
        synthesize={"generators": ["inverse_cloze"], "inverse_cloze_passages": ARTICLES,
                    "heldout_fraction": HELDOUT_FRACTION, "hard_negatives": True,
                    "hard_negative_rank_window": [5, 20]},
        train={"epochs": 1, "batch_size": 8, "max_seq_length": 128},
    )


@pytest.fixture(scope="module")
def empty_run(tmp_path_factory, prefect_api, dask_address):
    return run_nightly(tmp_path_factory.mktemp("nothing-survives"), nothing_survives_records(), dask_address)


@pytest.mark.slow  # trains a model
def test_corpus_without_duplicates_completes(titleless_run):
    q = titleless_run["q"]
    (row,) = q("SELECT * FROM runs WHERE run_id = $run")
    assert row["status"] == "completed" and row["error"] is None
    assert row["docs_in"] == len(titleless_run["records"]) == ARTICLES
    assert row["docs_in"] == row["docs_kept"] + row["docs_dropped"] + row["docs_rejected"]
    assert q("SELECT count(*) AS n FROM dedup_clusters WHERE run_id = $run") == [{"n": 0}]
    assert q("SELECT count(*) AS n FROM drops WHERE run_id = $run AND stage = 'dedup'") == [{"n": 0}]
    # quality scored every document: nothing was lost between dedup and quality
    assert q("SELECT count(DISTINCT doc_id) AS n FROM doc_attributes WHERE run_id = $run") == [{"n": ARTICLES}]
    assert q("SELECT count(*) AS n FROM documents WHERE run_id = $run AND title IS NOT NULL") == [{"n": 0}]


@pytest.mark.slow  # trains a model
def test_titleless_corpus_is_evaluated_on_heldout_synthetic_pairs(titleless_run):
    q = titleless_run["q"]
    rows = q("SELECT model, task, metric, value FROM metrics WHERE run_id = $run AND stage = 'evaluate'"
             " AND model <> 'queries' AND metric IN ('ndcg@10', 'mrr@10', 'recall@100')")
    assert {(r["model"], r["task"], r["metric"]) for r in rows} == {
        (m, "synthetic_heldout", k) for m in ("base", "tuned", "bm25") for k in ("ndcg@10", "mrr@10", "recall@100")}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    (held,) = q("SELECT count(DISTINCT query) AS n FROM pairs WHERE run_id = $run AND kept AND split = 'heldout'")
    evaluation = StageMarker(titleless_run["run_dir"] / "evaluate").read()
    assert evaluation["task"] == "synthetic_heldout" and evaluation["queries"] == held["n"] > 0


@pytest.mark.slow  # trains a model
def test_heldout_passages_are_never_trained_on(titleless_run):
    q = titleless_run["q"]
    kept = q("SELECT doc_id, split, negative_doc_id FROM pairs WHERE run_id = $run AND kept")
    held = {r["doc_id"] for r in kept if r["split"] == "heldout"}
    train = {r["doc_id"] for r in kept if r["split"] == "train"}
    assert held and train and not held & train
    # every candidate of a held-out passage is held out, and no held-out passage is a training negative
    assert q("SELECT count(*) AS n FROM pairs WHERE run_id = $run AND split = 'train' AND doc_id IN "
             "(SELECT doc_id FROM pairs WHERE run_id = $run AND split = 'heldout')") == [{"n": 0}]
    negatives = {r["negative_doc_id"] for r in kept if r["split"] == "train" and r["negative_doc_id"]}
    assert negatives and not negatives & held
    # passages drawn besides the training ones: at most heldout_fraction of the corpus, most with a kept query
    assert round(HELDOUT_FRACTION * ARTICLES) // 2 < len(held) <= round(HELDOUT_FRACTION * ARTICLES)
    # the model was trained on exactly the kept training pairs
    assert StageMarker(titleless_run["run_dir"] / "train").read()["examples"] == sum(r["split"] == "train" for r in kept)


@pytest.mark.slow  # trains a model
def test_report_says_the_corpus_had_no_titles(titleless_run):
    report = (titleless_run["run_dir"] / "report.md").read_text()
    assert "## Evaluation: held-out synthetic query → document retrieval" in report
    assert "The corpus had no titles, so evaluation used held-out synthetic pairs" in report
    assert "## Evaluation: headline" not in report


@pytest.mark.slow  # trains a model
def test_refinery_runs_shows_the_heldout_evaluation(titleless_run):
    from refinery.flows.cli import app

    result = CliRunner().invoke(app, ["runs", "--format", "json", "--config", str(titleless_run["config"])])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["status"] == "completed" and row["eval_task"] == "synthetic_heldout"
    assert row["tuned_ndcg10"] is not None and row["base_ndcg10"] is not None


def test_nothing_survives_curation_completes_with_empty_outputs(empty_run):
    q = empty_run["q"]
    (row,) = q("SELECT * FROM runs WHERE run_id = $run")
    assert row["status"] == "completed" and row["error"] is None
    assert row["docs_kept"] == 0 and row["docs_rejected"] == 1
    assert row["docs_in"] == len(empty_run["records"]) == row["docs_dropped"] + row["docs_rejected"]
    stages = {r["stage"]: json.loads(r["stats"])
              for r in q("SELECT stage, stats FROM stage_runs WHERE run_id = $run ORDER BY started_at")}
    assert list(stages) == ["ingest", "dedup", "quality", "publish", "synthesize", "train", "evaluate", "promote"]
    for stage in ("synthesize", "train", "evaluate", "promote"):
        assert stages[stage]["skipped"] == NO_CORPUS
    for table in ("pairs", "models", "metrics"):
        assert q(f"SELECT count(*) AS n FROM {table} WHERE run_id = $run") == [{"n": 0}]


def test_report_of_an_empty_corpus_says_why(empty_run):
    q = empty_run["q"]
    report = (empty_run["run_dir"] / "report.md").read_text()
    assert "## No new document survived curation" in report
    reasons = {r["reason"] for r in q("SELECT DISTINCT reason FROM drops WHERE run_id = $run")}
    assert "dedup_exact" in reasons and any(r.startswith("langid") for r in reasons)
    summary = report.split("## No new document survived curation", 1)[1].split("\n## ", 1)[0]
    for reason in reasons:
        assert reason in summary
    assert "invalid_json" in summary


def test_every_record_rejected_completes(tmp_path, prefect_api, dask_address):
    run = run_nightly(tmp_path, ["{broken", "[1, 2]", json.dumps({"id": "no-text"})], dask_address)
    (row,) = run["q"]("SELECT status, docs_in, docs_kept, docs_dropped, docs_rejected FROM runs WHERE run_id = $run")
    assert row == {"status": "completed", "docs_in": 3, "docs_kept": 0, "docs_dropped": 0, "docs_rejected": 3}
    assert "## No new document survived curation" in (run["run_dir"] / "report.md").read_text()


def test_the_report_counts_rejects_by_reason_not_one_row_per_record(tmp_path, prefect_api, dask_address):
    # each duplicate_id reason names its id and first location: the report groups by the reason's family
    records = [json.dumps({"id": f"id-{i % 2}", "text": f"copy {i}"}) for i in range(6)] + ["{broken", "{also"]
    run = run_nightly(tmp_path, records, dask_address)
    reasons = run["q"]("SELECT reason, count(*) AS n FROM rejects WHERE run_id = $run GROUP BY ALL")
    assert len(reasons) > 2  # distinct full reasons
    summary = (run["run_dir"] / "report.md").read_text().split("## No new document survived curation", 1)[1]
    assert "duplicate_id (4)" in summary and "invalid_json (2)" in summary


def test_record_ids_repeated_across_files_are_rejected_and_the_run_balances(tmp_path, prefect_api, dask_address):
    records = titleless_records(20)
    a = records[:12]
    b = [json.loads(r) for r in records[12:]]
    for i in range(3):
        b[i]["id"] = f"doc-{i:03d}"  # ids of a.jsonl's first three records, on other texts
    b[4]["id"] = b[3]["id"]  # and one repeated within b.jsonl
    run = run_nightly(tmp_path, {"a.jsonl": a, "b.jsonl": [json.dumps(r) for r in b]}, dask_address,
                      stages=["ingest", "dedup", "quality"])
    q = run["q"]
    (row,) = q("SELECT status, docs_in, docs_kept, docs_dropped, docs_rejected FROM runs WHERE run_id = $run")
    assert row["status"] == "completed" and row["docs_in"] == 20 and row["docs_rejected"] == 4
    assert row["docs_in"] == row["docs_kept"] + row["docs_dropped"] + row["docs_rejected"]
    assert sorted(r["reason"] for r in q("SELECT reason FROM rejects WHERE run_id = $run")) == [
        "duplicate_id: doc-000 (first at a.jsonl:1)", "duplicate_id: doc-001 (first at a.jsonl:2)",
        "duplicate_id: doc-002 (first at a.jsonl:3)", f"duplicate_id: {b[3]['id']} (first at b.jsonl:4)"]
    # the rejected records never reached dedup or quality
    assert q("SELECT count(*) AS n, count(DISTINCT doc_id) AS ids FROM documents WHERE run_id = $run") == [
        {"n": 16, "ids": 16}]
    assert q("SELECT (SELECT count(DISTINCT doc_id) FROM doc_attributes WHERE run_id = $run)"
             " + (SELECT count(*) FROM drops WHERE run_id = $run AND stage = 'dedup') AS n") == [{"n": 16}]
    assert q("SELECT path, records_read, documents, rejected FROM file_books WHERE run_id = $run ORDER BY path") == [
        {"path": "a.jsonl", "records_read": 12, "documents": 12, "rejected": 0},
        {"path": "b.jsonl", "records_read": 8, "documents": 4, "rejected": 4}]


@pytest.mark.slow  # synthesizes and evaluates
def test_a_night_too_small_to_train_on_completes_without_a_model_and_says_why(tmp_path, prefect_api, dask_address):
    """Three documents give too few pairs for one batch: the night publishes its dataset, scores the
    base model and BM25, and its report and CLI line say why no model was trained (it used to fail)."""
    run = run_nightly(tmp_path, titleless_records(3), dask_address,
                      synthesize={"generators": ["inverse_cloze"], "inverse_cloze_passages": 3},
                      train={"batch_size": 8, "max_seq_length": 128})
    q = run["q"]
    (row,) = q("SELECT status, docs_in, docs_kept FROM runs WHERE run_id = $run")
    assert row == {"status": "completed", "docs_in": 3, "docs_kept": 3}
    train = StageMarker(run["run_dir"] / "train").read()
    assert "too few to train on" in train["skipped"] or "no kept training pairs" in train["skipped"]
    assert q("SELECT name FROM models WHERE run_id = $run") == []
    scored = {r["model"] for r in q("SELECT DISTINCT model FROM metrics WHERE run_id = $run AND stage = 'evaluate'")}
    assert {"base", "bm25"} <= scored <= {"base", "bm25", "queries"}
    assert StageMarker(run["run_dir"] / "promote").read()["skipped"] == train["skipped"]
    report = (run["run_dir"] / "report.md").read_text()
    assert "## No model tonight" in report and train["skipped"] in report
