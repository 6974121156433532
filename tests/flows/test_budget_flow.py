"""A budgeted nightly run end to end on a tiny corpus: it measures, plans, writes the plan into its
config, trains within the planned steps, and records plan against actual (SQL and report); resumed,
it keeps the plan without measuring again."""

from __future__ import annotations

import pytest
import yaml

from refinery.tasks.budget.plan import MAX_EPOCHS
from refinery.storage import Catalog
from refinery.tasks.config import load_config

pytestmark = pytest.mark.slow  # calibrates and trains a model


@pytest.fixture(scope="module")
def budgeted_run(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("budgeted")
    config = {
        "home": str(root / "home"),
        "ingest": {"shard_size": 40, "limit": 30, "sources": [{"path": "builtin:bbc"}]},
        "synthesize": {"generators": ["inverse_cloze"]},
        "train": {"batch_size": 8, "max_seq_length": 32},
        "evaluate": {"bootstrap_samples": 0, "max_queries": 40},
        "budget": {"minutes": 20},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    stats = nightly(config_path=str(path), dask_address=dask_address)
    return {"stats": stats, "path": path, "catalog": Catalog(root / "home" / "catalog.duckdb")}


def test_the_plan_is_the_run_config_and_training_keeps_within_its_steps(budgeted_run):
    stats = budgeted_run["stats"]
    plan = stats["budget"]["plan"]
    run_config = load_config(budgeted_run["catalog"].path.parent / "runs" / stats["run_id"] / "config.yaml")
    assert run_config.budget.minutes == 20
    assert (run_config.train.max_steps, run_config.train.epochs, run_config.train.max_minutes) == (
        plan["steps"], MAX_EPOCHS, plan["train_max_minutes"])
    assert run_config.synthesize.inverse_cloze_passages == plan["inverse_cloze_passages"] <= 30
    assert 1 <= stats["train"]["steps"] <= plan["steps"]
    assert stats["train"]["planned_steps"] <= plan["steps"]
    # the catalog's copy of the run's config is the planned one
    row = budgeted_run["catalog"].run_record(stats["run_id"])
    assert '"max_steps": %d' % plan["steps"] in row["config"]


def test_plan_and_actual_are_metrics_rows_and_a_report_table(budgeted_run):
    stats = budgeted_run["stats"]
    rows = budgeted_run["catalog"].budget_plan_and_actual(stats["run_id"])
    got = {(r["stage"], r["metric"]): (r["plan"], r["actual"]) for r in rows}
    for stage in ("synthesize", "train", "evaluate", "total"):
        plan, actual = got[(stage, "minutes")]
        assert plan is not None and actual is not None and actual > 0, stage
    assert got[("total", "minutes")][0] == 20
    assert got[("train", "steps")] == (stats["budget"]["plan"]["steps"], stats["train"]["steps"])
    assert got[("synthesize", "pairs")][1] == stats["synthesize"]["kept"]
    report = (budgeted_run["catalog"].path.parent / "runs" / stats["run_id"] / "report.md").read_text()
    assert "## Budget" in report and "planned to **20 minutes**" in report


def test_a_resumed_run_keeps_its_plan_without_measuring_again(budgeted_run):
    from refinery.flows.nightly import nightly

    stats, catalog = budgeted_run["stats"], budgeted_run["catalog"]
    before = [r for r in catalog.stage_timings(stats["run_id"]) if r["stage"] == "budget"]
    again = nightly(config_path=str(budgeted_run["path"]), run_id=stats["run_id"])
    assert again["budget"]["plan"] == stats["budget"]["plan"]
    assert [r for r in catalog.stage_timings(stats["run_id"]) if r["stage"] == "budget"] == before
