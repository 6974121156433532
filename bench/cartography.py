"""The data map's cost and what it finds: one map checkpoint against a short training, on BBC pairs.

    python -m bench.cartography [--articles 40] [--max-seq-length 128] [--steps 6]

Two pairs per article of four BBC labels, (headline, body) and (first sentence, the rest), as
``tests/train`` makes them; the packaged model; ``train.cartography`` at its defaults (128 pairs,
15 candidates). Printed: the seconds of one map checkpoint (after a warm-up), the training's seconds
with its dev scorings and map checkpoints, the regions, and the lowest-confidence pairs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter

import numpy as np

from refinery.tasks.embedding import BASE_MODEL_PATH, load_encoder
from refinery.tasks.ingest.readers import bbc_folder
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.cartography import data_map, plan_map, score_checkpoint
from refinery.tasks.train.config import CartographyConfig, TrainConfig
from refinery.tasks.train.finetune import fine_tune, read_training_stats


def bbc_pairs(articles: int) -> list[TrainPair]:
    pairs = []
    for label in ("business", "tech", "sports", "politics"):
        for i, path in enumerate(sorted((bbc_folder() / label).glob("*.txt"))[:articles]):
            title, _, body = path.read_text(encoding="utf-8", errors="replace").partition("\n")
            first, _, rest = body.strip().partition(". ")
            pairs += [TrainPair(title.strip(), body.strip(), doc_id=f"{label}{i}", pair_id=f"{label}{i}:title"),
                      TrainPair(first, rest, doc_id=f"{label}{i}", pair_id=f"{label}{i}:first")]
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=40, help="articles per label")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    pairs = bbc_pairs(args.articles)
    cfg = TrainConfig(batch_size=32, mini_batch_size=16, max_seq_length=args.max_seq_length, eval_every=2,
                      max_steps=args.steps, checkpoint_every=None, cartography=CartographyConfig(enabled=True))
    model = load_encoder(BASE_MODEL_PATH)
    model.max_seq_length = args.max_seq_length
    plan = plan_map(pairs, cfg.cartography, seed=cfg.seed)
    score_checkpoint(model, plan, cfg.scale)  # warm-up
    started = time.monotonic()
    score_checkpoint(model, plan, cfg.scale)
    one = time.monotonic() - started
    with tempfile.TemporaryDirectory() as tmp:
        stats = read_training_stats(fine_tune(pairs, out_dir=f"{tmp}/model", cfg=cfg, show_progress=False))
    record = stats["cartography"]
    mapped = data_map(record, cfg.cartography)
    print(f"{len(pairs)} pairs at {args.max_seq_length} tokens; a map checkpoint of {len(plan.pairs)} pairs: {one:.1f} s")
    print(f"training: {stats['steps']} steps of {cfg.batch_size}, {len(stats['dev'])} dev scorings, "
          f"{len(record['steps'])} map checkpoints: {stats['seconds']:.1f} s")
    print("regions:", dict(Counter(mapped.column("region").to_pylist())))
    conf = np.asarray(record["confidence"])
    print("mean confidence per checkpoint:", [round(float(c), 3) for c in conf.mean(axis=1)])
    for i in np.argsort(conf.mean(axis=0))[:5]:
        print(f"  {record['pair_ids'][i]}: confidence {conf[:, i].mean():.3f}, variability {conf[:, i].std():.3f}")


if __name__ == "__main__":
    main()
