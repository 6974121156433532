"""The synthesize stage through the real nightly flow (Prefect, Dask, DuckDB) on a small slice: every
candidate is in `pairs`, each rejected one with its reason; counts and diversity are stored.

Besides BBC articles the corpus has two crafted articles whose only sentence long enough for
inverse cloze is the same, so both yield the same query: one of them must be rejected as a
near-duplicate (each has two of gopher's stop words, or quality drops it). The chain stops after
synthesize (no training).
"""

from __future__ import annotations

import json

import pytest
import yaml

from refinery.storage import Catalog
from refinery.tasks.synthesize.filters import FILTER_CONSISTENCY, FILTER_NEAR_DUPLICATE, REASONS

SHARED = "The central bank raised its main interest rate again on Thursday morning."
SHORT_A = ["Markets fell at the open.", "Traders sold their bonds.", "The pound slipped a bit.",
           "Banks led the fall.", "Mortgage lenders were worried.", "Savers had reason to cheer.",
           "Retailers said it hurts.", "Economists had expected it.", "The governor made no comment.",
           "Prices are still rising.", "Wages lag far behind.", "More rises may follow."]
SHORT_B = ["Shares rallied by noon.", "Exporters said little of note.", "House builders fell back.",
           "The euro was flat.", "Gilts ended the day higher.", "Unions want to see restraint.",
           "Shoppers and savers were glum.", "Ministers kept their counsel.", "Oil prices were steady.",
           "Factories reported weak orders.", "The next meeting is in May.", "Few saw it coming."]


def crafted(root):
    path = root / "crafted.jsonl"
    rows = [{"id": f"rates-{k}", "title": f"Rates rise {k}", "text": " ".join([SHARED, *short])}
            for k, short in (("a", SHORT_A), ("b", SHORT_B))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("synthesize")
    config = {
        "home": str(root / "home"),
        "stages": ["ingest", "dedup", "quality", "synthesize"],
        "ingest": {"shard_size": 40, "limit": 60,
                   "sources": [{"path": "builtin:bbc"}, {"path": str(crafted(root)), "name": "crafted"}]},
        # k=2: both crafted articles rank first and second for their shared sentence
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 200, "consistency_top_k": 2,
                       "hard_negatives": True},
        "evaluate": {"encoder": "torch"},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    stats = nightly(config_path=str(path), dask_address=dask_address)
    catalog = Catalog(root / "home" / "catalog.duckdb")

    def q(sql: str) -> list[dict]:
        return catalog.query(sql.replace("$run", f"'{stats['run_id']}'")).to_pylist()

    return {"stats": stats["synthesize"], "q": q}


def test_every_rejected_candidate_is_stored_with_its_reason(synth_run):
    q, stats = synth_run["q"], synth_run["stats"]
    rows = q("SELECT kept, reason, count(*) AS n FROM pairs WHERE run_id = $run GROUP BY ALL")
    assert sum(r["n"] for r in rows) == stats["generated"] > 0
    assert {r["reason"] for r in rows if r["kept"]} == {None}
    rejected = {r["reason"]: r["n"] for r in rows if not r["kept"]}
    assert None not in rejected and set(rejected) <= set(REASONS)
    assert rejected[FILTER_CONSISTENCY] > 0
    # the stage's counts per reason are what the table holds
    assert {k: v for k, v in stats["dropped"].items() if v} == rejected
    assert stats["by_generator"]["inverse_cloze"][FILTER_CONSISTENCY] == rejected[FILTER_CONSISTENCY]


def test_a_repeated_query_is_kept_once(synth_run):
    rows = synth_run["q"](f"""SELECT doc_id, kept, reason FROM pairs WHERE run_id = $run
                              AND query = '{SHARED}' ORDER BY kept DESC""")
    assert [(r["kept"], r["reason"]) for r in rows] == [(True, None), (False, FILTER_NEAR_DUPLICATE)]


def test_kept_training_pairs_get_a_hard_negative_from_the_corpus(synth_run):
    rows = synth_run["q"]("""SELECT p.doc_id, p.negative_doc_id, c.doc_id IS NOT NULL AS in_corpus FROM pairs p
                             LEFT JOIN corpus c ON c.run_id = p.run_id AND c.doc_id = p.negative_doc_id
                             WHERE p.run_id = $run AND p.kept""")
    assert rows and all(r["negative_doc_id"] is not None and r["in_corpus"] for r in rows)
    assert all(r["negative_doc_id"] != r["doc_id"] for r in rows)
    assert synth_run["stats"]["with_negatives"] == len(rows)


def test_diversity_per_generator_and_for_all_kept_queries(synth_run):
    rows = synth_run["q"]("SELECT model, metric, value FROM metrics WHERE run_id = $run AND stage = 'synthesize'")
    got = {(r["model"], r["metric"]): r["value"] for r in rows}
    for model in ("inverse_cloze", "all"):
        for metric in ("distinct_1", "distinct_2", "self_jaccard", "embedding_dispersion"):
            assert 0.0 < got[(model, metric)] <= 1.0, (model, metric)
    # one generator: its kept queries are all the kept queries
    assert got[("all", "distinct_1")] == got[("inverse_cloze", "distinct_1")]
