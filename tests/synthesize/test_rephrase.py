"""Rephrasing (WRAP, tasks/synthesize/rephrase.py): passages rewritten in styles by a scripted
chat-completions server on the loopback interface, stored as derived documents linked to their
originals (`rephrasings`, every failed attempt with its reason), read as passages by the query
generators, judged by the filters against their originals; diversity figures on crafted texts."""

from __future__ import annotations

import gzip
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.flows.rephrase import rephrase
from refinery.storage import Catalog, write_shard
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.embedding_tasks import embed_shard
from refinery.tasks.synthesize.config import BUILTIN_REPHRASE_STYLES, SynthesizeConfig
from refinery.tasks.synthesize.diversity import text_diversity
from refinery.tasks.synthesize.filters import FILTER_CONSISTENCY, REPHRASE_HELDOUT
from refinery.tasks.synthesize.rephrase import (
    REPHRASE_COPY, REPHRASE_EMPTY, REPHRASE_UNFINISHED, diversity_rows, rephrase_passages, rephrase_slices,
    rephrased_passages,
)
from refinery.tasks.synthesize.shard_tasks import CANDIDATE_SCHEMA, filter_pairs, generate_candidates
from refinery.tasks.synthesize.split import HELDOUT, TRAIN
from tests.synthesize.chat_endpoint import FakeEndpoint

PASSAGES = {
    "mine": "Shares in the mining group rose sharply on Monday after it reported record copper output for the "
            "year. The company said demand from China had held up better than analysts expected.",
    "tram": "The city council has approved plans for a new tram line linking the airport with the centre. "
            "Work is due to start next spring and should take three years.",
    "orchid": "A rare orchid has been found growing on a roadside verge in Kent, botanists said. "
              "The plant had not been recorded in the county for more than a century.",
}
WIKI = ("The mining group is a company whose share price increased on Monday. It had announced that its copper "
        "production for the year was the highest on record, citing robust demand from China.")
QA = "Question: Why did the mining shares rise?\nAnswer: Because the group reported record copper output."
TRAM_WIKI = "A tram line between the airport and the city centre was approved by the council."
# (passage, style) -> (answer, finish_reason): one of each outcome
SCRIPT = {
    ("mine", "wikipedia"): (f"Here is the paraphrase:\n{WIKI}", "stop"),   # a preamble line to take off
    ("mine", "qa"): (QA, "stop"),
    ("tram", "wikipedia"): (f"{TRAM_WIKI} Construction starts next spring and lasts for", "length"),  # cut back
    ("tram", "qa"): ("Here you go:", "stop"),                               # nothing but a preamble
    ("orchid", "wikipedia"): (PASSAGES["orchid"].split(". ")[0] + ".", "stop"),  # an echo of the original
    ("orchid", "qa"): ("Question: Where was the orchid found and by whom was it", "length"),  # no sentence ended
}


def scripted(request: dict) -> tuple[str, str]:
    prompt = request["messages"][-1]["content"]
    passage = next(k for k, text in PASSAGES.items() if text[:40] in prompt)
    style = next(s for s, instruction in BUILTIN_REPHRASE_STYLES.items() if prompt.startswith(instruction))
    return SCRIPT[(passage, style)]


@pytest.fixture()
def endpoint():
    with FakeEndpoint(scripted) as e:
        yield e


def config(endpoint: FakeEndpoint, **rephrase) -> SynthesizeConfig:
    return SynthesizeConfig(generators=["inverse_cloze"], min_sentence_words=4, openai={
        "model": "scripted", "base_url": endpoint.base_url, "max_retries": 0},
        rephrase={"styles": ["wikipedia", "qa"], "generator": "openai", **rephrase})


def passages_shard(root) -> str:
    return str(write_shard(pa.table({"doc_id": list(PASSAGES), "text": list(PASSAGES.values())}),
                           root / "passages-abc.parquet"))


def test_rephrasings_are_stored_linked_to_their_originals_each_failure_with_its_reason(endpoint, tmp_path):
    cfg = config(endpoint)
    shard = rephrase_passages(passages_shard(tmp_path), 0, 3, cfg, tmp_path, tmp_path / "cache")
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    assert catalog.put_rephrasings("r1", [shard]) == 6

    rows = catalog.query("""SELECT doc_id, original_doc_id, style, generator, kept, reason, text FROM rephrasings
                            WHERE run_id = 'r1' ORDER BY doc_id""").to_pylist()
    assert [(r["doc_id"], r["original_doc_id"], r["style"], r["generator"], r["kept"], r["reason"]) for r in rows] == [
        ("mine#wrap-qa", "mine", "qa", "openai", True, None),
        ("mine#wrap-wikipedia", "mine", "wikipedia", "openai", True, None),
        ("orchid#wrap-qa", "orchid", "qa", "openai", False, REPHRASE_UNFINISHED),
        ("orchid#wrap-wikipedia", "orchid", "wikipedia", "openai", False, REPHRASE_COPY),
        ("tram#wrap-qa", "tram", "qa", "openai", False, REPHRASE_EMPTY),
        ("tram#wrap-wikipedia", "tram", "wikipedia", "openai", True, None),
    ]
    text = {r["doc_id"]: r["text"] for r in rows}
    assert text["mine#wrap-wikipedia"] == WIKI                  # the preamble line is off
    assert text["mine#wrap-qa"] == QA
    assert text["tram#wrap-wikipedia"] == TRAM_WIKI              # cut after its last complete sentence
    # a rephrasing is a long text, not a one-line query: no stop at a line break, its own token limit
    assert {r.get("stop") for r in endpoint.requests} == {None}
    assert {r["max_tokens"] for r in endpoint.requests} == {cfg.rephrase.max_new_tokens}
    # each answer is cached: a new task on the same passages asks nothing again
    asked = len(endpoint.requests)
    (tmp_path / "again").mkdir()
    rephrase_passages(passages_shard(tmp_path), 0, 3, cfg, tmp_path / "again", tmp_path / "cache")
    assert len(endpoint.requests) == asked


def test_kept_rephrasings_become_passages_the_generators_read(endpoint, tmp_path):
    cfg = config(endpoint)
    passages = passages_shard(tmp_path)
    shard = rephrase_passages(passages, 0, 3, cfg, tmp_path, tmp_path / "cache")
    stats = rephrased_passages([shard], passages, 3, cfg, tmp_path)

    assert stats["docs"] == 3
    assert stats["by_style"] == {
        "wikipedia": {"attempted": 3, "kept": 2, REPHRASE_EMPTY: 0, REPHRASE_UNFINISHED: 0, REPHRASE_COPY: 1},
        "qa": {"attempted": 3, "kept": 1, REPHRASE_EMPTY: 1, REPHRASE_UNFINISHED: 1, REPHRASE_COPY: 0},
    }
    table = pq.read_table(stats["path"]).to_pylist()
    assert sorted((r["doc_id"], r["original_doc_id"]) for r in table) == [
        ("mine#wrap-qa", "mine"), ("mine#wrap-wikipedia", "mine"), ("tram#wrap-wikipedia", "tram")]

    # a query generator reads them like any passages: its pairs are of the derived documents
    cands = pq.read_table(generate_candidates(Path(stats["path"]), 0, 3, "inverse_cloze", cfg, tmp_path, tmp_path)).to_pylist()
    assert {c["doc_id"] for c in cands} <= {"mine#wrap-qa", "mine#wrap-wikipedia", "tram#wrap-wikipedia"}
    assert any(c["doc_id"] == "mine#wrap-wikipedia" and c["query"] in WIKI and c["positive"] in WIKI for c in cands)

    # without as_passages they are only recorded
    off = rephrased_passages([shard], passages, 3, config(endpoint, as_passages=False), tmp_path)
    assert (off["path"], off["docs"]) == (None, 0)


def test_no_styles_no_rephrasing(tmp_path):
    cfg = SynthesizeConfig()
    assert cfg.rephrase.styles == [] and rephrase_slices(cfg, 100) == []
    # the flow's step submits nothing and writes nothing (a run without a catalog would fail if it did)
    assert rephrase(SimpleNamespace(catalog=None, run_id="r"), cfg, tmp_path / "passages.parquet", 100, tmp_path,
                    []) is None
    assert diversity_rows(None) == []
    assert list(tmp_path.iterdir()) == []


def test_rephrase_slices_take_only_training_passages():
    cfg = SynthesizeConfig(rephrase={"styles": ["qa"], "documents": 20})
    assert rephrase_slices(cfg, 100) == [(0, 8), (8, 16), (16, 20)]
    assert rephrase_slices(cfg, 10) == [(0, 8), (8, 10)]


def test_a_style_needs_an_instruction_unless_built_in():
    with pytest.raises(ValueError, match=r"needs an instruction; built in: \['qa', 'wikipedia'\]"):
        SynthesizeConfig(rephrase={"styles": ["toddler"]})
    cfg = SynthesizeConfig(rephrase={"styles": ["qa", {"name": "toddler", "instruction": "Explain it to a child."}]})
    assert [s.prompt for s in cfg.rephrase.styles] == [BUILTIN_REPHRASE_STYLES["qa"], "Explain it to a child."]
    with pytest.raises(ValueError, match="distinct names"):
        SynthesizeConfig(rephrase={"styles": ["qa", "qa"]})
    with pytest.raises(ValueError, match="rephrase.generator openai needs synthesize.openai.model"):
        SynthesizeConfig(rephrase={"styles": ["qa"], "generator": "openai"})


def test_text_diversity_of_crafted_texts():
    stats = text_diversity(["the cat sat", "the cat ran"])
    # words: the cat sat the cat ran -> 4 distinct of 6; bigrams: the-cat, cat-sat, the-cat, cat-ran -> 3 of 4
    assert stats["distinct_1"] == pytest.approx(4 / 6)
    assert stats["distinct_2"] == pytest.approx(3 / 4)
    # word sets {the, cat, sat} and {the, cat, ran}: 2 shared of 4
    assert stats["self_jaccard"] == pytest.approx(2 / 4)
    assert stats["mean_words"] == 3.0
    raw = b"the cat sat\nthe cat ran"
    assert stats["compression_ratio"] == pytest.approx(len(raw) / len(gzip.compress(raw, mtime=0)))
    # the same sentence forty times compresses far better than forty different ones
    same = text_diversity(["the central bank raised its main interest rate"] * 40)
    varied = text_diversity([f"report {i}: {w} prices moved by {i * 7 % 13} points in week {i}"
                             for i, w in enumerate(["oil", "gas", "gold", "corn"] * 10)])
    assert same["compression_ratio"] > 3 * varied["compression_ratio"]
    assert same["distinct_1"] == pytest.approx(8 / 320) and same["self_jaccard"] == 1.0
    assert text_diversity([]) == {"distinct_1": 0.0, "distinct_2": 0.0, "self_jaccard": 0.0, "mean_words": 0.0,
                                  "compression_ratio": 0.0}


def test_diversity_rows_are_metrics_of_the_rephrasings_task():
    stats = {"diversity": {"originals": {"distinct_1": 0.5}, "qa": {"distinct_1": 0.25, "mean_words": 40.0}}}
    assert diversity_rows(stats) == [("originals", "rephrasings", "distinct_1", 0.5),
                                     ("qa", "rephrasings", "distinct_1", 0.25),
                                     ("qa", "rephrasings", "mean_words", 40.0)]


# -- the filters judge a rephrased passage's candidates against its original ------------------------

POOL = {
    "mine": PASSAGES["mine"],
    "tram": PASSAGES["tram"],
    "football": "The striker scored twice in the second half as the home side came from behind to win.",
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("rephrase-pool")
    shard = write_shard(pa.table({"doc_id": list(POOL), "text": list(POOL.values())}), root / "pool.parquet")
    return root, [embed_shard(shard, model_path=str(BASE_MODEL_PATH), model_name="base", out_dir=root / "emb")]


def filter_rephrased(pool, name: str, **kwargs) -> tuple[dict, dict]:
    root, embeddings = pool
    out = root / name
    out.mkdir()
    rephrased = write_shard(pa.table({"doc_id": ["mine#wrap-wikipedia"], "text": [WIKI],
                                      "original_doc_id": ["mine"]}), out / "passages-rephrased.parquet")
    rows = [("mine", "record copper output at the mining group", PASSAGES["mine"]),
            ("mine#wrap-wikipedia", "why did the mining company's shares rise", WIKI),
            ("mine#wrap-wikipedia", "who won the football match", WIKI),
            ("tram", "new tram line to the airport", PASSAGES["tram"])]
    cands = write_shard(pa.Table.from_pylist(
        [{"doc_id": d, "query": q, "positive": p, "generator": "openai", "prompt_id": "question_v2",
          "style": "question", "attributes": None, "unfinished": False} for d, q, p in rows],
        schema=CANDIDATE_SCHEMA), out / "candidates.parquet")
    cfg = SynthesizeConfig(consistency_top_k=1, hard_negatives=False, max_pairs_per_passage=2)
    stats = filter_pairs([str(cands)], embeddings, cfg, out, rephrased_passages=str(rephrased), **kwargs)
    return stats, {r["query"]: r for r in pq.read_table(stats["pairs_path"]).to_pylist()}


def test_a_rephrased_passage_pair_counts_its_original_as_the_hit(pool):
    stats, pairs = filter_rephrased(pool, "train")
    wiki = pairs["why did the mining company's shares rise"]
    assert (wiki["doc_id"], wiki["kept"], wiki["rank"], wiki["positive"]) == ("mine#wrap-wikipedia", True, 1, WIKI)
    assert wiki["original_doc_id"] == "mine" and pairs["new tram line to the airport"]["original_doc_id"] is None
    # a query about something neither says does not find the original
    off = pairs["who won the football match"]
    assert (off["kept"], off["reason"]) == (False, FILTER_CONSISTENCY)
    assert pairs["record copper output at the mining group"]["kept"]
    assert stats["kept"] == 3 and stats["dropped"][REPHRASE_HELDOUT] == 0


def test_a_rephrasing_of_a_held_out_passage_is_neither_trained_nor_evaluated(pool):
    stats, pairs = filter_rephrased(pool, "heldout", heldout_docs=["mine"])
    original = pairs["record copper output at the mining group"]
    assert (original["kept"], original["split"]) == (True, HELDOUT)
    wiki = pairs["why did the mining company's shares rise"]
    assert (wiki["kept"], wiki["reason"], wiki["split"]) == (False, REPHRASE_HELDOUT, HELDOUT)
    assert pairs["new tram line to the airport"]["split"] == TRAIN
    assert stats["dropped"][REPHRASE_HELDOUT] == 1 and stats["heldout_pairs"] == 1


def test_a_rephrased_pair_trains_as_its_original_document(tmp_path):
    from refinery.tasks.train.shard_tasks import _replay_sample

    corpus = str(write_shard(pa.table({"doc_id": ["mine", "tram"], "text": [PASSAGES["mine"], PASSAGES["tram"]]}),
                             tmp_path / "corpus.parquet"))
    night = str(write_shard(pa.table({
        "query": ["why did the mining shares rise", "copper output record", "orchid in kent"],
        "positive": [WIKI, PASSAGES["mine"], "An orchid was found."],
        "doc_id": ["mine#wrap-wikipedia", "mine", "orchid#wrap-wikipedia"],
        "original_doc_id": ["mine", None, "orchid"],
        "negative_doc_id": [None, None, None], "kept": [True, True, True], "split": ["train"] * 3,
    }), tmp_path / "pairs.parquet"))
    out = _replay_sample([night], set(), [corpus], n=10, seed=0)
    # its document is the original's (one unit of the dev split and the batches), so a later night
    # replays it while the original is in the corpus, and leaves it out once the original is retired
    assert sorted(zip(out["pairs"].column("query").to_pylist(), out["pairs"].column("doc_id").to_pylist())) == [
        ("copper output record", "mine"), ("why did the mining shares rise", "mine")]
    assert out["retired"] == 1
