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


def _all_batches(pairs, cfg):
    return len(plan_training(pairs, cfg.model_copy(update={"max_steps": None})).batches)


def test_steps_faster_than_planned_are_re_planned_to_fill_fit_minutes(tiny_base, pairs, tmp_path):
    """The budget planned 6 steps of a misjudged length; timed, they take 10 s, so 2 minutes hold more."""
    ticks = itertools.count(0, 10)  # read once at the start and once after each step: 10 s a step
    cfg = CFG.model_copy(update={"max_steps": 6, "fit_minutes": 2.0, "epochs": 4})
    assert _all_batches(pairs, cfg) >= 12
    out = fine_tune(pairs, base_path=tiny_base, out_dir=tmp_path / "model", cfg=cfg, show_progress=False,
                    clock=lambda: next(ticks))
    stats = read_training_stats(out)
    # timed from step 1 (10 s) to step 1 + eval_every = 5 (50 s): 10 s a step; 120 - 50 s left: 7 more
    assert stats["replanned"] == {"at_step": 5, "seconds_per_step": 10.0, "from": 6, "to": 12}
    assert (stats["first_planned_steps"], stats["planned_steps"], stats["steps"]) == (6, 12, 12)
    assert len(stats["losses"]) == 12 and stats["stopped_early"] is None
    # the schedule was re-planned with the steps: it ends at 0 on the last one
    assert stats["last_learning_rate"] == 0.0
    assert [p["step"] for p in stats["dev"]] == [0, 4, 8, 12]


def test_steps_slower_than_planned_are_re_planned_down_and_the_schedule_still_ends(tiny_base, pairs, tmp_path):
    ticks = itertools.count(0, 60)  # a minute a step
    cfg = CFG.model_copy(update={"max_steps": 12, "fit_minutes": 7.0, "epochs": 4})
    out = fine_tune(pairs, base_path=tiny_base, out_dir=tmp_path / "model", cfg=cfg, show_progress=False,
                    clock=lambda: next(ticks))
    stats = read_training_stats(out)
    # at step 5 the clock reads 300 s of 420: two more steps fit
    assert stats["replanned"] == {"at_step": 5, "seconds_per_step": 60.0, "from": 12, "to": 7}
    assert stats["steps"] == stats["planned_steps"] == 7
    assert stats["last_learning_rate"] == 0.0


def test_a_training_shorter_than_its_timing_window_keeps_its_plan(tiny_base, pairs, tmp_path):
    ticks = itertools.count(0, 10)
    cfg = CFG.model_copy(update={"max_steps": 4, "fit_minutes": 60.0})
    out = fine_tune(pairs, base_path=tiny_base, out_dir=tmp_path / "model", cfg=cfg, show_progress=False,
                    clock=lambda: next(ticks))
    stats = read_training_stats(out)
    assert stats["replanned"] is None and stats["steps"] == stats["planned_steps"] == 4


def test_a_resumed_training_keeps_the_steps_it_re_planned(tiny_base, pairs, tmp_path):
    """Killed after its re-plan, a training resumes with the re-planned steps and schedule, without
    timing again, and ends where the uninterrupted one ends."""
    cfg = CFG.model_copy(update={"max_steps": 6, "fit_minutes": 2.0, "epochs": 4, "checkpoint_every": 2})

    def run(name, on_step=None):
        ticks = itertools.count(0, 10)
        return fine_tune(pairs, base_path=tiny_base, out_dir=tmp_path / name, cfg=cfg, show_progress=False,
                         checkpoint_dir=tmp_path / f"{name}-ckpt", clock=lambda: next(ticks), on_step=on_step)

    whole = read_training_stats(run("whole"))

    class Killed(Exception):
        pass

    def die_at_7(step, loss):
        if step == 7:  # its last checkpoint is step 6's, after the re-plan at step 5
            raise Killed

    with pytest.raises(Killed):
        run("resumed", die_at_7)
    resumed = read_training_stats(run("resumed"))
    assert resumed["resumed_from_step"] == 6
    assert whole["replanned"]["to"] > whole["first_planned_steps"] == 6
    assert resumed["replanned"] == whole["replanned"] and resumed["planned_steps"] == whole["planned_steps"]
    assert resumed["steps"] == whole["steps"] and resumed["last_learning_rate"] == 0.0
    assert resumed["losses"] == pytest.approx(whole["losses"], abs=1e-5)  # the same steps at the same rates
