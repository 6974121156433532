"""Prefect task of the train stage: contrastive fine-tuning on the kept pairs, on one worker."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
from prefect import task

from storage import read_shard, read_shards
from tasks.embedding import all_cores
from tasks.train.config import TrainConfig
from tasks.train.finetune import fine_tune


@task(name="fine-tune", task_run_name="fine-tune on {pairs_path.name}")
def train_model(pairs_path: Path, corpus_shards: list[str], base_path: str, out_dir: Path,
                cfg: TrainConfig) -> dict[str, object]:
    """Fine-tune ``base_path`` on (query, positive[, hard negative]) of kept pairs; returns the saved path."""
    pairs = read_shard(pairs_path)
    pairs = pairs.filter(pc.field("kept"))
    negatives: list[str | None] = [None] * pairs.num_rows
    if cfg.use_hard_negatives:
        corpus = read_shards(sorted(corpus_shards), ["doc_id", "text"])
        text_of = dict(zip(corpus.column("doc_id").to_pylist(), corpus.column("text").to_pylist()))
        negatives = [text_of.get(d) if d else None for d in pairs.column("negative_doc_id").to_pylist()]
    examples = [
        (q, p, n) if n is not None else (q, p)
        for q, p, n in zip(pairs.column("query").to_pylist(), pairs.column("positive").to_pylist(), negatives)
    ]
    if not examples:
        raise ValueError("no kept pairs to train on: loosen synthesize.consistency_top_k or add passages")
    with all_cores():  # training is the only work left in the run
        path = fine_tune(examples, base_path=base_path, out_dir=out_dir, cfg=cfg)
    return {"model_path": str(path), "examples": len(examples),
            "with_negatives": sum(1 for e in examples if len(e) == 3)}
