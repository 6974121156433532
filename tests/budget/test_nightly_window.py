"""`refinery serve`/`deploy` give a scheduled run a nightly window of 240 minutes unless its config sets
budget.minutes; `refinery run` gives none."""

from __future__ import annotations

import yaml

from refinery.flows.cli import _deployment_parameters
from refinery.flows.nightly import with_default_budget
from refinery.tasks.config import RefineryConfig, load_config


def test_deployed_runs_default_to_a_240_minute_window(tmp_path):
    assert _deployment_parameters(None, None)["default_budget_minutes"] == 240
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"dataset": "news"}))
    assert _deployment_parameters(config, None)["default_budget_minutes"] == 240
    assert _deployment_parameters(config, None, 90)["default_budget_minutes"] == 90
    assert _deployment_parameters(config, None, 0)["default_budget_minutes"] is None  # --budget-minutes 0: none


def test_the_window_applies_only_where_the_config_sets_no_budget(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"budget": {"minutes": 45}}))
    assert with_default_budget(load_config(config), 240).budget.minutes == 45
    assert with_default_budget(RefineryConfig(), 240).budget.minutes == 240
    assert with_default_budget(RefineryConfig(), None).budget.minutes is None  # `refinery run`
    assert with_default_budget(RefineryConfig(), 240).synthesize == RefineryConfig().synthesize
