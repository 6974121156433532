"""Fine-tune a sentence-transformers model with MultipleNegativesRankingLoss (cached: GradCache), offline.

A plain PyTorch loop around sentence-transformers' own ``MultipleNegativesRankingLoss`` and the
model's own forward pass. The ``SentenceTransformerTrainer`` route would add ``datasets`` and the
whole HF Trainer machinery for what is a single loop here, with no hub or reporting hooks to
switch off. It runs on CUDA when torch sees a GPU, on the CPU otherwise.

Around the loop: a dev split held out of training and scored as it goes (:mod:`.dev`), the best
scored step kept as the result, a data map of the training pairs scored at the same steps
(:mod:`.cartography`), and checkpoints that let a killed training continue where its last one
left off (:mod:`.checkpoint`).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery.storage import swap_folder
from refinery.storage.location import location, staging_dir
from refinery.tasks.embedding import BASE_MODEL_PATH, encode, load_encoder
from refinery.tasks.train import cartography
from refinery.tasks.train.batches import TrainPair, as_train_pairs, make_batches
from refinery.tasks.train.checkpoint import (
    fingerprint,
    load_checkpoint,
    remove_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.dev import better, dev_scores, split_dev

# Written next to the model files: what the run did, for the caller to log or show.
TRAINING_STATS_FILE = "refinery_training.json"

__all__ = ["TRAINING_STATS_FILE", "TrainPair", "TrainingPlan", "fine_tune", "make_batches", "plan_training",
           "read_training_stats", "training_device"]


@dataclass(frozen=True)
class TrainingPlan:
    """What a training does: its batches, in step order over all epochs, and its dev pairs; ``spare``:
    the batches of ``epochs`` passes past ``max_steps``, which a re-planned training (``fit_minutes``)
    may go on to."""

    batches: list[list[TrainPair]]
    train: list[TrainPair]
    dev: list[TrainPair]
    dev_skipped: str | None
    spare: list[list[TrainPair]] = field(default_factory=list)


def plan_training(pairs: Sequence[TrainPair | Sequence[str | None]], cfg: TrainConfig) -> TrainingPlan:
    """The dev split and the seeded no-duplicates batches of every epoch (a pure function of its inputs,
    which is what lets a resumed training take up the same batches at the step it reached)."""
    examples = as_train_pairs(pairs)
    split = split_dev(examples, cfg.dev_fraction, min_pairs=cfg.dev_min_pairs, seed=cfg.seed)
    trained = split.train
    if cfg.loss == "marginmse":  # MarginMSE alone learns from triplets with a teacher's margin only
        trained = [ex for ex in trained if ex.margin is not None]
    batches = [b for epoch in range(cfg.epochs) for b in make_batches(trained, cfg.batch_size,
                                                                       seed=cfg.seed + epoch)]
    planned = batches[: cfg.max_steps] if cfg.max_steps is not None else batches
    return TrainingPlan(planned, trained, split.dev, split.skipped, spare=batches[len(planned):])


def training_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fine_tune(
    pairs: Sequence[TrainPair | Sequence[str | None]],
    *,
    base_path: str | os.PathLike[str] = BASE_MODEL_PATH,
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Path:
    """Fine-tune the model at ``base_path`` on ``pairs`` and save it to ``out_dir``.

    ``pairs`` are :class:`TrainPair` or (query, positive[, hard negative]) tuples; a pair with a
    negative trains as a triplet. The result is a sentence-transformers folder
    (loadable with :func:`tasks.embedding.load_encoder`) plus :data:`TRAINING_STATS_FILE`: the
    per-step losses, the dev curve and the step saved. It is written to a temporary folder beside
    ``out_dir`` and renamed into place, so ``out_dir`` holds either the previous model or the
    complete new one, never a partial write. Returns ``out_dir``.

    With ``checkpoint_dir``, a checkpoint is written there every ``cfg.checkpoint_every`` steps; a
    call that finds one of the same training continues from it, and one that finds ``out_dir``
    already holding this training's model returns at once. The checkpoint is removed once the
    model is saved. ``device``: None for CUDA when available, else CPU. ``on_step(step, loss)`` is
    called after each step and its checkpoint.

    With ``cfg.max_minutes``, the training stops after the step at which its steps (a resumed
    training's earlier ones included) have taken that long by ``clock`` (seconds): the dev split is
    scored at that step and the best scored step saved, as at the end; the stats say so
    (``stopped_early``, ``planned_steps``). With ``cfg.fit_minutes``, the steps are re-planned once
    from the clock (:func:`_refit`); the stats keep what was decided (``replanned``).

    With ``cfg.cartography.enabled``, the mapped pairs are scored wherever the dev split is (before
    the first step, every ``eval_every`` steps, at the last) and the stats hold the series
    (``cartography``: :func:`tasks.train.cartography.new_record`), checkpoints too.
    """
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from transformers import get_linear_schedule_with_warmup

    cfg = cfg or TrainConfig()
    out_dir = location(out_dir)
    ckpt_dir = location(checkpoint_dir) if checkpoint_dir is not None else None
    examples = as_train_pairs(pairs)
    if len(examples) < 2:
        raise ValueError(f"need at least 2 training pairs, got {len(examples)}")
    key = fingerprint(examples, cfg, base_path)
    done = read_training_stats(out_dir)
    if done is not None and done.get("fingerprint") == key:
        remove_checkpoint(ckpt_dir)  # killed after the model was saved, before the checkpoint went
        return out_dir
    plan = plan_training(examples, cfg)
    total_steps = len(plan.batches)
    if total_steps == 0:
        raise ValueError("no batch of at least 2 distinct pairs could be formed")

    device = device or training_device()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = load_encoder(base_path)
    model.to(device)
    saved_max_seq_length = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length
    if cfg.mini_batch_size is not None and cfg.mini_batch_size < cfg.batch_size:
        loss_fn = CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size,
                                                     show_progress_bar=False)
    else:
        loss_fn = MultipleNegativesRankingLoss(model, scale=cfg.scale)
    batch_loss = _margin_loss(model, cfg, loss_fn) if cfg.loss != "mnrl" else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def schedule(total: int, at_step: int = 0):
        """The warm-up and linear decay planned for ``total`` steps, at ``at_step``."""
        planned = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=int(cfg.warmup_ratio * total),
                                                  num_training_steps=total)
        for _ in range(at_step):
            planned.step()
        return planned

    step, losses, curve, seconds_before = 0, [], [], 0.0
    mapped = cartography.plan_map(plan.train, cfg.cartography, seed=cfg.seed) if cfg.cartography.enabled else None
    data_map = cartography.new_record(mapped) if mapped is not None else None
    best_step: int | None = None
    best_score: dict[str, float] | None = None
    best_state: dict[str, Any] | None = None
    resumed_from: int | None = None
    replanned: dict[str, Any] | None = None
    first_planned = total_steps
    if (state := load_checkpoint(ckpt_dir, key)) is not None:
        model.load_state_dict(state["model"])
        total_steps, replanned = state.get("total_steps", total_steps), state.get("replanned")
        scheduler = schedule(total_steps)  # before the optimizer's state, which holds the learning rate reached
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = resumed_from = state["step"]
        losses, curve, seconds_before = state["losses"], state["dev"], state["seconds"]
        best_step, best_score, best_state = state["best_step"], state["best_score"], state["best_state"]
        data_map = state.get("cartography", data_map)
    else:
        scheduler = schedule(total_steps)
        if plan.dev:
            curve.append({"step": 0, **_score(model, plan.dev, cfg.scale)})  # the base model, for comparison
        if mapped is not None:
            cartography.add_checkpoint(data_map, 0, cartography.score_checkpoint(model, mapped, cfg.scale))

    started = clock()
    limit = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    stopped_early: str | None = None
    timed_from: tuple[int, float] | None = None  # (step, seconds spent) where the re-plan's timing starts
    batches = plan.batches + plan.spare
    progress = _progress(total_steps, step, show_progress)
    model.train()
    while step < total_steps:
        batch = batches[step]
        features = [_on(device, model.preprocess(list(col))) for col in zip(*(ex.columns() for ex in batch))]
        if batch_loss is not None and all(ex.margin is not None and ex.negative is not None for ex in batch):
            loss = batch_loss(features, torch.tensor([ex.margin for ex in batch], device=device))
        else:
            loss = loss_fn(features, torch.empty(0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        losses.append(float(loss.detach()))
        spent = seconds_before + clock() - started
        if cfg.fit_minutes is not None and replanned is None:
            if timed_from is None:  # the first step of this process: its seconds hold loading, not steps
                timed_from = (step, spent)
            elif step - timed_from[0] == cfg.eval_every:
                replanned = _refit(cfg, step, spent, timed_from, total_steps, len(batches))
                if replanned["to"] != total_steps:
                    total_steps = replanned["to"]
                    scheduler = schedule(total_steps, step)
                    if progress is not None:
                        progress.total = total_steps
                        progress.refresh()
        if limit is not None and spent >= limit and step < total_steps:
            stopped_early = (f"train.max_minutes: {spent / 60:.1f} minutes reached after step {step} of "
                             f"{total_steps}")
        last = step == total_steps or stopped_early is not None
        if plan.dev and (step % cfg.eval_every == 0 or last):
            score = _score(model, plan.dev, cfg.scale)
            curve.append({"step": step, **score})
            if better(score, best_score):
                best_step, best_score = step, score
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if mapped is not None and (step % cfg.eval_every == 0 or last):
            cartography.add_checkpoint(data_map, step, cartography.score_checkpoint(model, mapped, cfg.scale))
        if ckpt_dir is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not last:
            save_checkpoint(ckpt_dir, {
                "fingerprint": key, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(), "losses": losses, "dev": curve,
                "best_step": best_step, "best_score": best_score, "best_state": best_state,
                "total_steps": total_steps, "replanned": replanned, "seconds": seconds_before + clock() - started,
                **({"cartography": data_map} if data_map is not None else {})})
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.3f}", **_time_left(spent, limit))
        if on_step is not None:
            on_step(step, losses[-1])
        if stopped_early is not None:
            break
    if progress is not None:
        progress.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    # Saved with the base model's token limit so base and tuned are evaluated on the same text.
    model.max_seq_length = saved_max_seq_length

    tail = losses[-max(1, len(losses) // 10):]
    stats = {
        "examples": len(examples),
        "train_pairs": len(plan.train),
        "triplets": sum(1 for ex in plan.train if ex.negative is not None),
        "loss": cfg.loss,
        "with_margins": sum(1 for ex in plan.train if ex.margin is not None),
        "dev_pairs": len(plan.dev),
        "dev_passages": len({ex.passage_key for ex in plan.dev}),
        "dev_skipped": plan.dev_skipped,
        "steps": step,
        "planned_steps": total_steps,
        "first_planned_steps": first_planned,
        "replanned": replanned,
        "stopped_early": stopped_early,
        "epochs": cfg.epochs,
        "device": device,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "mean_loss_last_10pct": sum(tail) / len(tail),
        "losses": losses,
        "dev": curve,
        "saved_step": best_step if best_step is not None else step,
        "saved_dev": best_score,
        "resumed_from_step": resumed_from,
        "seconds": round(seconds_before + clock() - started, 1),
        "last_learning_rate": scheduler.get_last_lr()[0],
        "fingerprint": key,
        "config": cfg.model_dump(),
        **({"cartography": data_map} if data_map is not None else {}),
    }
    _save_atomically(model, out_dir, stats)
    remove_checkpoint(ckpt_dir)
    return out_dir


def _margin_loss(model, cfg: TrainConfig, mnrl):
    """The loss of a batch of triplets with a teacher's margins: sentence-transformers' MarginMSELoss on
    the student's ``scale`` × cosine, alone or (``mnrl+marginmse``) beside MNRL on the same embeddings.

    With ``mini_batch_size`` below ``batch_size`` both go through GradCache (the loss of the whole
    batch, the memory of a mini-batch: a plain step of 32 triplets at 256 tokens needs ~10 GB);
    otherwise one forward pass over the batch."""
    import torch
    from sentence_transformers.base.losses.merged_forward import embed_columns
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MarginMSELoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.util import pairwise_dot_score

    margin_mse = MarginMSELoss(model, similarity_fct=lambda a, b: cfg.scale * pairwise_dot_score(a, b))
    with_mnrl, weight = cfg.loss == "mnrl+marginmse", cfg.teacher.margin_weight if cfg.loss != "marginmse" else 1.0

    if isinstance(mnrl, CachedMultipleNegativesRankingLoss):
        class CachedWithMargins(CachedMultipleNegativesRankingLoss):
            """GradCache over MNRL (optional) plus MarginMSE: the loss on the cached embeddings."""

            def calculate_loss(self, reps, labels=None, *, with_backward=False):
                total = super().calculate_loss(reps, None, with_backward=with_backward) if with_mnrl else 0.0
                term = weight * margin_mse.compute_loss_from_embeddings([torch.cat(r) for r in reps], labels)
                if with_backward:
                    term.backward()
                    term = term.detach()
                return total + term

        return CachedWithMargins(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size, show_progress_bar=False)

    if not with_mnrl:
        return margin_mse
    plain = mnrl if isinstance(mnrl, MultipleNegativesRankingLoss) else MultipleNegativesRankingLoss(model, scale=cfg.scale)

    def both(features, margins: torch.Tensor) -> torch.Tensor:
        embeddings = embed_columns(model, features)
        return (plain.compute_loss_from_embeddings(embeddings, torch.empty(0))
                + weight * margin_mse.compute_loss_from_embeddings(embeddings, margins))

    return both


def _refit(cfg: TrainConfig, step: int, spent: float, timed_from: tuple[int, float], total_steps: int,
           available: int) -> dict[str, Any]:
    """The steps ``cfg.fit_minutes`` allows, from the seconds the steps since ``timed_from`` took (a dev
    scoring among them, so its share is paid for): at least ``step`` (then the training ends here),
    at most the ``available`` batches."""
    per_step = (spent - timed_from[1]) / (step - timed_from[0])
    left = cfg.fit_minutes * 60 - spent
    fits = step + max(0, math.floor(left / per_step)) if per_step > 0 else available
    return {"at_step": step, "seconds_per_step": round(per_step, 2), "from": total_steps,
            "to": max(step, min(fits, available))}


def read_training_stats(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The :data:`TRAINING_STATS_FILE` of a model folder :func:`fine_tune` saved; None without one."""
    path = location(model_dir) / TRAINING_STATS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _on(device: str, features: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def _score(model, dev: list[TrainPair], scale: float) -> dict[str, float]:
    model.eval()  # no dropout: the score of the weights as they are
    queries = encode(model, [ex.query for ex in dev], show_progress=False)
    passages = encode(model, [ex.positive for ex in dev], show_progress=False)
    model.train()
    return dev_scores(queries, passages, [ex.passage_key for ex in dev], scale=scale)


def _save_atomically(model, out_dir: Path, stats: dict) -> None:
    tmp = staging_dir(out_dir)
    try:
        model.save(str(tmp), create_model_card=False)
        (tmp / TRAINING_STATS_FILE).write_text(json.dumps(stats, indent=2))
        swap_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _time_left(spent: float, limit: float | None) -> dict[str, str]:
    """The progress bar's budget: minutes spent of ``train.max_minutes``."""
    return {} if limit is None else {"minutes": f"{spent / 60:.1f}/{limit / 60:.1f}"}


def _progress(total: int, initial: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="fine-tune", unit="step")
