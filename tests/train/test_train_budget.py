"""The training loop under a budget: at most train.max_steps steps with the schedule planned for them,
and a stop at train.max_minutes by the clock it is given (a fake one here: no wall-clock figures).

Real training on CPU, kept small: a one-layer cut of the packaged model, batches of 4 at 32 tokens.
"""

from __future__ import annotations

import itertools

import pytest

from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.finetune import fine_tune, plan_training, read_training_stats

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

CFG = TrainConfig(batch_size=4, mini_batch_size=2, max_seq_length=32, epochs=2, learning_rate=1e-4,
                  warmup_ratio=0.0, dev_fraction=0.25, dev_min_pairs=4, eval_every=4, checkpoint_every=None)


def test_max_steps_caps_the_training_and_its_schedule_ends_there(tiny_base, pairs, tmp_path):
    cfg = CFG.model_copy(update={"max_steps": 3})
    assert len(plan_training(pairs, CFG).batches) > 3
    out = fine_tune(pairs, base_path=tiny_base, out_dir=tmp_path / "model", cfg=cfg, show_progress=False)
    stats = read_training_stats(out)
    assert stats["steps"] == stats["planned_steps"] == len(stats["losses"]) == 3
    assert stats["stopped_early"] is None
    # linear decay without warm-up planned for 3 steps: the learning rate reaches 0 at the third
    assert stats["last_learning_rate"] == 0.0
    assert [p["step"] for p in stats["dev"]] == [0, 3]


def test_a_training_past_its_minutes_stops_after_that_step_and_saves_its_best_scored_step(tiny_base, pairs, tmp_path):
    ticks = itertools.count(0, 60)  # each reading of the clock is a minute later
    cfg = CFG.model_copy(update={"max_minutes": 2.5})
    planned = len(plan_training(pairs, cfg).batches)
    assert planned > 4
    steps = []
    out = fine_tune(pairs, base_path=tiny_base, out_dir=tmp_path / "model", cfg=cfg, show_progress=False,
                    clock=lambda: next(ticks), on_step=lambda step, loss: steps.append(step))
    stats = read_training_stats(out)
    # the clock reads 0 at the start, 60 after step 1, 120 after step 2, 180 after step 3: past 150 s
    assert steps == [1, 2, 3]
    assert (stats["steps"], stats["planned_steps"]) == (3, planned)
    assert stats["stopped_early"].startswith("train.max_minutes: 3.0 minutes reached after step 3 of")
    # the dev split is scored where it stopped, and the saved step is the best scored one
    assert [p["step"] for p in stats["dev"]] == [0, 3]
    assert stats["saved_step"] == 3 and stats["saved_dev"] == {k: v for k, v in stats["dev"][-1].items()
                                                                if k != "step"}
    # the schedule stays planned for every step: stopped early, the learning rate is still above 0
    assert stats["last_learning_rate"] > 0
    assert (out / "model.safetensors").exists() or any(out.glob("*.safetensors"))
