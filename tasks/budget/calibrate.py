"""The budget's calibration: this machine's rates, measured on a few corpus passages on the workers
(plain functions; flows/budget.py wraps them as Prefect tasks).

Each measurement times the code the stage itself runs, after a warm-up (model load, ONNX export,
a style's prompt prefix), on a sample small enough that the whole calibration takes well under a
minute on 2 cores; what it loads stays loaded in the worker for the stage (the encoder) or is
cached on disk (the generator's de-quantized model, the ONNX export).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refinery.storage import read_shard
from refinery.tasks.embedding import all_cores, encode
from refinery.tasks.embedding_tasks import cached_encoder
from refinery.tasks.evaluate.config import EvaluateConfig
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.config import TrainConfig

# Corpus passages read for the calibration (the first of the first shards, in shard order).
SAMPLE_DOCS = 64
# The generator: at most this many passages of one prompt style, timed after a warm-up passage
# (a batch of one style is what the stage's generation tasks run; their batches of 8 cost a little
# less per passage, so the rate errs on the safe side). ~3 s a passage on a busy 2-core machine.
GENERATOR_PASSAGES = 4
# The encoder: documents embedded after a warm-up of a few.
ENCODER_DOCS = 64
ENCODER_WARMUP_DOCS = 8
# Training: steps of at most this many pairs, the first a warm-up; the step's seconds are scaled
# to train.batch_size (a step's cost grows with its pairs: each is embedded, and back-propagated).
TRAIN_BATCH = 8
TRAIN_STEPS = 2
QUERY_WORDS = 12


def corpus_sample(shards: Sequence[str], n: int = SAMPLE_DOCS) -> list[str]:
    """The texts of the first ``n`` documents of ``shards`` (in path order)."""
    texts: list[str] = []
    for path in sorted(shards):
        texts += [t for t in read_shard(path, columns=["text"]).column("text").to_pylist() if t]
        if len(texts) >= n:
            break
    return texts[:n]


def worker_slots() -> int:
    """Tasks the Dask cluster runs at once: the sum of its workers' threads (run on a worker)."""
    from distributed import get_client

    return sum(get_client().nthreads().values())


def measure_generator(shards: Sequence[str], generator: str, cfg: SynthesizeConfig, cache_dir: str) -> dict[str, Any]:
    """Seconds per passage of an LLM generator at ``cfg``'s samples per passage, on one slot."""
    from refinery.tasks.synthesize.generators import build_generator

    started = time.monotonic()
    backend = build_generator(generator, cfg, cache_dir=Path(cache_dir), show_progress=False)
    texts = corpus_sample(shards)
    styles = [backend.attributes_for(t).style for t in texts]
    style = Counter(styles).most_common(1)[0][0]
    same = [t for t, s in zip(texts, styles) if s == style]
    backend.generate(same[:1])  # the model's load and the style's prompt prefix
    timed = same[1: 1 + GENERATOR_PASSAGES] or same[:1]
    began = time.monotonic()
    backend.generate(timed)
    seconds = time.monotonic() - began
    return {"generator": generator, "passages": len(timed), "seconds": round(seconds, 2),
            "seconds_per_passage": seconds / len(timed), "total_seconds": round(time.monotonic() - started, 1)}


def measure_encoder(shards: Sequence[str], model_path: str, cfg: EvaluateConfig, cache_dir: str) -> dict[str, Any]:
    """Documents per second the base model embeds on one slot, as the pools are embedded
    (``evaluate.encoder``, ``max_seq_length``, ``encode_batch_size``)."""
    started = time.monotonic()
    model = cached_encoder(model_path, cfg.max_seq_length, cfg.encoder, cache_dir)
    texts = corpus_sample(shards, ENCODER_DOCS + ENCODER_WARMUP_DOCS)
    encode(model, texts[:ENCODER_WARMUP_DOCS], batch_size=cfg.encode_batch_size, show_progress=False)
    timed = texts[ENCODER_WARMUP_DOCS:] or texts
    began = time.monotonic()
    encode(model, timed, batch_size=cfg.encode_batch_size, show_progress=False)
    seconds = time.monotonic() - began
    return {"docs": len(timed), "seconds": round(seconds, 2), "docs_per_second": len(timed) / seconds,
            "total_seconds": round(time.monotonic() - started, 1)}


def measure_training_step(shards: Sequence[str], base_path: str, cfg: TrainConfig, *,
                          hard_negatives: bool) -> dict[str, Any]:
    """Seconds of one training step at ``cfg.batch_size`` and ``max_seq_length`` on this worker's
    cores (as the train stage runs): steps of :data:`TRAIN_BATCH` (query, passage[, negative])
    made of corpus passages, the first a warm-up, the others timed and scaled to the batch size."""
    from refinery.tasks.train.finetune import fine_tune

    started = time.monotonic()
    batch = min(cfg.batch_size, TRAIN_BATCH)
    texts = corpus_sample(shards, 2 * batch * TRAIN_STEPS)
    half = len(texts) // 2 if hard_negatives else len(texts)
    pairs = [TrainPair(" ".join(t.split()[:QUERY_WORDS]), t, texts[half + i] if hard_negatives else None,
                       doc_id=f"p{i}", negative_doc_id=f"n{i}" if hard_negatives else None)
             for i, t in enumerate(texts[:half])]
    cached = cfg.mini_batch_size is not None and cfg.mini_batch_size < cfg.batch_size
    mini = max(1, batch * cfg.mini_batch_size // cfg.batch_size) if cached else cfg.mini_batch_size
    trial = cfg.model_copy(update={
        "batch_size": batch, "mini_batch_size": mini, "epochs": 1, "max_steps": TRAIN_STEPS, "max_minutes": None,
        "dev_fraction": None, "checkpoint_every": None, "warmup_ratio": 0.0, "loss": "mnrl"})
    ticks: list[float] = []
    with all_cores(), tempfile.TemporaryDirectory(prefix="refinery-calibration-") as tmp:
        began = time.monotonic()
        fine_tune(pairs, base_path=base_path, out_dir=Path(tmp) / "model", cfg=trial, show_progress=False,
                  on_step=lambda step, loss: ticks.append(time.monotonic()))
    steps = [b - a for a, b in zip([began, *ticks], ticks)]
    timed = steps[1:] or steps  # the first step warms up
    per_step = sum(timed) / len(timed) * cfg.batch_size / batch
    return {"pairs_per_step": batch, "steps_timed": len(timed), "seconds_per_step": per_step,
            "total_seconds": round(time.monotonic() - started, 1)}
