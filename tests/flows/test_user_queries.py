"""A titleless corpus evaluated on the user's own queries, through the real nightly flow.

The corpus is a folder of JSONL files with ids and no titles: BBC business bodies, an exact copy
of one of them, and records quality drops. Two query sets judge it: a BEIR-style folder (the
articles' real headlines as queries, plus a query about a dropped record and one about a record
that is not in the corpus) and one JSONL file of (query, record id). The pool is smaller than
the corpus, so distractors are drawn. A query set that matches no record, or a malformed one,
fails the run before any stage.

One run is shared by the tests of this module (it trains a tiny model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog, StageMarker, read_shard, read_shards
from refinery.tasks.evaluate.labels import NO_LABELS
from refinery.tasks.evaluate.queries import QuerySetError
from refinery.tasks.ingest.readers import bbc_folder

ARTICLES = 36
POOL_DOCS = 24
METRICS = ("ndcg@10", "mrr@10", "recall@100")
INTERVALS = tuple(f"ndcg@10_{c}{s}" for c in ("delta", "vs_bm25") for s in ("", "_ci_low", "_ci_high"))
JUNK = "$$$ !!! ### @@@ click here $$$ " * 3


def articles() -> list[tuple[str, str]]:
    """(headline, body) of the first BBC business articles."""
    out = []
    for path in sorted((bbc_folder() / "business").glob("*.txt"))[:ARTICLES]:
        headline, _, body = path.read_text(encoding="utf-8").partition("\n")
        out.append((headline.strip(), body.strip()))
    return out


def write_corpus(root: Path) -> Path:
    """A folder of two JSONL files: `a-NNN` articles (no titles), a copy of a-001, and junk."""
    folder = root / "corpus"
    folder.mkdir()
    records = [{"id": f"a-{i:03d}", "text": body} for i, (_, body) in enumerate(articles())]
    records.append({"id": "copy-of-a-001", "text": articles()[1][1]})  # dedup keeps one of the two
    records += [{"id": "junk-1", "text": JUNK}, {"id": "junk-2", "text": JUNK + "%%%"}]  # quality drops both
    half = len(records) // 2
    for name, part in (("part-1.jsonl", records[:half]), ("part-2.jsonl", records[half:])):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    return folder


def write_beir(root: Path) -> Path:
    """Headlines as queries (each judging its own article), a query about a dropped record, one
    about a record that does not exist, and one judged only with relevance 0."""
    folder = root / "beir"
    (folder / "qrels").mkdir(parents=True)
    queries = [{"_id": f"q{i}", "text": headline} for i, (headline, _) in enumerate(articles()[:12])]
    queries += [{"_id": "q-copy", "text": articles()[1][0] + " again"}, {"_id": "q-junk", "text": "click here"},
                {"_id": "q-gone", "text": "a record that was never there"}, {"_id": "q-zero", "text": "nothing relevant"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    qrels = [f"q{i}\ta-{i:03d}\t1" for i in range(12)]
    qrels += ["q-copy\tcopy-of-a-001\t2", "q-junk\tjunk-1\t1", "q-junk\tjunk-2\t1", "q-gone\tnot-in-corpus\t1",
              "q-zero\ta-005\t0"]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\ta-000\t1\n")
    return folder


def write_rows(root: Path) -> Path:
    """(query, record id) rows: two queries, one with two relevant records."""
    path = root / "mine.jsonl"
    rows = [{"query": "profits at a media giant", "record_id": "a-000"},
            {"query": "the dollar and the economy", "record_id": "a-001"},
            {"query": "the dollar and the economy", "record_id": "a-002", "relevance": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(root: Path, queries: list[dict], **evaluate) -> Path:
    cfg = {
        "home": str(root / "home"),
        "ingest": {"shard_size": 10, "sources": [{"path": str(write_corpus(root)), "name": "plain"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 16},
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64},
        "evaluate": {"queries": queries, "pool_docs": POOL_DOCS, "max_seq_length": 128, **evaluate},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def queried_run(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("user-queries")
    path = config(root, [{"name": "beir-set", "path": str(write_beir(root))},
                         {"name": "mine", "path": str(write_rows(root)), "source": "plain"}])
    stats = nightly(config_path=str(path), dask_address=dask_address)
    catalog = Catalog(root / "home" / "catalog.duckdb")

    def q(sql: str) -> list[dict]:
        return catalog.query(sql.replace("$run", f"'{stats['run_id']}'")).to_pylist()

    return {"stats": stats, "config": path, "q": q, "run_dir": Path(stats["run_dir"]), "dask_address": dask_address}


@pytest.mark.slow  # trains a model
def test_titleless_corpus_is_evaluated_on_the_query_sets(queried_run):
    q = queried_run["q"]
    rows = q("SELECT model, task, metric, value FROM metrics WHERE run_id = $run AND stage = 'evaluate' "
             "AND model <> 'queries'")
    assert {(r["model"], r["task"], r["metric"]) for r in rows} == {
        (m, t, k) for m in ("base", "tuned", "bm25") for t in ("beir-set", "mine") for k in METRICS} | {
        ("tuned", t, k) for t in ("beir-set", "mine") for k in INTERVALS}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if r["metric"] in METRICS)
    assert all(-1.0 <= r["value"] <= 1.0 for r in rows if r["metric"] in INTERVALS)
    evaluation = StageMarker(queried_run["run_dir"] / "evaluate").read()
    assert evaluation["tasks"] == ["beir-set", "mine"] and evaluation["task"] == "beir-set"
    # the records have no label: the same-label task is skipped, saying why, in the stats and the report
    assert evaluation["skipped_tasks"] == {"same_label": NO_LABELS}
    (stats,) = q("SELECT stats->'skipped_tasks'->>'same_label' AS why FROM stage_runs WHERE run_id = $run "
                 "AND stage = 'evaluate'")
    assert stats["why"] == NO_LABELS
    report = (queried_run["run_dir"] / "report.md").read_text()
    assert f"- `same_label` (document → documents of the same label) was not scored: {NO_LABELS}." in report
    # with query sets and no titles, nothing is held out of training for a synthetic task
    assert queried_run["stats"]["synthesize"]["evaluation_task"] is None
    assert q("SELECT count(*) AS n FROM pairs WHERE run_id = $run AND split = 'heldout'") == [{"n": 0}]
    # real headlines find their own articles: the dense models are far above chance on them
    base = {r["metric"]: r["value"] for r in rows if r["model"] == "base" and r["task"] == "beir-set"}
    assert base["mrr@10"] > 0.5


@pytest.mark.slow  # trains a model
def test_queries_whose_documents_were_dropped_are_counted(queried_run):
    q = queried_run["q"]
    counts = {(r["task"], r["metric"]): r["value"] for r in q(
        "SELECT task, metric, value FROM metrics WHERE run_id = $run AND stage = 'evaluate' AND model = 'queries'")}
    # quality drops article a-003 (business/004.txt: too few alphabetic words), so headline q3 has no
    # kept document, like q-junk (dedup dropped junk-1 for junk-2, which quality dropped)
    dropped = {r["record_id"]: r["stage"] for r in q(
        "SELECT d.record_id, x.stage FROM drops x JOIN documents d USING (run_id, doc_id) WHERE x.run_id = $run")}
    assert dropped["a-003"] == "quality" and {"junk-1", "junk-2"} <= set(dropped)
    assert counts[("beir-set", "all_relevant_dropped")] == 2
    # the other 11 headlines, and q-copy (copy-of-a-001 and a-001 are one cluster, one member kept)
    assert counts[("beir-set", "scored")] == 12
    assert counts[("beir-set", "not_ingested")] == 1  # q-gone
    assert counts[("beir-set", "in_source")] == counts[("beir-set", "sampled")] == 15  # q-zero judges nothing
    assert counts[("mine", "scored")] == 2
    report = (queried_run["run_dir"] / "report.md").read_text()
    for task in ("beir-set", "mine"):
        assert f"## Evaluation: {task}: your queries → documents retrieval" in report
    section = report.split("## Evaluation: beir-set", 1)[1].split("\n## ", 1)[0]
    assert "every relevant document dropped by curation" in section and "| 15 | 15 | 12 | 2 | 1 |" in section


@pytest.mark.slow  # trains a model
def test_the_pool_holds_every_relevant_document_and_is_the_same_for_every_model(queried_run):
    q, run_dir = queried_run["q"], queried_run["run_dir"]
    evaluation = StageMarker(run_dir / "evaluate").read()
    pool = read_shards(evaluation["pool_parts"], ["doc_id"]).column("doc_id").to_pylist()
    assert len(pool) == len(set(pool)) == POOL_DOCS < evaluation["corpus_docs"]
    kept = {r["doc_id"] for r in q("SELECT doc_id FROM corpus WHERE run_id = $run")}
    relevant = {d for task in evaluation["tasks"]
                for rel in read_shard(run_dir / "evaluate" / f"queries-{task}.parquet").column("relevant").to_pylist()
                for d in rel}
    assert relevant and relevant <= set(pool) <= kept
    # every model embedded exactly the pool (base also embedded synthesize's filter pool, a folder of its own)
    embedded: dict[str, list[set[str]]] = {}
    for folder in (run_dir / "embeddings").iterdir():
        ids = read_shards(sorted(map(str, folder.glob("*.parquet"))), ["doc_id"]).column("doc_id").to_pylist()
        embedded.setdefault(folder.name.split("-", 1)[0], []).append(set(ids))
    assert embedded["tuned"] == [set(pool)]
    assert set(pool) in embedded["base"]


@pytest.mark.slow  # trains a model
def test_a_rerun_of_evaluate_draws_the_same_pool_and_figures(queried_run):
    from refinery.flows.nightly import nightly

    q, run_dir = queried_run["q"], queried_run["run_dir"]
    before = StageMarker(run_dir / "evaluate").read()
    metrics = q("SELECT model, task, metric, value FROM metrics WHERE run_id = $run AND stage = 'evaluate' ORDER BY ALL")
    (run_dir / "evaluate" / "_SUCCESS.json").unlink()
    nightly(config_path=str(queried_run["config"]), dask_address=queried_run["dask_address"],
            run_id=queried_run["stats"]["run_id"])
    after = StageMarker(run_dir / "evaluate").read()
    assert after["pool"] == before["pool"] and after["pool_parts"] == before["pool_parts"]
    assert q("SELECT model, task, metric, value FROM metrics WHERE run_id = $run AND stage = 'evaluate' "
             "ORDER BY ALL") == metrics


def _fails_before_any_stage(tmp_path: Path, queries: list[dict], match: str) -> None:
    from refinery.flows.nightly import nightly

    path = config(tmp_path, queries)
    with pytest.raises(QuerySetError, match=match):
        nightly(config_path=str(path))
    runs = tmp_path / "home" / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_a_query_set_matching_no_record_fails_before_any_stage(tmp_path, prefect_api):
    rows = tmp_path / "other.jsonl"
    rows.write_text("".join(json.dumps({"query": f"query {i}", "record_id": f"other-{i}"}) + "\n" for i in range(8)))
    _fails_before_any_stage(tmp_path, [{"name": "other", "path": str(rows)}],
                            match=r"none of the 8 record ids judged relevant in .*other\.jsonl.*other-0, other-1")


def test_a_malformed_or_missing_query_set_fails_before_any_stage(tmp_path, prefect_api):
    beir = write_beir(tmp_path)
    _fails_before_any_stage(tmp_path, [{"name": "b", "path": str(beir), "split": "dev"}],
                            match=r"no .*qrels/dev\.tsv \(splits found: test, train")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0 a-000 1\n")
    (tmp_path / "again").mkdir()
    _fails_before_any_stage(tmp_path / "again", [{"name": "b", "path": str(beir)}],
                            match=r"test\.tsv line 2: expected query-id, corpus-id and score separated by tabs")
