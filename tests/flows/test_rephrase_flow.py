"""Rephrasing (WRAP) through the real nightly flow (Prefect, Dask, DuckDB) up to synthesize: a
scripted chat-completions server on the loopback interface rephrases the first chosen passages;
the rephrasings are in `rephrasings` linked to their originals, their pairs are in `pairs` under
the derived doc ids, and their diversity beside the originals' is in `metrics`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog
from refinery.tasks.synthesize.config import BUILTIN_REPHRASE_STYLES
from refinery.tasks.synthesize.generators.clean import split_sentences
from tests.synthesize.chat_endpoint import FakeEndpoint

DOCUMENTS = 3


def scripted(request: dict) -> tuple[str, str]:
    """wikipedia: the passage's sentences in reverse order (its facts, not its text); qa: a question
    and the first sentence as its answer."""
    instruction, passage = request["messages"][-1]["content"].split("\n\n", 1)
    sentences = [s for para in split_sentences(passage) for s in para]
    if instruction == BUILTIN_REPHRASE_STYLES["wikipedia"]:
        return " ".join(reversed(sentences)), "stop"
    return f"Question: What is the story?\nAnswer: {sentences[0]}", "stop"


@pytest.fixture(scope="module")
def wrap_run(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("wrap")
    config = {
        "home": str(root / "home"),
        "stages": ["ingest", "dedup", "quality", "synthesize"],
        "ingest": {"shard_size": 40, "limit": 40, "sources": [{"path": "builtin:bbc"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 12, "hard_negatives": False,
                       "openai": {"model": "scripted", "max_retries": 0},
                       "rephrase": {"styles": ["wikipedia", "qa"], "generator": "openai", "documents": DOCUMENTS}},
        "evaluate": {"encoder": "torch"},
    }
    with FakeEndpoint(scripted) as endpoint:
        config["synthesize"]["openai"]["base_url"] = endpoint.base_url
        path = root / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        stats = nightly(config_path=str(path), dask_address=dask_address)
    catalog = Catalog(root / "home" / "catalog.duckdb")

    def q(sql: str) -> list[dict]:
        return catalog.query(sql.replace("$run", f"'{stats['run_id']}'")).to_pylist()

    return {"stats": stats["synthesize"], "q": q, "catalog": catalog, "run_id": stats["run_id"],
            "report": stats["report"]}


def test_rephrasings_are_derived_documents_of_chosen_passages(wrap_run):
    q = wrap_run["q"]
    rows = q("""SELECT r.doc_id, r.original_doc_id, r.style, r.kept, r.reason, c.doc_id IS NOT NULL AS in_corpus
                FROM rephrasings r LEFT JOIN corpus c ON c.run_id = r.run_id AND c.doc_id = r.original_doc_id
                WHERE r.run_id = $run ORDER BY 1""")
    assert len(rows) == DOCUMENTS * 2
    assert {r["style"] for r in rows} == {"wikipedia", "qa"}
    assert all(r["in_corpus"] and r["doc_id"] == f"{r['original_doc_id']}#wrap-{r['style']}" for r in rows)
    assert all(r["kept"] and r["reason"] is None for r in rows)
    # the originals are passages the generators read
    originals = {r["original_doc_id"] for r in rows}
    assert originals <= {r["doc_id"] for r in q("SELECT DISTINCT doc_id FROM pairs WHERE run_id = $run")}


def test_rephrased_passages_have_pairs_of_their_own(wrap_run):
    q = wrap_run["q"]
    rows = q("""SELECT r.style, count(*) AS candidates, count(*) FILTER (p.kept) AS kept FROM pairs p
                JOIN rephrasings r USING (run_id, doc_id) WHERE p.run_id = $run GROUP BY ALL""")
    assert {r["style"] for r in rows} == {"wikipedia", "qa"}
    assert sum(r["kept"] for r in rows) > 0  # their consistency hit is the original: found
    assert wrap_run["stats"]["rephrasings"]["docs"] == DOCUMENTS * 2


def test_rephrasing_diversity_is_beside_the_originals(wrap_run):
    rows = wrap_run["q"]("""SELECT model, metric, value FROM metrics WHERE run_id = $run AND stage = 'synthesize'
                            AND task = 'rephrasings'""")
    assert {r["model"] for r in rows} == {"originals", "wikipedia", "qa"}
    value = {(r["model"], r["metric"]): r["value"] for r in rows}
    # the wikipedia rephrasings are the originals' sentences reordered: the same words
    assert value[("wikipedia", "distinct_1")] == pytest.approx(value[("originals", "distinct_1")])
    assert value[("wikipedia", "mean_words")] == pytest.approx(value[("originals", "mean_words")])
    # the generator rows of the pairs are still there
    assert any(r["model"] == "inverse_cloze" for r in wrap_run["q"](
        "SELECT model FROM metrics WHERE run_id = $run AND stage = 'synthesize' AND task = 'pairs'"))


def test_the_report_tables_of_the_rephrasings(wrap_run):
    catalog, run_id = wrap_run["catalog"], wrap_run["run_id"]
    outcomes = catalog.rephrasing_outcomes(run_id)
    assert [(r["style"], r["kept"], r["reason"], r["rephrasings"]) for r in outcomes] == [
        ("qa", True, None, DOCUMENTS), ("wikipedia", True, None, DOCUMENTS)]
    kept_pairs = wrap_run["q"]("""SELECT count(*) AS n FROM pairs p JOIN rephrasings r USING (run_id, doc_id)
                                  WHERE p.run_id = $run AND p.kept""")[0]["n"]
    assert sum(r["kept_pairs"] for r in outcomes) == kept_pairs
    diversity = catalog.rephrasing_diversity(run_id)
    assert [r["texts"] for r in diversity] == ["originals", "qa", "wikipedia"]
    assert set(diversity[0]) == {"texts", "distinct_1", "distinct_2", "self_jaccard", "mean_words", "compression_ratio"}
    # the pairs' diversity table stays the generators'
    assert {r["generator"] for r in catalog.synthesis_diversity(run_id)} == {"inverse_cloze", "all"}
    report = Path(wrap_run["report"]).read_text()
    assert "**Rephrasings (WRAP)**" in report and "| originals |" in report and "| wikipedia | openai |" in report
