"""The data map of the training pairs (tasks/train/cartography.py): regions of confidence series, the
confidence of a pair among its rivals, the map recorded by a real (tiny) training and kept across a
resume, its rows in SQL, and a later training leaving out the pairs a map put in hard_to_learn.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from refinery.storage import Catalog, read_shard, write_shard
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.cartography import AMBIGUOUS, EASY, HARD, confidences, plan_map, regions, summarize
from refinery.tasks.train.checkpoint import fingerprint, load_checkpoint
from refinery.tasks.train.config import CartographyConfig, TrainConfig
from refinery.tasks.train.finetune import fine_tune, plan_training, read_training_stats
from tests.train.training_data import article_pairs

MAP = CartographyConfig(enabled=True, pairs=12, candidates=5)
CFG = TrainConfig(batch_size=4, mini_batch_size=2, max_seq_length=32, epochs=2, learning_rate=1e-4,
                  warmup_ratio=0.0, dev_fraction=0.25, dev_min_pairs=4, eval_every=2, checkpoint_every=2,
                  cartography=MAP)


def test_regions_of_crafted_confidence_series():
    # rows: checkpoints; columns: five pairs
    series = [[0.90, 0.05, 0.10, 0.20, 0.00],
              [0.95, 0.10, 0.50, 0.20, 0.30],
              [1.00, 0.15, 0.90, 0.20, 0.30]]
    correct = [[True, False, False, False, False],
               [True, False, True, False, False],
               [True, False, True, False, True]]
    conf, var, corr = summarize(series, correct)
    assert conf == pytest.approx([0.95, 0.10, 0.50, 0.20, 0.20])
    assert var == pytest.approx([0.0408248, 0.0408248, 0.3265986, 0.0, 0.1414214])
    assert corr == pytest.approx([1.0, 0.0, 2 / 3, 0.0, 1 / 3])
    defaults = CartographyConfig()  # hard: confidence < 0.25 and variability < 0.15; ambiguous: variability >= 0.15
    assert regions(conf, var, defaults) == [EASY, HARD, AMBIGUOUS, HARD, HARD]
    # the thresholds are the config's: a lower confidence bar frees pair 3, a lower variability bar makes 4 ambiguous
    assert regions(conf, var, CartographyConfig(hard_max_confidence=0.15, ambiguous_min_variability=0.1)) == [
        EASY, HARD, AMBIGUOUS, EASY, AMBIGUOUS]


def test_confidence_is_the_positives_softmax_probability_among_its_rivals():
    queries = np.array([[1.0, 0.0], [0.8, 0.6]])
    positives = np.array([[1.0, 0.0], [0.0, 1.0]])
    negatives = {0: np.array([0.6, 0.8])}  # pair 0's hard negative; pair 1 has none
    probs, first = confidences(queries, positives, negatives, [[1], [0]], scale=1.0)
    # pair 0: cosines 1 (own), 0 (pair 1's positive), 0.6 (negative); pair 1: 0.6 (own), 0.8 (pair 0's positive)
    assert probs == pytest.approx([math.e / (math.e + 1 + math.exp(0.6)), math.exp(0.6) / (math.exp(0.6) + math.exp(0.8))])
    assert first == [True, False]
    # the training scale sharpens it
    sharp, _ = confidences(queries, positives, negatives, [[1], [0]], scale=20.0)
    assert sharp[0] == pytest.approx(1 / (1 + math.exp(-20) + math.exp(-8)))


def test_the_mapped_pairs_are_a_seeded_sample_each_against_pairs_that_could_share_its_batch():
    examples = [TrainPair(f"q{i}", f"passage {i}", doc_id=f"d{i % 6}", pair_id=f"p{i}") for i in range(18)]
    examples += [TrainPair("same query", f"other {i}", doc_id=f"e{i}", pair_id=f"s{i}") for i in range(3)]
    cfg = CartographyConfig(enabled=True, pairs=15, candidates=4)
    plan = plan_map(examples, cfg, seed=1)
    assert len(plan.pairs) == 15 and plan == plan_map(examples, cfg, seed=1)
    assert [ex.pair_id for ex in plan.pairs] == [ex.pair_id for ex in examples if ex in plan.pairs]  # in order
    for ex, group in zip(plan.pairs, plan.groups):
        rivals = [plan.pairs[j] for j in group]
        assert len(group) == 4 and ex not in rivals
        assert all(r.doc_id != ex.doc_id and r.query != ex.query for r in rivals)
    assert plan_map(examples, cfg, seed=2) != plan


@pytest.fixture(scope="module")
def named_pairs(pairs):
    return [replace(p, pair_id=f"pair{i}") for i, p in enumerate(pairs)]


@pytest.fixture(scope="module")
def mapped(tiny_base, named_pairs, tmp_path_factory):
    """An uninterrupted tiny training with the data map on, and its stats."""
    root = tmp_path_factory.mktemp("mapped")
    out = fine_tune(named_pairs, base_path=tiny_base, out_dir=root / "model", cfg=CFG,
                    checkpoint_dir=root / "checkpoint", show_progress=False)
    return read_training_stats(out)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_training_maps_its_pairs_at_each_dev_scoring_and_confidence_rises_for_pairs_it_learns(mapped, named_pairs):
    record = mapped["cartography"]
    # the map is scored where the dev split is: the starting model, every eval_every steps, the last step
    assert record["steps"] == [p["step"] for p in mapped["dev"]] == [0, *range(2, mapped["steps"], 2), mapped["steps"]]
    assert len(record["steps"]) >= 4
    plan = plan_training(named_pairs, CFG)
    trained = {ex.pair_id for ex in plan.train}
    assert len(record["pair_ids"]) == min(MAP.pairs, len(plan.train)) and set(record["pair_ids"]) <= trained
    first, last = np.array(record["confidence"][0]), np.array(record["confidence"][-1])
    # two passes over the pairs: the model grows surer of the pairs it trains on
    assert last.mean() > first.mean() + 0.05
    assert (last > first).sum() >= 0.75 * len(first)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_resumed_training_keeps_the_map_of_the_steps_before_its_checkpoint(mapped, tiny_base, named_pairs, tmp_path):
    class Killed(Exception):
        pass

    def die_at_3(step, loss):
        if step == 3:
            raise Killed

    out, ckpt = tmp_path / "model", tmp_path / "checkpoint"
    with pytest.raises(Killed):
        fine_tune(named_pairs, base_path=tiny_base, out_dir=out, cfg=CFG, checkpoint_dir=ckpt, show_progress=False,
                  on_step=die_at_3)
    state = load_checkpoint(ckpt, fingerprint(named_pairs, CFG, tiny_base))
    assert state["step"] == 2 and state["cartography"]["steps"] == [0, 2]
    stats = read_training_stats(fine_tune(named_pairs, base_path=tiny_base, out_dir=out, cfg=CFG, checkpoint_dir=ckpt,
                                          show_progress=False))
    assert stats["resumed_from_step"] == 2
    ref, got = mapped["cartography"], stats["cartography"]
    assert got["steps"] == ref["steps"] and got["pair_ids"] == ref["pair_ids"]
    assert np.array(got["confidence"]) == pytest.approx(np.array(ref["confidence"]), abs=1e-4)


def _pairs_shard(articles, path):
    pairs = article_pairs(articles)
    n_docs = len(articles)
    rows = [{"pair_id": f"pair{i}", "doc_id": p.doc_id, "query": p.query, "positive": p.positive, "kept": True,
             "split": "train", "negative_doc_id": f"doc{(int(p.doc_id[3:]) + 1) % n_docs}"}
            for i, p in enumerate(pairs)]
    corpus = write_shard(pa.table({"doc_id": [f"doc{i}" for i in range(n_docs)], "text": [b for _, b in articles]}),
                         path / "corpus.parquet")
    return write_shard(pa.Table.from_pylist(rows), path / "pairs.parquet"), str(corpus), rows


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_train_task_leaves_out_mapped_hard_pairs_and_the_catalog_holds_the_map_and_the_drops(
        tiny_base, bbc_articles, tmp_path):
    from refinery.tasks.train.shard_tasks import train_model
    from refinery.tasks.train.summary import training_artifacts

    pairs_path, corpus, rows = _pairs_shard(bbc_articles, tmp_path)
    cfg = CFG.model_copy(update={"epochs": 1, "batch_size": 8, "checkpoint_every": None,
                                 "cartography": MAP.model_copy(update={"drop_hard_to_learn": True})})
    # pair3 and pair8 were hard in night1's map; "elsewhere" is a pair this night does not read
    hard = {"pair3": "night1", "pair8": "night1", "elsewhere": "night1"}
    stats = train_model(pairs_path, [corpus], str(tiny_base), tmp_path / "model", cfg, hard_to_learn=hard)
    carto = stats["cartography"]
    assert carto["dropped"] == 2 and stats["examples"] == len(rows) - 2
    assert stats["train_pairs"] + stats["dev_pairs"] == len(rows) - 2  # trained on the rest
    assert sum(carto["regions"].values()) == carto["mapped"] == min(MAP.pairs, stats["train_pairs"])
    # what the stage shows in the UI: pairs per region, and those left out
    table = training_artifacts("night2", stats)["training-data-map"]["table"]
    assert {r["region"]: r["pairs"] for r in table} == {
        **carto["regions"], "left out (hard_to_learn in an earlier map)": 2}

    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    assert catalog.put_pair_drops("night2", "train", carto["drops_path"]) == 2
    assert catalog.put_pair_map("night2", carto["map_path"]) == carto["mapped"]
    dropped = catalog.query("SELECT pair_id, doc_id, stage, decided_in FROM pair_drops "
                            "WHERE reason = 'cartography' ORDER BY pair_id").to_pylist()
    assert dropped == [{"pair_id": "pair3", "doc_id": rows[3]["doc_id"], "stage": "train", "decided_in": "night1"},
                       {"pair_id": "pair8", "doc_id": rows[8]["doc_id"], "stage": "train", "decided_in": "night1"}]
    mapped = catalog.query("SELECT * FROM pair_map WHERE run_id = 'night2'").to_pylist()
    assert not {"pair3", "pair8"} & {r["pair_id"] for r in mapped}  # left out: neither trained on nor mapped
    assert {r["checkpoints"] for r in mapped} == {carto["checkpoints"]} and carto["checkpoints"] >= 2
    assert all(r["region"] in (EASY, AMBIGUOUS, HARD) and 0 <= r["confidence"] <= 1 for r in mapped)
    assert {r["doc_id"] for r in mapped} <= {r["doc_id"] for r in rows}
    # a rerun without anything to drop replaces the drops with none
    assert catalog.put_pair_drops("night2", "train", None) == 0
    assert catalog.query("SELECT count(*) AS n FROM pair_drops").to_pylist() == [{"n": 0}]


def test_the_latest_map_before_a_run_decides_a_pairs_region(tmp_path):
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    maps = {"night1": {"p1": HARD, "p2": EASY, "p3": HARD},
            "night2": {"p1": EASY, "p2": HARD},
            "night3": {"p3": EASY}}
    for run_id, regions_of in maps.items():  # started in this order
        catalog.start_run(run_id, config={}, run_dir=tmp_path / run_id)
        table = pa.table({"pair_id": list(regions_of), "region": list(regions_of.values())})
        catalog.put_pair_map(run_id, str(write_shard(table, tmp_path / f"{run_id}.parquet")))
    # night3 follows night2's map for p1 and p2 and night1's for p3 (its own map is not earlier)
    assert catalog.latest_map_region("night3", HARD) == {"p2": "night2", "p3": "night1"}
    # night2, resumed: only night1's map was made before it started
    assert catalog.latest_map_region("night2", HARD) == {"p1": "night1", "p3": "night1"}
    assert catalog.latest_map_region("night2", EASY) == {"p2": "night1"}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_night_leaves_out_the_replayed_pairs_an_earlier_nights_map_found_hard(tiny_base, bbc_articles, tmp_path):
    """The nightly path: night 2 replays night 1's pairs (`train.replay_ratio`); those night 1's map put
    in hard_to_learn are left out, the rest of the replay and all of night 2's own pairs train."""
    from refinery.tasks.train.shard_tasks import train_model

    _, corpus, rows = _pairs_shard(bbc_articles, tmp_path)
    half = len(rows) // 2
    night1 = write_shard(pa.Table.from_pylist(rows[:half]), tmp_path / "night1.parquet")
    night2 = write_shard(pa.Table.from_pylist(rows[half:]), tmp_path / "night2.parquet")
    cfg = CFG.model_copy(update={"epochs": 1, "batch_size": 8, "checkpoint_every": None, "replay_ratio": 1.0,
                                 "cartography": CartographyConfig(drop_hard_to_learn=True)})
    stats = train_model(night2, [corpus], str(tiny_base), tmp_path / "model", cfg, replay=[str(night1)],
                        hard_to_learn={"pair1": "night1", "pair4": "night1"})
    assert stats["replay"]["replayed"] == half and stats["cartography"]["dropped"] == 2
    assert stats["examples"] == len(rows) - 2
    dropped = read_shard(stats["cartography"]["drops_path"]).to_pylist()
    assert sorted((r["pair_id"], r["reason"], r["decided_in"]) for r in dropped) == [
        ("pair1", "cartography", "night1"), ("pair4", "cartography", "night1")]
    assert "map_path" not in stats["cartography"]  # night 2 draws no map of its own
