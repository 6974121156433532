"""Prefect task of the train stage: contrastive fine-tuning on the kept pairs, on one worker."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
from prefect import task

from refinery.storage import read_shard, read_shards
from refinery.tasks.embedding import all_cores
from refinery.tasks.synthesize.split import TRAIN
from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.finetune import fine_tune


@task(name="fine-tune", task_run_name="fine-tune on {pairs_path.name}")
def train_model(pairs_path: Path, corpus_shards: list[str], base_path: str, out_dir: Path,
                cfg: TrainConfig) -> dict[str, object]:
    """Fine-tune ``base_path`` on (query, positive[, hard negative]) of the kept training pairs.

    Pairs held out for evaluation (``split = 'heldout'``) are never trained on; shards written
    before the split existed have no such column and are all training pairs.
    """
    pairs = read_shard(pairs_path)
    train = pc.field("kept")
    if "split" in pairs.column_names:
        train = train & (pc.field("split") == TRAIN)
    pairs = pairs.filter(train)
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
        raise ValueError("no kept training pairs: loosen synthesize.consistency_top_k or add passages")
    with all_cores():  # training is the only work left in the run
        path = fine_tune(examples, base_path=base_path, out_dir=out_dir, cfg=cfg)
    return {"model_path": str(path), "examples": len(examples),
            "with_negatives": sum(1 for e in examples if len(e) == 3)}
