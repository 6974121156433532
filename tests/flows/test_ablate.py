"""`refinery ablate` on a small slice: curated vs uncurated corpus, each generator alone vs the mix,
pairs vs triplets with mined hard negatives.

Real Prefect, the shared Dask cluster and a DuckDB file. The corpus: titled BBC tech articles
plus copies under other ids (dedup drops them, so the uncurated corpus holds documents curation
dropped). The curation comparison runs with inverse cloze only; the generator one adds SmolLM2 on
six passages, the hard-negative one inverse cloze again, all from the same reference run, so the
report ends up with all three tables.
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
COPIES = 6


def write_corpus(root: Path) -> Path:
    lines = []
    for i, p in enumerate(sorted((bbc_folder() / "tech").glob("*.txt"))[:ARTICLES]):
        title, _, body = p.read_text(encoding="utf-8").partition("\n")
        lines.append({"id": f"t-{i:03d}", "title": title.strip(), "text": body.strip()})
    lines += [{**r, "id": f"copy-{i}"} for i, r in enumerate(lines[:COPIES])]
    path = root / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ablated(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.ablate import ablate_flow

    root = tmp_path_factory.mktemp("ablate")
    config = {
        "home": str(root / "home"),
        "ingest": {"shard_size": 20, "sources": [{"path": str(write_corpus(root)), "name": "tech"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": ARTICLES + COPIES,
                       "passages": 6, "candidates_per_passage": 2, "max_new_tokens": 24,
                       "consistency_top_k": ARTICLES + COPIES},
        "train": {"epochs": 1, "batch_size": 4, "max_seq_length": 32},
        "evaluate": {"max_seq_length": 64, "bootstrap_samples": 200, "max_queries": 20, "same_label": False},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    curation = ablate_flow(config_path=str(path), only="curation", dask_address=dask_address)
    config["synthesize"]["generators"] = ["inverse_cloze", "smollm2"]
    path.write_text(yaml.safe_dump(config))
    generators = ablate_flow(config_path=str(path), from_run=curation["run_id"], only="generators",
                             dask_address=dask_address)
    config["synthesize"]["generators"] = ["inverse_cloze"]
    path.write_text(yaml.safe_dump(config))
    hard = ablate_flow(config_path=str(path), from_run=curation["run_id"], only="hard_negatives",
                       dask_address=dask_address)
    return {"curation": curation, "generators": generators, "hard_negatives": hard,
            "catalog": Catalog(root / "home" / "catalog.duckdb")}


def variants(result: dict) -> dict[str, dict]:
    return {r["variant"]: r for r in result["rows"]}


def test_every_variant_has_metrics_rows(ablated):
    reference = ablated["curation"]["run_id"]
    assert ablated["generators"]["run_id"] == reference
    rows = ablated["catalog"].query("SELECT model, task, metric, value FROM metrics WHERE run_id = ? AND stage = 'ablate'",
                                    [reference]).to_pylist()
    got = {(r["model"], r["task"], r["metric"]) for r in rows}
    for variant in ("curated", "uncurated", "inverse_cloze_only", "smollm2_only", "mix"):
        assert {(variant, "headline", "ndcg@10"), (variant, "train", "pairs"), (variant, "train", "steps"),
                (variant, "headline", "ndcg@10_delta_ci_low")} <= got
    for variant in ("no_hard_negatives", "hard_negatives"):
        assert {(variant, "headline", "ndcg@10"), (variant, "train", "with_negatives")} <= got
    for variant in ("uncurated", "smollm2_only", "mix", "hard_negatives"):  # against their comparison's baseline
        assert (variant, "headline", "ndcg@10_vs_baseline_ci_high") in got


def test_the_variants_of_a_comparison_train_on_one_budget_and_are_scored_on_one_set(ablated):
    catalog = ablated["catalog"]
    for result in (ablated["curation"], ablated["generators"], ablated["hard_negatives"]):
        rows = variants(result)
        assert len({r["pairs"] for r in rows.values()}) == 1
        # the same queries and pool: the base model scores alike in every variant's own run
        assert len({r["base_ndcg@10"] for r in rows.values()}) == 1
        kept = {name: catalog.query("SELECT count(*) AS n FROM pairs WHERE run_id = ? AND kept AND split = 'train'",
                                    [r["run_id"]]).to_pylist()[0]["n"] for name, r in rows.items()}
        assert next(iter(rows.values()))["pairs"] == min(kept.values())


def test_the_uncurated_variant_draws_passages_curation_dropped(ablated):
    catalog, rows = ablated["catalog"], variants(ablated["curation"])
    dropped = {r["doc_id"] for r in catalog.query("SELECT doc_id FROM drops WHERE run_id = ?",
                                                  [ablated["curation"]["run_id"]]).to_pylist()}
    assert dropped

    def passages(variant: str) -> set[str]:
        return {r["doc_id"] for r in catalog.query("SELECT DISTINCT doc_id FROM pairs WHERE run_id = ?",
                                                   [rows[variant]["run_id"]]).to_pylist()}

    assert passages("uncurated") & dropped
    assert not passages("curated") & dropped


def test_only_the_hard_negative_variant_mines_and_trains_on_negatives(ablated):
    catalog, rows = ablated["catalog"], variants(ablated["hard_negatives"])
    assert rows["hard_negatives"]["with_negatives"] > 0
    assert rows["no_hard_negatives"]["with_negatives"] == 0

    def mined(variant: str) -> int:
        return catalog.query("SELECT count(negative_doc_id) AS n FROM pairs WHERE run_id = ? AND kept",
                             [rows[variant]["run_id"]]).to_pylist()[0]["n"]

    assert mined("hard_negatives") > 0 and mined("no_hard_negatives") == 0


def test_the_report_has_every_table(ablated):
    text = Path(ablated["hard_negatives"]["report"]).read_text()
    assert "## Curation: curated vs uncurated corpus" in text and "## Generators: each alone vs the mix" in text
    assert "## Hard negatives: pairs vs triplets with a mined negative" in text
    for variant in ("curated", "uncurated", "inverse_cloze_only", "smollm2_only", "mix", "no_hard_negatives",
                    "hard_negatives"):
        assert f"| {variant} |" in text
