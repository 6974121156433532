"""Nights build on each other: a night trains from the dataset's promoted model, on its new pairs and
a replay of earlier nights' pairs, and its model replaces the promoted one only through the gate.

Two real nightly flows (tiny training) into one data home over a mirrored folder: night 1 reads
`business.jsonl` and `sport.jsonl`, and its gate is set to pass (the bar far below any result);
night 2 finds `sport.jsonl` removed and `tech.jsonl` added, and its gate is set so high that it
must refuse. So night 1's model is promoted, night 2 trains from it, is compared with it, and
stays a candidate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from refinery.storage import Catalog, DataHome, StageMarker
from tests.flows.test_dataset_model_half import write_titled
from tests.flows.test_datasets import bodies

PER_FILE = 14
DATASET = "growing"


def _config(root: Path, folder: Path, *, min_delta: float, min_ci_low: float, passages: int) -> Path:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / "home"), "dataset": DATASET,
        "ingest": {"shard_size": 8, "sources": [{"path": str(folder), "name": "files", "mode": "mirror",
                                                 "title_field": "title"}]},
        "quality": {"profile": "prose"},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": passages},
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64, "replay_ratio": 0.5,
                  "promotion": {"min_delta": min_delta, "min_ci_low": min_ci_low}},
        "evaluate": {"task": "headline", "pool_docs": 40, "max_seq_length": 128, "bootstrap_samples": 200}}))
    return config


@pytest.fixture(scope="module")
def nights(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("promotion")
    folder = root / "folder"
    folder.mkdir()
    write_titled(folder / "business.jsonl", "b", bodies("business", PER_FILE))
    write_titled(folder / "sport.jsonl", "s", bodies("sports", PER_FILE))
    first = nightly(config_path=str(_config(root, folder, min_delta=-1.0, min_ci_low=-1.0, passages=200)),
                    dask_address=dask_address)
    promoted_files = {p.relative_to(DataHome(root / "home").promoted_model_dir(DATASET)): p.read_bytes()
                      for p in DataHome(root / "home").promoted_model_dir(DATASET).rglob("*") if p.is_file()}
    (folder / "sport.jsonl").unlink()
    write_titled(folder / "tech.jsonl", "t", bodies("tech", PER_FILE))
    # night 2 asks fewer queries, of passages sampled from the whole version: some of night 1's
    # pairs are replayed, some are asked again tonight
    config = _config(root, folder, min_delta=1.0, min_ci_low=-1.0, passages=12)
    second = nightly(config_path=str(config), dask_address=dask_address)
    return {"first": first, "second": second, "home": DataHome(root / "home"), "config": config,
            "dask_address": dask_address,
            "catalog": Catalog(root / "home" / "catalog.duckdb"), "promoted_files_after_first": promoted_files}


def _stage(run: dict, stage: str) -> dict:
    return StageMarker(Path(run["run_dir"]) / stage).read()


@pytest.mark.slow  # trains a model twice
def test_the_first_nights_model_passing_the_gate_is_promoted_to_the_datasets_folder(nights):
    first, catalog = nights["first"], nights["catalog"]
    promote = _stage(first, "promote")
    assert promote["promote"] and promote["compared_with"] == "base" and promote["replaces"] is None
    rows = {r["run_id"]: r for r in catalog.query("SELECT run_id, promoted, dataset FROM models WHERE name = 'tuned'")
            .to_pylist()}
    assert rows[first["run_id"]] == {"run_id": first["run_id"], "promoted": True, "dataset": DATASET}
    # the promoted folder holds the night's model, its ONNX exports and a card
    files = nights["promoted_files_after_first"]
    assert {Path("README.md"), Path("onnx/model.onnx"), Path("onnx/model_int8.onnx")} <= set(files)
    facts = json.loads(files[Path("refinery_model.json")])
    assert facts["run_id"] == first["run_id"] and facts["dataset"] == DATASET
    card = files[Path("README.md")].decode()
    assert f"version `{first['run_id']}`" in card and "from all-MiniLM-L6-v2" in card
    assert "promoted: tuned − base" in card
    # the hybrid's weight, fitted on night 1's dev split, is on the card (none when it had no dev split)
    weight = (_stage(first, "evaluate").get("fusion") or {}).get("weight")
    assert facts["fusion_weight"] == weight and (weight is None or f"| {weight} |" in card)
    tuned = _stage(first, "train")["model_path"]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert weights and all(files[p] == (Path(tuned) / p).read_bytes() for p in weights)
    # the card's ONNX recipe gives the model's own embeddings
    _check_onnx_recipe(nights["home"].promoted_model_dir(DATASET))
    # night 1's evaluation had no promoted model to compare with
    assert "promoted" not in _stage(first, "evaluate")["metrics"]


@pytest.mark.slow  # trains a model twice
def test_the_second_night_trains_from_the_promoted_model_with_a_replay_of_earlier_pairs(nights):
    first, second, catalog = nights["first"], nights["second"], nights["catalog"]
    train = _stage(second, "train")
    assert train["init"] == {"name": f"promoted:{first['run_id']}", "run_id": first["run_id"]}
    (row,) = catalog.query("SELECT base FROM models WHERE run_id = ? AND name = 'tuned'", [second["run_id"]]).to_pylist()
    assert row["base"] == f"promoted:{first['run_id']}"
    # the replay: night 1's kept training pairs whose passage night 2's version still holds (sport's
    # were retired) and whose query night 2 does not ask, half as many as night 2's own at most
    new = catalog.query("SELECT count(*) AS n FROM pairs WHERE run_id = ? AND kept AND split = 'train'",
                        [second["run_id"]]).to_pylist()[0]["n"]
    candidates = catalog.query("""
        SELECT count(*) AS n FROM pairs p WHERE p.run_id = $1 AND p.kept AND p.split = 'train'
          AND p.doc_id IN (SELECT doc_id FROM curated_at($3, $2))
          AND p.query NOT IN (SELECT query FROM pairs WHERE run_id = $2 AND kept AND split = 'train')""",
                               [first["run_id"], second["run_id"], DATASET]).to_pylist()[0]["n"]
    retired = catalog.query("""
        SELECT count(*) AS n FROM pairs p JOIN documents d ON d.run_id = p.run_id AND d.doc_id = p.doc_id
        WHERE p.run_id = ? AND p.kept AND p.split = 'train' AND d.source = 'files' AND d.location LIKE '%sport.jsonl%'""",
                            [first["run_id"]]).to_pylist()[0]["n"]
    replay = train["replay"]
    assert retired > 0 and replay["retired"] == retired and replay["same_query"] > 0
    assert replay["candidates"] == candidates > 0
    assert replay["replayed"] == min(math.floor(0.5 * new), candidates) > 0
    assert train["examples"] == new + replay["replayed"]


@pytest.mark.slow  # trains a model twice
def test_the_gate_compares_with_the_promoted_model_and_refuses_a_night_below_the_bar(nights):
    first, second, catalog, home = nights["first"], nights["second"], nights["catalog"], nights["home"]
    evaluation = _stage(second, "evaluate")
    tuned = evaluation["metrics"]["tuned"]
    assert "promoted" in evaluation["metrics"]
    # the interval is of the per-query difference to the promoted model's scores
    assert tuned["ndcg@10_vs_promoted_ci_low"] <= tuned["ndcg@10_vs_promoted"] <= tuned["ndcg@10_vs_promoted_ci_high"]
    assert np.isclose(tuned["ndcg@10_vs_promoted"], tuned["ndcg@10"] - evaluation["metrics"]["promoted"]["ndcg@10"])
    promote = _stage(second, "promote")
    assert not promote["promote"] and promote["compared_with"] == "promoted"
    assert promote["replaces"] == first["run_id"] and "train.promotion.min_delta" in promote["reason"]
    # night 1's model is still the promoted one, in SQL and in the folder
    assert catalog.promoted_model(DATASET)["run_id"] == first["run_id"]
    folder = home.promoted_model_dir(DATASET)
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == nights["promoted_files_after_first"]
    rows = catalog.query("SELECT run_id, promoted FROM models WHERE name = 'tuned' ORDER BY created_at").to_pylist()
    assert rows == [{"run_id": first["run_id"], "promoted": True}, {"run_id": second["run_id"], "promoted": False}]
    # the report says so, with both nights plotted
    report = (Path(second["run_dir"]) / "report.md").read_text()
    assert "## Promotion" in report and promote["reason"] in report
    assert first["run_id"] in report.split("## Promotion")[1] and (Path(second["run_dir"]) / "report_files" / "nights.png").exists()


@pytest.mark.slow  # trains a model twice
def test_refinery_models_lists_each_nights_model_with_the_gates_decision(nights):
    from refinery.flows.cli import app

    result = CliRunner().invoke(app, ["models", DATASET, "--format", "json", "--config", str(nights["config"])])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["run_id"], r["promoted"]) for r in rows] == [(nights["first"]["run_id"], True),
                                                           (nights["second"]["run_id"], False)]
    assert rows[1]["compared_with"] == "promoted" and rows[1]["reason"].startswith("kept as a candidate")
    table = CliRunner().invoke(app, ["models", "--config", str(nights["config"])])
    assert table.exit_code == 0 and str(nights["home"].promoted_model_dir(DATASET)) in table.output.replace("\n", "")


def _check_onnx_recipe(folder: Path) -> None:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from refinery.tasks.embedding import encode, load_encoder

    texts = ["a query about company profits", "The bank held interest rates at five percent on Thursday."]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    for name in ("model.onnx", "model_int8.onnx"):
        session = ort.InferenceSession(str(folder / "onnx" / name))
        names = {i.name for i in session.get_inputs()}
        (got,) = session.run(["sentence_embedding"], {k: v for k, v in batch.items() if k in names})
        want = encode(load_encoder(folder), texts, show_progress=False)
        assert np.min(np.sum(got * want, axis=1)) > (0.999 if name == "model.onnx" else 0.98)


@pytest.mark.slow  # trains a model twice
def test_a_resumed_night_whose_model_was_promoted_is_not_compared_with_itself(nights):
    """Night 1 killed during evaluate after its model was promoted (the marker removed by hand) and
    resumed: its evaluation is what it was, with no 'promoted' system (that would be itself)."""
    from refinery.flows.nightly import nightly

    first, catalog = nights["first"], nights["catalog"]
    before = catalog.query("SELECT model, task, metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate' "
                           "ORDER BY ALL", [first["run_id"]]).to_pylist()
    (Path(first["run_dir"]) / "evaluate" / "_SUCCESS.json").unlink()
    nightly(config_path=str(nights["config"]), run_id=first["run_id"], dask_address=nights["dask_address"])
    after = catalog.query("SELECT model, task, metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate' "
                          "ORDER BY ALL", [first["run_id"]]).to_pylist()
    assert after == before and not any(r["model"] == "promoted" for r in after)
