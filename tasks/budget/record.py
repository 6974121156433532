"""What a budgeted run records of its plan and of what its stages did: ``metrics`` rows of stage
``budget`` (queryable in SQL) and the report's plan-against-actual table.

Rows are (model, task, metric, value) with the model the stage the figure is about (``budget``:
the calibration, ``synthesize``, ``train``, ``evaluate``, ``total``), the task ``plan``, ``actual``
or ``rate`` (the calibration's measurements, model ``calibration``)::

    refinery sql "SELECT model AS stage, metric, max(value) FILTER (task = 'plan') AS plan,
                  max(value) FILTER (task = 'actual') AS actual
                  FROM metrics WHERE run_id = '<run_id>' AND stage = 'budget' GROUP BY ALL"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refinery.tasks.budget.plan import PLANNED_STAGES, BudgetPlan

PLAN, ACTUAL, RATE = "plan", "actual", "rate"
TOTAL = "total"
CALIBRATION = "calibration"
MetricRow = tuple[str, str, str, float]


def plan_rows(plan: BudgetPlan) -> list[MetricRow]:
    """The plan: minutes per stage (and in all), and the sizes it set; the measured rates."""
    rows: list[MetricRow] = [(stage, PLAN, "minutes", plan.stage_minutes[stage]) for stage in PLANNED_STAGES]
    rows += [(TOTAL, PLAN, "minutes", plan.minutes), (TOTAL, PLAN, "reserve_minutes", plan.reserve_minutes),
             ("synthesize", PLAN, "llm_passages", plan.llm_passages),
             ("synthesize", PLAN, "candidates_per_passage", plan.candidates_per_passage),
             ("synthesize", PLAN, "inverse_cloze_passages", plan.inverse_cloze_passages),
             ("synthesize", PLAN, "candidates", plan.candidates),
             ("synthesize", PLAN, "pairs", plan.expected_pairs),
             ("train", PLAN, "steps", plan.steps), ("train", PLAN, "epochs", plan.epochs),
             ("train", PLAN, "max_minutes", plan.train_max_minutes),
             ("train", PLAN, "seconds_per_step", plan.rates.train_step_s)]
    rates = plan.rates
    rows += [(CALIBRATION, RATE, "slots", rates.slots), (CALIBRATION, RATE, "encode_docs_per_s", rates.encode_docs_per_s),
             (CALIBRATION, RATE, "train_step_s", rates.train_step_s)]
    rows += [(CALIBRATION, RATE, f"{g}_s_per_passage", s) for g, s in sorted(rates.llm_s_per_passage.items())]
    return [(m, t, k, float(v)) for m, t, k, v in rows]


def actual_rows(stage_seconds: Mapping[str, float], synthesize: Mapping[str, Any],
                train: Mapping[str, Any]) -> list[MetricRow]:
    """What the stages did: minutes (from ``stage_runs``), the passages and pairs synthesize made,
    the steps train took (and whether its deadline stopped it)."""
    rows: list[MetricRow] = [(s, ACTUAL, "minutes", stage_seconds[s] / 60) for s in PLANNED_STAGES if s in stage_seconds]
    rows.append((TOTAL, ACTUAL, "minutes", sum(stage_seconds.get(s, 0.0) for s in PLANNED_STAGES) / 60))
    if "kept" in synthesize:
        rows += [("synthesize", ACTUAL, "candidates", synthesize["generated"]),
                 ("synthesize", ACTUAL, "pairs", synthesize["kept"])]
    if train.get("steps") is not None:
        rows += [("train", ACTUAL, "steps", train["steps"]),
                 ("train", ACTUAL, "stopped_early", 1.0 if train.get("stopped_early") else 0.0)]
        if train.get("seconds") and train["steps"]:
            rows.append(("train", ACTUAL, "seconds_per_step", train["seconds"] / train["steps"]))
    return [(m, t, k, float(v)) for m, t, k, v in rows]


def budget_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's table: a row per stage and figure, planned and actual side by side, stages in
    chain order (``rows``: stage, metric, plan, actual)."""
    order = {s: i for i, s in enumerate((*PLANNED_STAGES, TOTAL))}
    out = []
    for r in sorted(rows, key=lambda r: (order.get(r["stage"], len(order)), r["metric"] != "minutes", r["metric"])):
        out.append({"stage": r["stage"], "figure": r["metric"], "plan": _shown(r["plan"]),
                    "actual": _shown(r["actual"])})
    return out


def _shown(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
