"""Fine-tune a sentence-transformers model with MultipleNegativesRankingLoss (cached: GradCache), on CPU, offline.

A plain PyTorch loop around sentence-transformers' own ``MultipleNegativesRankingLoss`` and the
model's own forward pass. The ``SentenceTransformerTrainer`` route would add ``datasets`` and the
whole HF Trainer machinery for what is a single loop here, with no hub or reporting hooks to
switch off.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from refinery.tasks.embedding import BASE_MODEL_PATH, load_encoder
from refinery.tasks.train.config import TrainConfig

# Written next to the model files: what the run did, for the caller to log or show.
TRAINING_STATS_FILE = "refinery_training.json"

Example = tuple[str, str] | tuple[str, str, str]


def make_batches(examples: Sequence[Example], batch_size: int, *, seed: int) -> list[list[Example]]:
    """Shuffle ``examples`` into batches in which no text occurs twice.

    With in-batch negatives a repeated passage would be both the positive and a negative of the
    same query, so a conflicting example waits for a later batch. Triplets and pairs go in
    separate batches (the loss needs the same columns throughout a batch). The last batch of
    each kind may be smaller; a batch of one (no negatives to learn from) is dropped.
    """
    rng = random.Random(seed)
    batches: list[list[Example]] = []
    for width in (2, 3):
        group = [ex for ex in examples if len(ex) == width]
        rng.shuffle(group)
        pending: deque[Example] = deque(group)
        while pending:
            batch: list[Example] = []
            texts: set[str] = set()
            deferred: list[Example] = []
            while pending and len(batch) < batch_size:
                ex = pending.popleft()
                if any(t in texts for t in ex):
                    deferred.append(ex)
                    continue
                batch.append(ex)
                texts.update(ex)
            pending.extendleft(reversed(deferred))
            if len(batch) < 2:
                # Nothing else fits beside it (only conflicting examples are left): no negatives.
                continue
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def _examples(pairs: Sequence[Sequence[str]], use_hard_negatives: bool) -> list[Example]:
    out: list[Example] = []
    for item in pairs:
        if len(item) not in (2, 3):
            raise ValueError(f"expected (query, positive) or (query, positive, negative), got {len(item)} fields")
        query, positive = item[0], item[1]
        negative = item[2] if len(item) == 3 else None
        if use_hard_negatives and negative:
            out.append((query, positive, negative))
        else:
            out.append((query, positive))
    return out


def fine_tune(
    pairs: Sequence[tuple[str, str] | tuple[str, str, str]],
    *,
    base_path: str | os.PathLike[str] = BASE_MODEL_PATH,
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig | None = None,
    show_progress: bool = True,
) -> Path:
    """Fine-tune the model at ``base_path`` on ``pairs`` and save it to ``out_dir``.

    ``pairs`` are (query, positive passage) or (query, positive, hard negative); negatives are
    used only with ``cfg.use_hard_negatives``. The result is a sentence-transformers folder
    (loadable with :func:`tasks.embedding.load_encoder`) plus :data:`TRAINING_STATS_FILE`. It is
    written to a temporary folder beside ``out_dir`` and renamed into place, so ``out_dir`` holds
    either the previous model or the complete new one, never a partial write. Returns ``out_dir``.
    """
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from transformers import get_linear_schedule_with_warmup

    cfg = cfg or TrainConfig()
    out_dir = Path(out_dir)
    examples = _examples(pairs, cfg.use_hard_negatives)
    if len(examples) < 2:
        raise ValueError(f"need at least 2 training pairs, got {len(examples)}")

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = load_encoder(base_path)
    saved_max_seq_length = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length
    if cfg.mini_batch_size is not None and cfg.mini_batch_size < cfg.batch_size:
        loss_fn = CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size,
                                                     show_progress_bar=False)
    else:
        loss_fn = MultipleNegativesRankingLoss(model, scale=cfg.scale)

    epoch_batches = [make_batches(examples, cfg.batch_size, seed=cfg.seed + epoch) for epoch in range(cfg.epochs)]
    total_steps = sum(len(b) for b in epoch_batches)
    if total_steps == 0:
        raise ValueError("no batch of at least 2 distinct pairs could be formed")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps
    )

    losses: list[float] = []
    started = time.monotonic()
    progress = _progress(total_steps, show_progress)
    model.train()
    for batches in epoch_batches:
        for batch in batches:
            columns = [list(col) for col in zip(*batch)]
            features = [model.preprocess(col) for col in columns]
            loss = loss_fn(features, torch.empty(0))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{losses[-1]:.3f}")
    if progress is not None:
        progress.close()
    model.eval()
    # Saved with the base model's token limit so base and tuned are evaluated on the same text.
    model.max_seq_length = saved_max_seq_length

    stats = {
        "examples": len(examples),
        "triplets": sum(1 for ex in examples if len(ex) == 3),
        "steps": total_steps,
        "epochs": cfg.epochs,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "mean_loss_last_10pct": sum(losses[-max(1, len(losses) // 10) :]) / max(1, len(losses) // 10),
        "seconds": round(time.monotonic() - started, 1),
        "config": cfg.model_dump(),
    }
    _save_atomically(model, out_dir, stats)
    return out_dir


def _save_atomically(model, out_dir: Path, stats: dict) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save(str(tmp), create_model_card=False)
        (tmp / TRAINING_STATS_FILE).write_text(json.dumps(stats, indent=2))
        if out_dir.exists():
            # A directory cannot be replaced in one rename: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _progress(total: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fine-tune (MNRL)", unit="step")
