"""`refinery ablate --only teacher_filtered_negatives`, then `--only nights`, on a small slice: a
comparison whose variants differ in training only synthesizes once, and every variant trains on
those very pairs.

Real Prefect, the shared Dask cluster and a DuckDB file; titled BBC tech articles, inverse cloze
only, a few steps at a short sequence length. The fusion teacher (BM25 and the base model) needs no
model beyond the packaged one. For the nights comparison the dataset's promoted model is made by
hand (the packaged base model, recorded as the reference run's promoted model): what a promoted
night leaves, without training one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog, DataHome
from refinery.tasks.embedding import BASE_MODEL_PATH
from refinery.tasks.ingest.readers import bbc_folder

pytestmark = pytest.mark.slow

ARTICLES = 30


@pytest.fixture(scope="module")
def ablated(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.ablate import ablate_flow

    root = tmp_path_factory.mktemp("ablate-train-only")
    lines = []
    for i, p in enumerate(sorted((bbc_folder() / "tech").glob("*.txt"))[:ARTICLES]):
        title, _, body = p.read_text(encoding="utf-8").partition("\n")
        lines.append({"id": f"t-{i:03d}", "title": title.strip(), "text": body.strip()})
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    config = {
        "home": str(root / "home"),
        "ingest": {"shard_size": 20, "sources": [{"path": str(root / "corpus.jsonl"), "name": "tech"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": ARTICLES,
                       "consistency_top_k": ARTICLES},
        # a dev split on a slice this small, so the teacher is measured (here the base model ranks the few
        # dev queries perfectly, so it is not used: the rows must say so)
        "train": {"epochs": 1, "batch_size": 4, "max_seq_length": 32, "dev_min_pairs": 2},
        "evaluate": {"max_seq_length": 64, "bootstrap_samples": 200, "max_queries": 20, "same_label": False},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = ablate_flow(config_path=str(path), only="teacher_filtered_negatives", dask_address=dask_address)
    catalog, home = Catalog(root / "home" / "catalog.duckdb"), DataHome(root / "home")
    reference = result["run_id"]
    shutil.copytree(BASE_MODEL_PATH, home.promoted_model_dir("default"))
    catalog.put_model(reference, "tuned", str(home.promoted_model_dir("default")), base="all-MiniLM-L6-v2")
    catalog.decide_model(reference, "default", promoted=True, gate={"reason": "made by the test"})
    nights = ablate_flow(config_path=str(path), from_run=reference, only="nights", dask_address=dask_address)
    return result | {"catalog": catalog, "nights": nights}


def variants(result: dict) -> dict[str, dict]:
    return {r["variant"]: r for r in result["rows"]}


def test_the_variants_train_on_one_synthesis(ablated):
    catalog, rows = ablated["catalog"], variants(ablated)
    assert set(rows) == {"unfiltered", "teacher_filtered"}
    synthesized = catalog.query("SELECT run_id, status, json_extract_string(stats, '$.reused_from') AS source "
                                "FROM stage_runs WHERE stage = 'synthesize'").to_pylist()
    # one synthesis per ablation (two of them in this home); each variant's run reuses its ablation's
    assert len([r for r in synthesized if r["status"] == "completed"]) == 2
    reused = {r["run_id"]: r["source"] for r in synthesized if r["status"] == "reused"}
    [source] = {reused[r["run_id"]] for r in rows.values()}
    assert {"run_id": source, "status": "completed", "source": None} in synthesized

    def pairs(run_id: str) -> list[dict]:
        return catalog.query("SELECT query, doc_id, negative_doc_id, kept, split FROM pairs WHERE run_id = ? "
                             "ORDER BY ALL", [run_id]).to_pylist()

    mine = [pairs(r["run_id"]) for r in rows.values()]
    assert mine[0] and mine[0] == mine[1] == pairs(source)
    assert any(p["negative_doc_id"] for p in mine[0])  # mined: there are negatives to filter


def test_the_variants_train_alike_but_for_the_filter(ablated):
    rows = variants(ablated)
    assert len({(r["pairs"], r["teacher"], r["loss"]) for r in rows.values()}) == 1
    assert rows["unfiltered"]["teacher"] == "fusion" and rows["unfiltered"]["loss"] == "mnrl"
    assert all(isinstance(r["teacher_used"], bool) for r in rows.values())
    for r in rows.values():  # a teacher not used trains MNRL, and the report says why
        assert r["teacher_used"] or r["teacher_reason"] in Path(ablated["report"]).read_text()
    assert all(r["train_seconds"] is not None for r in rows.values())
    assert len({r["base_ndcg@10"] for r in rows.values()}) == 1  # one set of queries and pool


def test_the_rows_land_in_the_report_and_the_catalog(ablated):
    text = Path(ablated["report"]).read_text()
    assert "## Teacher-filtered negatives: hard negatives as mined vs with the teacher's false negatives dropped" in text
    assert "| teacher used |" in text and "| train min |" in text
    for variant in ("unfiltered", "teacher_filtered"):
        assert f"| {variant} |" in text
    got = {(r["model"], r["metric"]) for r in ablated["catalog"].query(
        "SELECT model, metric FROM metrics WHERE run_id = ? AND stage = 'ablate' AND task = 'train'",
        [ablated["run_id"]]).to_pylist()}
    assert {("unfiltered", "teacher_used"), ("teacher_filtered", "train_seconds")} <= got


def test_a_night_from_the_promoted_model_and_one_from_base_train_on_one_synthesis(ablated):
    catalog, rows = ablated["catalog"], variants(ablated["nights"])
    assert ablated["nights"]["skipped"] == []
    assert rows["from_promoted"]["init"] == f"promoted:{ablated['run_id']}"
    assert rows["from_base"]["init"] == "all-MiniLM-L6-v2" and rows["from_base"]["replayed"] == 0
    assert rows["from_base"]["pairs"] == rows["from_promoted"]["pairs"]
    [source] = {catalog.query("SELECT json_extract_string(stats, '$.reused_from') AS s FROM stage_runs "
                              "WHERE run_id = ? AND stage = 'synthesize'", [r["run_id"]]).to_pylist()[0]["s"]
                for r in rows.values()}
    assert source is not None and source not in {r["run_id"] for r in variants(ablated).values()}
    # neither variant replaced the promoted model
    assert catalog.promoted_model("default")["run_id"] == ablated["run_id"]
    text = Path(ablated["nights"]["report"]).read_text()
    assert "## Nights: a night from the base model vs a night from the promoted model" in text
    assert f"| from_promoted | {rows['from_promoted']['run_id']} |" in text
    # the earlier comparison's table stays in the reference run's report
    assert "## Teacher-filtered negatives" in text
