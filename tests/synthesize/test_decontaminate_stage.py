"""Decontamination in the synthesize stage: filter_pairs on hand-made candidates (user queries,
held-out pairs), and the whole chain up to synthesize with a user query set and headline titles
(slow: Prefect, Dask, DuckDB). A contaminated candidate is in `pairs` with `kept` false and reason
`decontaminated`, and the stage's stats count it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from refinery.storage import write_shard
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.embedding_tasks import embed_shard
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.filters import DECONTAMINATED
from refinery.tasks.synthesize.plan import decontamination_summary
from refinery.tasks.synthesize.shard_tasks import CANDIDATE_SCHEMA, filter_pairs
from refinery.tasks.synthesize.split import HELDOUT, TRAIN

# Two articles quoting the same 13-word sentence, a third unrelated.
SHARED = "The central bank raised its main interest rate again on Thursday morning in London."
DOCS = {
    "a": f"{SHARED} Mortgage lenders warned that repayments would climb for millions of households this year.",
    "b": f"Exporters said a stronger pound would hurt their sales abroad. {SHARED}",
    "c": "The striker scored twice in the second half as the home side came from behind to win.",
}
# inverse-cloze style: a sentence of the passage, the rest the positive
CANDIDATES = [
    ("a", SHARED, DOCS["a"].removeprefix(SHARED + " ")),
    ("b", "Exporters said a stronger pound would hurt their sales abroad.", SHARED),
    ("c", "The striker scored twice in the second half as the home side came from behind to win.",
     "A late goal sealed it."),
]


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("decontaminate")
    pool = write_shard(pa.table({"doc_id": list(DOCS), "text": list(DOCS.values())}), root / "pool.parquet")
    embeddings = embed_shard(pool, model_path=str(BASE_MODEL_PATH), model_name="base", out_dir=root / "emb")

    def candidates(rows) -> str:
        table = pa.Table.from_pylist(
            [{"doc_id": d, "query": q, "positive": p, "generator": "inverse_cloze", "prompt_id": "inverse_cloze_v1",
              "style": "sentence", "attributes": None, "unfinished": False} for d, q, p in rows],
            schema=CANDIDATE_SCHEMA)
        return str(write_shard(table, root / f"candidates-{len(list(root.glob('candidates-*')))}.parquet"))

    return {"root": root, "embeddings": [embeddings], "candidates": candidates}


def run_filter(stage_inputs, rows, name: str, **kwargs):
    cfg = SynthesizeConfig(consistency_top_k=3, hard_negatives=False, **kwargs.pop("cfg", {}))
    out = stage_inputs["root"] / name
    out.mkdir()
    stats = filter_pairs([stage_inputs["candidates"](rows)], stage_inputs["embeddings"], cfg, out, **kwargs)
    table = pa.parquet.read_table(stats["pairs_path"]).to_pylist()
    return stats, {r["doc_id"]: r for r in table}


def evaluation_shard(root: Path, queries: list[str], name: str) -> str:
    return str(write_shard(pa.table({"query": queries}), root / f"{name}.parquet"))


def test_a_training_query_that_is_a_user_query_is_decontaminated_and_counted(stage_inputs):
    # the user's query differs from the extracted sentence in case and punctuation only
    user = evaluation_shard(stage_inputs["root"], ["the striker scored twice in the second half, as the home "
                                                   "side came from behind to WIN"], "mine")
    stats, pairs = run_filter(stage_inputs, CANDIDATES, "user", evaluation_queries={"mine": user})
    assert (pairs["c"]["kept"], pairs["c"]["reason"]) == (False, DECONTAMINATED)
    assert pairs["a"]["reason"] != DECONTAMINATED and pairs["b"]["reason"] != DECONTAMINATED
    assert stats["dropped"][DECONTAMINATED] == 1
    assert stats["by_generator"]["inverse_cloze"][DECONTAMINATED] == 1
    dec = stats["decontamination"]
    assert dec["evaluation_queries"] == {"mine": 1} and dec["by_set"] == {"mine": 1}
    assert dec["by_rule"] == {"query_overlaps_query": 1, "query_quotes_relevant_passage": 0,
                              "passage_contains_query": 0}
    assert dec["examples"] == [{"generator": "inverse_cloze", "doc_id": "c", "query": CANDIDATES[2][1],
                                "rule": "query_overlaps_query", "evaluation_set": "mine",
                                "evaluation_query": "the striker scored twice in the second half, as the home "
                                                    "side came from behind to WIN"}]
    text, examples = decontamination_summary(stats)  # what the report's pairs section shows
    assert text.startswith("**Decontamination**: 1 candidate rejected as `decontaminated` (query_overlaps_query 1), "
                           "checked against the evaluation queries (mine 1).")
    assert [e["query"] for e in examples] == [CANDIDATES[2][1]]


def test_decontaminate_false_keeps_it(stage_inputs):
    user = evaluation_shard(stage_inputs["root"], [CANDIDATES[2][1]], "mine-off")
    stats, pairs = run_filter(stage_inputs, CANDIDATES, "off", evaluation_queries={"mine": user},
                              cfg={"decontaminate": False})
    assert pairs["c"]["reason"] != DECONTAMINATED and stats["dropped"][DECONTAMINATED] == 0


def test_a_training_pair_overlapping_a_held_out_pair_is_decontaminated(stage_inputs):
    # a and b quote the same sentence; one of the two is held out (half of two passages). If b is
    # held out, a's query is a sentence of b's held-out passage (rule b); if a is, its query is in
    # b's training passage (rule c). Either way the other one does not train.
    rows = CANDIDATES[:2]
    stats, pairs = run_filter(stage_inputs, rows, "heldout", heldout_fraction=0.5)
    held = [d for d in "ab" if pairs[d]["split"] == HELDOUT]
    assert len(held) == 1
    train = "b" if held == ["a"] else "a"
    assert pairs[held[0]]["kept"] is True
    assert (pairs[train]["split"], pairs[train]["kept"], pairs[train]["reason"]) == (TRAIN, False, DECONTAMINATED)
    expected_rule = "passage_contains_query" if held == ["a"] else "query_quotes_relevant_passage"
    assert stats["decontamination"]["by_rule"][expected_rule] == 1
    assert stats["decontamination"]["by_set"] == {"synthetic_heldout": 1}
    assert stats["dropped"][DECONTAMINATED] == 1 and stats["train_pairs"] == 0 and stats["heldout_pairs"] == 1


# -- the chain up to synthesize: a user query set and the headline titles -----------------------

# Sentences of under six words: inverse cloze (min_sentence_words 6) only ever picks the long one.
SHORTS = [
    ["Markets fell at the open.", "Traders sold their bonds.", "The pound slipped a bit.", "Banks led the fall.",
     "Lenders were worried.", "Savers had reason to cheer.", "Retailers said it hurts.", "It was expected.",
     "The governor said nothing.", "Prices are still rising.", "Wages lag behind.", "More may follow."],
    ["Shares rallied by noon.", "Exporters said little.", "House builders fell back.", "The euro was flat.",
     "Unions want restraint.", "Shoppers were glum.", "Ministers kept quiet.", "Oil was steady.",
     "Factories reported weak orders.", "The next meeting is in May.", "Few saw it coming.", "Bonds held up."],
    ["The crowd sang loudly.", "Fans queued for hours.", "The coach was pleased.", "The keeper saved twice.",
     "Rain fell all day.", "Tickets sold out fast.", "The captain limped off.", "Referees were busy.",
     "The pitch was heavy.", "Scouts were watching.", "The bus was late.", "Nobody left early."],
]
USER_SENTENCE = "The central bank raised its main interest rate again on Thursday morning."
HEADLINE_SENTENCE = "Fund managers moved money out of equities and into government bonds."
# doc "goal"'s title, five words, quoted in doc "fund"'s body
QUOTED_TITLE = "Late goal seals derby win"


def crafted(root: Path) -> Path:
    rows = [
        {"id": "rates", "title": "Rates up", "text": " ".join([USER_SENTENCE, *SHORTS[0]])},
        {"id": "fund", "title": "Funds move", "text": " ".join([HEADLINE_SENTENCE, f"{QUOTED_TITLE}.", *SHORTS[1]])},
        {"id": "goal", "title": QUOTED_TITLE,
         "text": " ".join(["The home side came from behind to win with a header in added time.", *SHORTS[2]])},
    ]
    path = root / "crafted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_the_stage_decontaminates_against_user_queries_and_titles(tmp_path, prefect_api, dask_address):
    from refinery.flows.nightly import nightly
    from refinery.storage import Catalog

    queries = tmp_path / "mine.jsonl"
    queries.write_text(json.dumps({"query": USER_SENTENCE.upper(), "record_id": "rates"}) + "\n")
    config = {
        "home": str(tmp_path / "home"),
        "stages": ["ingest", "dedup", "quality", "synthesize"],
        "ingest": {"limit": 12, "sources": [{"path": "builtin:bbc"}, {"path": str(crafted(tmp_path)), "name": "crafted"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 200, "consistency_top_k": 20,
                       "hard_negatives": False},
        "evaluate": {"encoder": "torch", "queries": [{"name": "mine", "path": str(queries)}]},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    stats = nightly(config_path=str(path), dask_address=dask_address)
    run_id, synth = stats["run_id"], stats["synthesize"]
    rows = Catalog(tmp_path / "home" / "catalog.duckdb").query(
        "SELECT d.record_id, p.query, p.kept, p.reason FROM pairs p JOIN documents d USING (run_id, doc_id) "
        f"WHERE p.run_id = '{run_id}' AND d.source = 'crafted'").to_pylist()
    by_record = {r["record_id"]: r for r in rows}
    assert by_record["rates"]["query"] == USER_SENTENCE
    assert (by_record["rates"]["kept"], by_record["rates"]["reason"]) == (False, DECONTAMINATED)
    assert by_record["fund"]["query"] == HEADLINE_SENTENCE
    assert (by_record["fund"]["kept"], by_record["fund"]["reason"]) == (False, DECONTAMINATED)
    assert by_record["goal"]["reason"] != DECONTAMINATED
    dec = synth["decontamination"]
    assert dec["evaluation_queries"]["mine"] == 1 and dec["evaluation_queries"]["headline"] >= 3
    assert dec["by_set"] == {"mine": 1, "headline": 1}
    assert dec["by_rule"]["query_overlaps_query"] == 1 and dec["by_rule"]["passage_contains_query"] == 1
    assert synth["dropped"][DECONTAMINATED] == 2 == synth["by_generator"]["inverse_cloze"][DECONTAMINATED]
    report = Path(stats["report"]).read_text()
    assert "**Decontamination**: 2 candidates rejected as `decontaminated`" in report
    assert USER_SENTENCE in report and HEADLINE_SENTENCE in report  # the examples
