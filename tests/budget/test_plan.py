"""The budget's planner (tasks/budget/plan.py): hand-made rates in, sizes out.

Every expected figure is worked out by hand in the comments from the documented split (fixed costs,
a 10% reserve, 30% of the rest to LLM generation, training the rest) and its constants.
"""

from __future__ import annotations

import pytest

from refinery.tasks.budget.plan import (
    MAX_EPOCHS, BudgetPlan, Rates, Workload, apply_plan, below_minimum_line, minimum_minutes, plan_budget,
)
from refinery.tasks.budget.record import actual_rows, budget_table, plan_rows
from refinery.tasks.config import RefineryConfig, parse_config
from refinery.tasks.train.finetune import plan_training

# 2 slots embedding 50 documents/s each, a training step of 10 s, calibration 30 s
RATES = Rates(slots=2, encode_docs_per_s=50.0, train_step_s=10.0, calibration_s=30.0)
WITH_LLM = Rates(slots=2, encode_docs_per_s=50.0, train_step_s=10.0, llm_s_per_passage={"smollm2": 2.0},
                 calibration_s=30.0)


def config(generators: list[str]) -> RefineryConfig:
    # defaults otherwise: batch 32, eval_every 10, dev_fraction 0.1, pools of 10,000, 4 samples a passage
    return parse_config({"synthesize": {"generators": generators}, "budget": {"minutes": 60}})


def test_inverse_cloze_only_on_a_small_corpus_trains_several_passes_and_ends_early():
    plan = plan_budget(60, RATES, Workload(corpus_docs=1000), config(["inverse_cloze"]))
    # fixed: calibration 30 s; synthesize 1,000 pool docs / 100 docs/s = 10 s + 60 overhead = 70 s;
    # train 30 s overhead; evaluate 1,000 docs x 1 model (tuned; the corpus is within both pools, so the
    # base model's embeddings are synthesize's) / 100 = 10 s + 90 = 100 s: 230 s.
    # reserve 360 s; flexible 3,600 - 360 - 230 = 3,010 s; a step with dev scoring 10 x 1.05 = 10.5 s.
    # 285 steps would want more pairs than 1,000 passages give: all 1,000 (filter 1,000 x 0.1 / 50 = 2 s),
    # 650 pairs expected, 585 after the dev split: 18 batches a pass, at most 10 passes: 180 steps.
    assert (plan.llm_passages, plan.inverse_cloze_passages, plan.expected_pairs) == (0, 1000, 650)
    assert (plan.steps, plan.epochs) == (180, 10)
    assert plan.train_max_minutes == pytest.approx((180 * 10.5 + 360) / 60)  # 37.5
    assert plan.stage_minutes == pytest.approx({"budget": 0.5, "synthesize": 72 / 60, "train": (30 + 1890) / 60,
                                                "evaluate": 100 / 60}, abs=0.01)
    assert plan.reserve_minutes == 6
    # training re-plans its steps to its share without the reserve, from its own timed steps
    assert apply_plan(config(["inverse_cloze"]), plan).train.fit_minutes == pytest.approx(180 * 10.5 / 60)  # 31.5


def test_a_large_corpus_with_smollm2_splits_the_minutes_between_generation_and_steps():
    plan = plan_budget(60, WITH_LLM, Workload(corpus_docs=20_000), config(["inverse_cloze", "smollm2"]))
    # fixed: 30 + (10,000 / 100 + 60) + 30 + (10,000 x 2 / 100 + 90) = 510 s; flexible 3,600 - 360 - 510 = 2,730 s.
    # LLM: 30% = 819 s at 2 s a passage on 2 slots = 819 passages, ~614.25 pairs (0.75 a passage);
    # filtering their 3,276 candidates 6.552 s. Left 1,904.448 s: 181 steps, whose inverse-cloze passages'
    # filtering (8,956 x 0.1 / 50 = 17.9 s) leaves 179 steps; 179 x 32 / 0.9 - 614.25 = 5,750.19 pairs
    # from inverse cloze = 8,847 passages; 6,364 pairs expected, 178 batches a pass: 2 passes, 179 steps.
    assert (plan.llm_passages, plan.candidates_per_passage, plan.max_pairs_per_passage) == (819, 4, 1)
    assert (plan.inverse_cloze_passages, plan.expected_pairs) == (8847, 6364)
    assert (plan.steps, plan.epochs) == (179, 2)
    assert plan.candidates == 819 * 4 + 8847


def test_when_every_document_is_a_passage_the_llm_samples_more_of_each():
    plan = plan_budget(60, WITH_LLM, Workload(corpus_docs=100), config(["inverse_cloze", "smollm2"]))
    # fixed: 30 + (1 + 60) + 30 + (1 + 90) = 212 s; flexible 3,028 s; 30% = 908.4 s affords 908 passages of a
    # 100-document corpus: 9x the samples, capped at 32 (8x the 4): 32 samples and up to 8 pairs a passage
    assert (plan.llm_passages, plan.candidates_per_passage, plan.max_pairs_per_passage) == (100, 32, 8)


def test_the_promoted_model_is_one_more_pool_to_embed():
    alone = plan_budget(60, RATES, Workload(corpus_docs=1000), config(["inverse_cloze"]))
    gated = plan_budget(60, RATES, Workload(corpus_docs=1000, scores_promoted=True), config(["inverse_cloze"]))
    assert gated.stage_minutes["evaluate"] - alone.stage_minutes["evaluate"] == pytest.approx(10 / 60, abs=0.01)


def test_a_budget_too_small_is_raised_to_the_least_that_would_do_with_one_line_saying_so():
    # least: (230 s fixed + 10 steps x 10.5 s + filtering 493 candidates 0.986 s) / 0.9 = 373.3 s: 7 minutes
    assert minimum_minutes(config(["inverse_cloze"]), Workload(1000), RATES) == 7
    # the night has curated and published by now: it is planned to the least, not failed
    raised = plan_budget(6, RATES, Workload(1000), config(["inverse_cloze"]))
    assert (raised.minutes, raised.asked_minutes) == (7, 6) and raised.steps >= 10
    line = below_minimum_line(raised)
    assert line.startswith("budget.minutes 6 is below the least this corpus and machine need (7 minutes") and "\n" not in line
    enough = plan_budget(7, RATES, Workload(1000), config(["inverse_cloze"]))
    assert enough.asked_minutes is None and below_minimum_line(enough) is None and enough.steps >= 10


def test_the_plan_sets_the_sizes_of_synthesize_and_train_and_survives_a_round_trip():
    cfg = config(["inverse_cloze", "smollm2"])
    plan = plan_budget(60, WITH_LLM, Workload(corpus_docs=100), cfg)
    planned = apply_plan(cfg, plan)
    assert (planned.synthesize.passages, planned.synthesize.candidates_per_passage,
            planned.synthesize.max_pairs_per_passage, planned.synthesize.inverse_cloze_passages) == (
        plan.llm_passages, 32, 8, plan.inverse_cloze_passages)
    # the steps bound the training; the passes only cap it (see the next test)
    assert (planned.train.max_steps, planned.train.epochs, planned.train.max_minutes) == (
        plan.steps, MAX_EPOCHS, plan.train_max_minutes)
    assert planned.evaluate == cfg.evaluate and planned.budget == cfg.budget
    assert BudgetPlan.from_dict(plan.as_dict()) == plan
    assert apply_plan(planned, plan) == planned  # applying it again (a resumed run) changes nothing


def test_a_night_that_keeps_fewer_pairs_than_planned_still_trains_its_planned_steps():
    cfg = config(["inverse_cloze", "smollm2"])
    plan = plan_budget(60, WITH_LLM, Workload(corpus_docs=20_000), cfg)
    assert (plan.steps, plan.epochs) == (179, 2)  # 6,364 pairs expected: two passes
    kept = [(f"query {i}", f"passage {i}") for i in range(plan.expected_pairs * 4 // 10)]  # 40% of them kept
    planned = plan_training(kept, apply_plan(cfg, plan).train)
    assert len(planned.batches) == plan.steps  # more passes over fewer pairs, the planned steps all the same
    few = [(f"query {i}", f"passage {i}") for i in range(100)]  # far too few: at most MAX_EPOCHS passes
    per_pass = len(plan_training(few, cfg.train).batches)
    assert len(plan_training(few, apply_plan(cfg, plan).train).batches) == MAX_EPOCHS * per_pass < plan.steps


def test_unbudgeted_config_keeps_todays_sizes():
    cfg = RefineryConfig()
    assert cfg.budget.minutes is None
    assert (cfg.synthesize.passages, cfg.synthesize.inverse_cloze_passages, cfg.train.max_steps,
            cfg.train.max_minutes, cfg.train.epochs) == (64, 1200, None, None, 1)


def test_plan_and_actual_rows_line_up_per_stage():
    plan = plan_budget(60, RATES, Workload(corpus_docs=1000), config(["inverse_cloze"]))
    rows = plan_rows(plan) + actual_rows({"budget": 30.0, "synthesize": 90.0, "train": 1800.0, "evaluate": 120.0},
                                         {"generated": 1000, "kept": 640}, {"steps": 150, "seconds": 1500.0,
                                                                            "stopped_early": "deadline"})
    got = {(m, t, k): v for m, t, k, v in rows}
    assert got[("train", "plan", "steps")] == 180
    assert got[("train", "actual", "steps")] == 150 and got[("train", "actual", "stopped_early")] == 1
    assert got[("train", "actual", "seconds_per_step")] == 10
    assert got[("total", "actual", "minutes")] == (30 + 90 + 1800 + 120) / 60
    assert got[("synthesize", "actual", "pairs")] == 640 and got[("synthesize", "plan", "pairs")] == 650
    table = budget_table([{"stage": "train", "metric": "steps", "plan": 180.0, "actual": 150.0},
                          {"stage": "total", "metric": "minutes", "plan": 60.0, "actual": 34.0},
                          {"stage": "synthesize", "metric": "minutes", "plan": 1.2, "actual": None},
                          {"stage": "train", "metric": "minutes", "plan": 32.0, "actual": 30.0}])
    assert [(r["stage"], r["figure"]) for r in table] == [("synthesize", "minutes"), ("train", "minutes"),
                                                          ("train", "steps"), ("total", "minutes")]
    assert table[0]["actual"] == "–" and table[2]["plan"] == "180"
