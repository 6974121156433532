"""The synthesize stage through the real nightly flow (Prefect, Dask, DuckDB) on a small slice: every
candidate is in `pairs`, each rejected one with its reason; counts and diversity are stored.

Besides BBC articles the corpus has two crafted articles whose only sentence long enough for
inverse cloze is the same, so both yield the same query: one of them must be rejected as a
near-duplicate (each has two of gopher's stop words, or quality drops it). The openai generator
asks a scripted chat-completions server on the loopback interface, whose answers for every passage
are one of each kind the filters reject (too short, too long, a copy, a few-shot copy, a repeat,
unfinished): each must be in `pairs` with its reason. The chain stops after synthesize (no training).
"""

from __future__ import annotations

import json

import pytest
import yaml

from refinery.storage import Catalog
from refinery.tasks.synthesize.filters import (
    FILTER_CONSISTENCY, FILTER_COPY, FILTER_NEAR_DUPLICATE, FILTER_REPETITION, FILTER_TOO_LONG, FILTER_TOO_SHORT,
    FILTER_UNFINISHED, REASONS,
)
from refinery.tasks.synthesize.generators.prompts import BUILTIN_SHOTS
from tests.synthesize.chat_endpoint import FakeEndpoint

SHARED = "The central bank raised its main interest rate again on Thursday morning."
SHORT_A = ["Markets fell at the open.", "Traders sold their bonds.", "The pound slipped a bit.",
           "Banks led the fall.", "Mortgage lenders were worried.", "Savers had reason to cheer.",
           "Retailers said it hurts.", "Economists had expected it.", "The governor made no comment.",
           "Prices are still rising.", "Wages lag far behind.", "More rises may follow."]
SHORT_B = ["Shares rallied by noon.", "Exporters said little of note.", "House builders fell back.",
           "The euro was flat.", "Gilts ended the day higher.", "Unions want to see restraint.",
           "Shoppers and savers were glum.", "Ministers kept their counsel.", "Oil prices were steady.",
           "Factories reported weak orders.", "The next meeting is in May.", "Few saw it coming."]

LLM_PASSAGES = 6
# What the scripted server answers for sample k of every passage (its request's seed is k), and the
# reason that candidate gets. The first one's (kept, or filter_consistency) is the base model's call.
SCRIPT = [
    (lambda words: " ".join(words[:3]) + " news update", "stop", None),
    (lambda words: "Query: " + " ".join(words[:3]) + " news update.", "stop", FILTER_NEAR_DUPLICATE),  # a repeat
    (lambda words: "Copper", "stop", FILTER_TOO_SHORT),
    (lambda words: " ".join(f"word{i}" for i in range(20)), "stop", FILTER_TOO_LONG),
    (lambda words: "news news news news news update", "stop", FILTER_REPETITION),
    (lambda words: " ".join(words[:8]), "stop", FILTER_COPY),               # eight words of the passage
    (lambda words: BUILTIN_SHOTS["title"][0].query, "stop", FILTER_COPY),   # a few-shot example
    (lambda words: "copper output rises and then the", "length", FILTER_UNFINISHED),  # cut by the token limit
    (lambda words: "Here is a search query:", "stop", FILTER_TOO_SHORT),    # nothing but a preamble
]
TEXT_REASONS = [reason for _, _, reason in SCRIPT[2:]]  # what the text checks reject, whatever the ranking


def scripted_answer(request: dict) -> tuple[str, str]:
    passage = request["messages"][-1]["content"].split("\n\n")[0].removeprefix("Article: ")
    make, finish, _ = SCRIPT[request["seed"]]
    return make(passage.split()), finish


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
        "synthesize": {"generators": ["inverse_cloze", "openai"], "inverse_cloze_passages": 200,
                       "consistency_top_k": 2, "hard_negatives": True,
                       "passages": LLM_PASSAGES, "candidates_per_passage": len(SCRIPT),
                       "openai": {"model": "scripted", "max_retries": 0}},
        "evaluate": {"encoder": "torch"},
    }
    with FakeEndpoint(scripted_answer) as endpoint:
        config["synthesize"]["openai"]["base_url"] = endpoint.base_url
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
    assert sum(g[FILTER_CONSISTENCY] for g in stats["by_generator"].values()) == rejected[FILTER_CONSISTENCY]


def test_every_llm_sample_is_a_candidate_with_its_reason(synth_run):
    rows = synth_run["q"]("""SELECT doc_id, pair_id, query, kept, reason FROM pairs
                             WHERE run_id = $run AND generator = 'openai'""")
    assert synth_run["stats"]["by_generator"]["openai"]["generated"] == len(rows) == LLM_PASSAGES * len(SCRIPT)
    assert len({r["pair_id"] for r in rows}) == len(rows)  # a repeat is a pair of its own
    by_passage: dict[str, list[dict]] = {}
    for r in rows:
        by_passage.setdefault(r["doc_id"], []).append(r)
    assert len(by_passage) == LLM_PASSAGES
    outcomes = []
    for passage_rows in by_passage.values():
        reasons = [r["reason"] for r in passage_rows]
        assert sorted(r for r in reasons if r in TEXT_REASONS) == sorted(TEXT_REASONS)
        # the first sample and its repeat: kept once, or both not ranked high enough
        first, repeat = (r for r in passage_rows if r["reason"] not in TEXT_REASONS)
        assert first["query"] == repeat["query"]
        outcome = sorted(r["reason"] or "kept" for r in (first, repeat))
        assert outcome in (["filter_near_duplicate", "kept"], [FILTER_CONSISTENCY] * 2), outcome
        outcomes.append(outcome)
    assert ["filter_near_duplicate", "kept"] in outcomes


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
    assert {model for model, _ in got} == {"inverse_cloze", "openai", "all"}
