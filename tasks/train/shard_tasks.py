"""The train stage's work: contrastive fine-tuning on the kept pairs, on one worker (a plain function;
flows/train.py wraps it as a Prefect task)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from refinery.storage import read_rows, read_shard, write_shard
from refinery.tasks.embedding import all_cores
from refinery.tasks.synthesize.split import TRAIN
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.finetune import fine_tune, plan_training, read_training_stats

# The dev split's pairs, beside the model: what later steps fit on (never an evaluation set).
DEV_PAIRS_FILE = "dev_pairs.parquet"

# What of the training's stats goes into the stage's (the rest is in the model folder's stats file).
STAGE_STATS = ("train_pairs", "triplets", "dev_pairs", "dev_passages", "dev_skipped", "steps", "device", "first_loss",
               "last_loss", "losses", "dev", "saved_step", "saved_dev", "resumed_from_step", "seconds")


def train_model(pairs_path: Path, corpus_shards: list[str], base_path: str, out_dir: Path,
                cfg: TrainConfig, checkpoint_dir: Path | None = None) -> dict[str, object]:
    """Fine-tune ``base_path`` on (query, positive[, hard negative]) of the kept training pairs.

    Pairs held out for evaluation (``split = 'heldout'``) are never trained on. A checkpoint in
    ``checkpoint_dir`` left by a killed training of the same pairs is continued from.
    """
    pairs = read_shard(pairs_path).filter(pc.field("kept") & (pc.field("split") == TRAIN))
    # a pair trains with its mined negative exactly when it has one (synthesize.hard_negatives);
    # the texts of the pairs' negatives only are read, never the corpus's
    mined = pairs.column("negative_doc_id").to_pylist()
    text_of: dict[str, str] = {}
    if wanted := sorted({d for d in mined if d}):
        found = read_rows(sorted(corpus_shards), wanted, ["doc_id", "text"])
        text_of = dict(zip(found.column("doc_id").to_pylist(), found.column("text").to_pylist()))
    negative_ids = [d if d in text_of else None for d in mined]
    negatives = [text_of[d] if d else None for d in negative_ids]
    examples = [
        TrainPair(q, p, n, doc_id=d, negative_doc_id=nd)
        for q, p, d, n, nd in zip(pairs.column("query").to_pylist(), pairs.column("positive").to_pylist(),
                                  pairs.column("doc_id").to_pylist(), negatives, negative_ids)
    ]
    if cfg.max_pairs is not None and len(examples) > cfg.max_pairs:  # a seeded choice, in pair order
        chosen = sorted(random.Random(cfg.seed).sample(range(len(examples)), cfg.max_pairs))
        examples = [examples[i] for i in chosen]
    if not examples:
        raise ValueError("no kept training pairs: loosen synthesize.consistency_top_k or add passages")
    with all_cores():  # training is the only work left in the run
        path = fine_tune(examples, base_path=base_path, out_dir=out_dir, cfg=cfg, checkpoint_dir=checkpoint_dir)
    stats = read_training_stats(path) or {}
    dev = plan_training(examples, cfg).dev
    dev_path = write_shard(pa.table({"query": pa.array([e.query for e in dev], pa.string()),
                                     "doc_id": pa.array([e.passage_key for e in dev], pa.string()),
                                     "positive": pa.array([e.positive for e in dev], pa.string())}),
                           out_dir.parent / DEV_PAIRS_FILE)
    return {"model_path": str(path), "dev_pairs_path": str(dev_path), "examples": len(examples),
            "with_negatives": sum(1 for e in examples if e.negative is not None),
            **{k: stats.get(k) for k in STAGE_STATS}}
