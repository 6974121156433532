"""The promotion gate's rule, the catalog's record of it, and the replay sample of earlier pairs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from refinery.storage import Catalog, write_shard
from refinery.tasks.train.config import PromotionConfig
from refinery.tasks.train.promotion import gate

CFG = PromotionConfig()  # point estimate >= 0, lower bound > -0.005


def _evaluation(**tuned_by_task: dict) -> dict:
    return {"tasks": list(tuned_by_task), "by_task": {t: {"metrics": {"tuned": m}} for t, m in tuned_by_task.items()}}


def _vs(name: str, delta: float, low: float, high: float) -> dict:
    key = f"ndcg@10_{name}"
    return {key: delta, f"{key}_ci_low": low, f"{key}_ci_high": high}


@pytest.mark.parametrize(("delta", "low", "promote"), [
    (0.02, 0.004, True),      # better, clearly
    (0.0, -0.004, True),      # a tie within noise: not worse
    (-0.001, -0.004, False),  # worse by the point estimate
    (0.003, -0.006, False),   # the interval reaches a likely loss
])
def test_the_gate_promotes_exactly_what_is_not_worse(delta, low, promote):
    decision = gate(_evaluation(mine=_vs("vs_promoted", delta, low, 0.03)), compared_with="promoted", cfg=CFG)
    assert decision["promote"] is promote
    assert decision["task"] == "mine" and decision["delta"] == delta and decision["ci_low"] == low
    assert decision["reason"].startswith("promoted" if promote else "kept as a candidate")


def test_the_first_night_is_compared_with_the_base_model_and_the_first_scored_task_decides():
    evaluation = _evaluation(empty={}, headline={**_vs("delta", 0.01, 0.001, 0.02), **_vs("vs_bm25", -0.5, -0.6, -0.4)})
    decision = gate(evaluation, compared_with="base", cfg=CFG)
    assert decision["promote"] and decision["task"] == "headline" and decision["delta"] == 0.01
    # the promoted comparison is not taken from the base one
    refused = gate(evaluation, compared_with="promoted", cfg=CFG)
    assert not refused["promote"] and refused["task"] is None and "no paired interval" in refused["reason"]


def test_the_thresholds_are_the_configs():
    evaluation = _evaluation(t=_vs("delta", 0.01, 0.001, 0.02))
    assert not gate(evaluation, compared_with="base", cfg=PromotionConfig(min_delta=0.02))["promote"]
    assert not gate(evaluation, compared_with="base", cfg=PromotionConfig(min_ci_low=0.001))["promote"]
    assert gate(evaluation, compared_with="base", cfg=PromotionConfig(min_ci_low=0.0009))["promote"]


def test_the_catalog_keeps_the_latest_promoted_model_of_each_dataset(tmp_path):
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    for run in ("r1", "r2", "r3", "other"):
        catalog.put_model(run, "tuned", f"/models/{run}", base="b")
    assert catalog.promoted_model("ds") is None
    catalog.decide_model("r1", "ds", promoted=True, gate={"reason": "first"})
    catalog.decide_model("r2", "ds", promoted=False, gate={"reason": "worse"})
    catalog.decide_model("other", "ds2", promoted=True, gate={"reason": "elsewhere"})
    assert catalog.promoted_model("ds")["run_id"] == "r1"
    catalog.decide_model("r3", "ds", promoted=True, gate={"reason": "better"})
    assert catalog.promoted_model("ds")["run_id"] == "r3" and catalog.promoted_model("ds")["gate"]["reason"] == "better"
    assert [(r["run_id"], r["promoted"]) for r in catalog.model_rows("ds")] == [("r1", True), ("r2", False), ("r3", True)]
    with pytest.raises(ValueError, match="no tuned model"):
        catalog.decide_model("missing", "ds", promoted=True, gate={})


def _pairs(path, rows):
    cols = ("query", "positive", "doc_id", "negative_doc_id", "kept", "split")
    return str(write_shard(pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)}), path))


def test_the_replay_leaves_out_retired_passages_repeated_queries_and_deleted_nights(tmp_path):
    from refinery.tasks.train.shard_tasks import _replay_sample

    corpus = str(write_shard(pa.table({"doc_id": ["a", "b", "c"], "text": ["A", "B", "C"]}), tmp_path / "corpus.parquet"))
    night1 = _pairs(tmp_path / "n1.parquet", [
        ("qa", "pa", "a", None, True, "train"),
        ("qb", "pb", "b", "c", True, "train"),
        ("qgone", "px", "x", None, True, "train"),      # its passage was retired
        ("qnew", "pa", "a", None, True, "train"),       # tonight's pairs ask it again
        ("qheld", "pc", "c", None, True, "heldout"),    # held out for evaluation: never trained on
        ("qdrop", "pc", "c", None, False, "train"),     # filtered out
    ])
    out = _replay_sample([night1, str(tmp_path / "deleted.parquet")], {"qnew"}, [corpus], n=10, seed=0)
    assert sorted(out["pairs"].column("query").to_pylist()) == ["qa", "qb"]
    assert (out["candidates"], out["replayed"], out["retired"], out["same_query"], out["missing_files"]) == (2, 2, 1, 1, 1)
    one = _replay_sample([night1], {"qnew"}, [corpus], n=1, seed=0)
    assert one["replayed"] == 1 and one["pairs"].num_rows == 1
    assert _replay_sample([night1], set(), [corpus], n=0, seed=0)["pairs"].num_rows == 0


def test_gc_keeps_the_runs_holding_a_datasets_promoted_model(tmp_path):
    from refinery.storage import DataHome
    from refinery.tasks.runs import collect_garbage

    home = DataHome(tmp_path / "home").ensure()
    catalog = Catalog(home.catalog_path).ensure_schema()
    for run in ("r1", "r2", "r3"):
        catalog.start_run(run, config={}, run_dir=home.run_dir(run))
        home.run_dir(run).mkdir(parents=True)
        catalog.finish_run(run, status="completed")
        catalog.put_model(run, "tuned", str(home.run_dir(run) / "train" / "model"), base="b")
    catalog.decide_model("r1", "ds", promoted=True, gate={})
    catalog.decide_model("r2", "ds", promoted=False, gate={})
    catalog.decide_model("r3", "ds", promoted=False, gate={})
    done = collect_garbage(home, keep=1)
    assert sorted(done.kept) == ["r1", "r3"] and done.deleted == ["r2"]
    assert catalog.promoted_model("ds")["run_id"] == "r1" and home.run_dir("r1").exists()
