"""The train stage's data map through the flow: a run that maps its pairs puts the map in SQL, and a
later run that reads the same pairs with `train.cartography.drop_hard_to_learn` leaves out exactly
those the map put in hard_to_learn (`pair_drops`, reason cartography) and trains on the rest.

Two real train stages (the packaged model, a few steps at 32 tokens) on a hand-written pairs shard
of BBC articles, as a run that reuses another's synthesis reads it.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from refinery.storage import write_shard
from refinery.tasks.config import parse_config
from refinery.tasks.runs import RunSpec
from tests.train.training_data import article_pairs

pytestmark = pytest.mark.slow

TRAIN = {"epochs": 1, "batch_size": 8, "max_seq_length": 32, "eval_every": 1, "replay_ratio": 0, "init": "base",
         "dev_fraction": 0.25, "dev_min_pairs": 4, "checkpoint_every": None}


def _spec(root, run_id: str, cartography: dict) -> RunSpec:
    config = parse_config({"home": str(root / "home"), "train": TRAIN | {"cartography": cartography}}, "a test")
    return RunSpec(run_id=run_id, home=str(root / "home"), config=config)


def test_a_later_training_leaves_out_the_pairs_the_latest_map_found_hard(tmp_path, bbc_articles, prefect_api):
    from refinery.flows.train import train_flow

    pairs = article_pairs(bbc_articles)
    rows = [{"pair_id": f"pair{i}", "doc_id": p.doc_id, "query": p.query, "positive": p.positive, "kept": True,
             "split": "train", "negative_doc_id": None} for i, p in enumerate(pairs)]
    synthesize = {"pairs_path": str(write_shard(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet"))}
    corpus = write_shard(pa.table({"doc_id": [p.doc_id for p in pairs], "text": [p.positive for p in pairs]}),
                         tmp_path / "corpus.parquet")
    quality = {"corpus_shards": [str(corpus)]}

    # night 1 maps 12 pairs; a high confidence bar puts some of them in hard_to_learn
    night1 = _spec(tmp_path, "night1", {"enabled": True, "pairs": 12, "candidates": 5, "hard_max_confidence": 0.9})
    catalog = night1.catalog.ensure_schema()
    catalog.start_run("night1", config={}, run_dir=night1.run_dir)
    first = train_flow(night1, quality, synthesize)
    regions = {r["pair_id"]: r["region"] for r in catalog.query(
        "SELECT pair_id, region FROM pair_map WHERE run_id = 'night1'").to_pylist()}
    assert len(regions) == first["cartography"]["mapped"] == 12
    assert sum(first["cartography"]["regions"].values()) == 12
    hard = {p for p, r in regions.items() if r == "hard_to_learn"}
    assert 0 < len(hard) < len(rows)

    night2 = _spec(tmp_path, "night2", {"drop_hard_to_learn": True})
    catalog.start_run("night2", config={}, run_dir=night2.run_dir)
    second = train_flow(night2, quality, synthesize)
    dropped = catalog.query("SELECT pair_id, decided_in FROM pair_drops WHERE run_id = 'night2' "
                            "AND reason = 'cartography'").to_pylist()
    assert {r["pair_id"] for r in dropped} == hard and {r["decided_in"] for r in dropped} == {"night1"}
    assert second["examples"] == len(rows) - len(hard) and second["model_path"]
    assert second["train_pairs"] + second["dev_pairs"] == len(rows) - len(hard)
    # night 2 made no map of its own: a third night would still follow night 1's
    assert catalog.query("SELECT count(*) AS n FROM pair_map WHERE run_id = 'night2'").to_pylist() == [{"n": 0}]
