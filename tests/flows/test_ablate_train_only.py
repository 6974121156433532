"""`refinery ablate --only teacher_filtered_negatives` on a small slice: a comparison whose variants
differ in training only synthesizes once, and every variant trains on those very pairs.

Real Prefect, the shared Dask cluster and a DuckDB file; titled BBC tech articles, inverse cloze
only, a few steps at a short sequence length. The fusion teacher (BM25 and the base model) needs no
model beyond the packaged one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog
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
    return result | {"catalog": Catalog(root / "home" / "catalog.duckdb")}


def variants(result: dict) -> dict[str, dict]:
    return {r["variant"]: r for r in result["rows"]}


def test_the_variants_train_on_one_synthesis(ablated):
    catalog, rows = ablated["catalog"], variants(ablated)
    assert set(rows) == {"unfiltered", "teacher_filtered"}
    synthesized = catalog.query("SELECT run_id, status, json_extract_string(stats, '$.reused_from') AS source "
                                "FROM stage_runs WHERE stage = 'synthesize'").to_pylist()
    # one synthesis in the whole home; each variant's run reuses it
    [source] = [r["run_id"] for r in synthesized if r["status"] == "completed"]
    reused = {r["run_id"]: r["source"] for r in synthesized if r["status"] == "reused"}
    assert reused == {r["run_id"]: source for r in rows.values()}

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
