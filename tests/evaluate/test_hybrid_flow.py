"""The hybrid (BM25 + tuned) through the real nightly flow: scored on every task with its paired
intervals and its fitted weight when the train stage has a dev split, and not scored, with the
reason, when it has none.

The corpus is BBC articles of three categories with headlines and labels, so evaluate scores the
headline task and the same-label task. Two runs train a tiny model each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from refinery.storage import Catalog, StageMarker, read_shard
from refinery.tasks.ingest.readers import bbc_folder

LABELS = {"business": "business", "sport": "sports", "tech": "tech"}
PER_LABEL = 8
METRICS = ("ndcg@10", "mrr@10", "recall@100")
SAMPLES = 300
SEED = 5


def _records() -> list[dict]:
    out = []
    for label, folder in LABELS.items():
        for path in sorted((bbc_folder() / folder).glob("*.txt"))[:PER_LABEL]:
            title, _, body = path.read_text(encoding="utf-8").partition("\n")
            out.append({"id": f"{label}-{path.stem}", "title": title.strip(), "text": body.strip(), "label": label})
    return out


def _nightly(root: Path, dask_address: str, train: dict) -> dict:
    from refinery.flows.nightly import nightly

    corpus = root / "labelled.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    cfg = {
        "home": str(root / "home"),
        "ingest": {"sources": [{"path": str(corpus), "name": "labelled", "id_field": "id"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 24},
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64, **train},
        "evaluate": {"max_seq_length": 128, "bootstrap_samples": SAMPLES, "seed": SEED},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    stats = nightly(config_path=str(path), dask_address=dask_address)
    catalog = Catalog(root / "home" / "catalog.duckdb")
    rows = catalog.query(f"SELECT task, model, metric, value FROM metrics WHERE run_id = '{stats['run_id']}' "
                         "AND stage = 'evaluate'").to_pylist()
    run_dir = Path(stats["run_dir"])
    return {"stats": stats, "run_dir": run_dir, "evaluate": StageMarker(run_dir / "evaluate").read(),
            "train": StageMarker(run_dir / "train").read(), "home": root / "home", "config": path,
            "figures": {(r["task"], r["model"], r["metric"]): r["value"] for r in rows}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prefect_api, dask_address):
    # a dev split of about a third of the passages (the default keeps 10%, at least 16 pairs)
    with_dev = _nightly(tmp_path_factory.mktemp("with_dev"), dask_address, {"dev_fraction": 0.35, "dev_min_pairs": 4})
    without_dev = _nightly(tmp_path_factory.mktemp("without_dev"), dask_address, {"dev_fraction": None})
    return {"with_dev": with_dev, "without_dev": without_dev}


@pytest.mark.slow  # trains two models
def test_hybrid_is_scored_on_every_task_with_its_intervals_and_weight(runs):
    from refinery.tasks.evaluate.fusion import WEIGHT_GRID

    run = runs["with_dev"]
    evaluation, figures = run["evaluate"], run["figures"]
    assert run["train"]["dev_pairs"] >= 4 and not run["train"]["dev_skipped"]
    fusion = evaluation["fusion"]
    assert fusion["weight"] in WEIGHT_GRID and fusion["dev_queries"] == run["train"]["dev_pairs"]
    assert evaluation["tasks"] == ["headline", "same_label"]
    intervals = {f"ndcg@10_{c}{s}" for c in ("vs_tuned", "vs_bm25") for s in ("", "_ci_low", "_ci_high")}
    for task in evaluation["tasks"]:
        hybrid = {k[2]: v for k, v in figures.items() if k[:2] == (task, "hybrid")}
        assert set(hybrid) == set(METRICS) | intervals | {"fusion_weight"}
        assert hybrid["fusion_weight"] == fusion["weight"]  # the one weight, whatever the task
        # tuned keeps its own comparisons
        assert {"ndcg@10_delta", "ndcg@10_vs_bm25"} <= {k[2] for k in figures if k[:2] == (task, "tuned")}
        rows = read_shard(evaluation["per_query"][task]).to_pylist()
        ndcg = {m: np.array([r["ndcg@10"] for r in rows if r["model"] == m]) for m in ("tuned", "bm25", "hybrid")}
        queries = {m: [r["query"] for r in rows if r["model"] == m] for m in ("tuned", "bm25", "hybrid")}
        assert queries["hybrid"] == queries["tuned"] == queries["bm25"]
        for metric in METRICS:
            assert np.mean([r[metric] for r in rows if r["model"] == "hybrid"]) == pytest.approx(hybrid[metric])
        for name, other in (("vs_tuned", "tuned"), ("vs_bm25", "bm25")):
            deltas = ndcg["hybrid"] - ndcg[other]
            assert hybrid[f"ndcg@10_{name}"] == pytest.approx(deltas.mean())
            draws = np.random.default_rng(SEED).integers(0, len(deltas), size=(SAMPLES, len(deltas)))
            expected = np.quantile(deltas[draws].mean(axis=1), [0.025, 0.975])
            assert (hybrid[f"ndcg@10_{name}_ci_low"], hybrid[f"ndcg@10_{name}_ci_high"]) == pytest.approx(
                tuple(expected), abs=1e-12)


@pytest.mark.slow  # trains two models
def test_the_weight_is_fitted_on_the_dev_split_alone(runs):
    from refinery.tasks.config import load_config
    from refinery.tasks.evaluate.shard_tasks import fit_fusion_weight

    run = runs["with_dev"]
    fusion = run["evaluate"]["fusion"]
    dev = read_shard(run["train"]["dev_pairs_path"]).to_pylist()
    # refitted here from the dev pairs and the tuned model alone: the same weight and dev figures
    cfg = load_config(run["config"]).evaluate
    again = fit_fusion_weight(run["train"]["dev_pairs_path"], run["train"]["model_path"], cfg,
                              str(run["home"] / "cache"), run["train"]["dev_distractors_path"])
    assert again["weight"] == fusion["weight"] and again["dev_by_weight"] == pytest.approx(fusion["dev_by_weight"])
    # the dev queries rank their own passages and training passages no dev pair has
    distractors = read_shard(run["train"]["dev_distractors_path"]).column("positive").to_pylist()
    assert distractors and not set(distractors) & {r["positive"] for r in dev}
    assert fusion["dev_candidates"] == len(dev) + len(distractors)
    # the weight is the grid's best on dev, and no evaluation query is a dev query
    best = max(fusion["dev_by_weight"].values())
    assert fusion["dev_by_weight"][f"{fusion['weight']:.2f}"] == best
    headlines = {r["query"] for r in read_shard(run["evaluate"]["per_query"]["headline"]).to_pylist()}
    assert headlines and not headlines & {r["query"] for r in dev}
    report = (run["run_dir"] / "report.md").read_text()
    summary = report.split("## Evaluation summary", 1)[1].split("\n## ", 1)[0]
    assert "| task | queries | bm25 | base | tuned | hybrid | tuned − base (95% CI) | tuned − bm25 (95% CI) | " \
           "hybrid − tuned (95% CI) | hybrid − bm25 (95% CI) |" in summary
    assert f"w = {fusion['weight']:.2f} fitted on the train stage's dev split ({len(dev)} queries" in summary


@pytest.mark.slow  # trains two models
def test_without_a_dev_split_hybrid_is_not_scored_and_the_run_says_why(runs):
    run = runs["without_dev"]
    evaluation = run["evaluate"]
    assert run["train"]["dev_skipped"] == "train.dev_fraction is null"
    assert evaluation["fusion"] == {
        "skipped": "the train stage had no dev split to fit its weight on (train.dev_fraction is null)"}
    assert not [k for k in run["figures"] if k[1] == "hybrid"]
    assert {k[1] for k in run["figures"]} == {"queries", "base", "tuned", "bm25"}  # the others are scored
    report = (run["run_dir"] / "report.md").read_text()
    assert ("- Model `hybrid` (BM25 + tuned) was not scored: the train stage had no dev split to fit its weight "
            "on (train.dev_fraction is null).") in report
