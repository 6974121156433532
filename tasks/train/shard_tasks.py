"""The train stage's work: contrastive fine-tuning on the kept pairs, on one worker (a plain function;
flows/train.py wraps it as a Prefect task)."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.storage import read_rows, read_shard, write_shard
from refinery.tasks.embedding import all_cores, load_encoder
from refinery.tasks.synthesize.split import TRAIN
from refinery.tasks.train import cartography
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.finetune import fine_tune, plan_training, read_training_stats
from refinery.tasks.train.teachers import DEV_CHECK_DISTRACTORS, dev_check, load_teacher, teach

# What training reads of a synthesize pairs shard (``pair_id`` null in a shard without one).
PAIR_COLUMNS = ("query", "positive", "doc_id", "negative_doc_id", "pair_id")
# The dev split's pairs, beside the model: what later steps fit on (never an evaluation set).
DEV_PAIRS_FILE = "dev_pairs.parquet"
# Training passages beside the dev pairs for fitting the hybrid's weight (evaluate): among its own
# ~80 passages every system scores ~0.98 on the dev split and every weight ties; embedding 500 more
# with the tuned model costs evaluate about as much as a training step.
DEV_DISTRACTORS_FILE = "dev_distractors.parquet"
FUSION_DISTRACTORS = 500
# Beside the model: the training's data map (catalog table `pair_map`) and the pairs it left out
# because an earlier map put them in the hard-to-learn region (`pair_drops`).
PAIR_MAP_FILE = "pair_map.parquet"
PAIR_DROPS_FILE = "pair_drops.parquet"

# What of the training's stats goes into the stage's (the rest is in the model folder's stats file).
STAGE_STATS = ("loss", "with_margins", "train_pairs", "triplets", "dev_pairs", "dev_passages", "dev_skipped", "steps",
               "planned_steps", "first_planned_steps", "replanned", "stopped_early", "device", "first_loss", "last_loss", "losses", "dev", "saved_step", "saved_dev", "resumed_from_step", "seconds")


def train_model(pairs_path: Path, corpus_shards: list[str], base_path: str, out_dir: Path,
                cfg: TrainConfig, checkpoint_dir: Path | None = None,
                replay: Sequence[str] = (), cache_dir: str | None = None,
                hard_to_learn: Mapping[str, str] | None = None) -> dict[str, object]:
    """Fine-tune ``base_path`` on (query, positive[, hard negative]) of the kept training pairs, and
    on a seeded sample of the kept training pairs of the ``replay`` shards (earlier nights' pairs),
    at most ``cfg.replay_ratio`` per new pair.

    Pairs held out for evaluation (``split = 'heldout'``) are never trained on; a replayed pair
    whose passage is not in ``corpus_shards`` (retired since) is left out, and so is one asking a
    query the night's pairs ask. A checkpoint in ``checkpoint_dir`` left by a killed training of the
    same pairs is continued from.

    With ``cfg.teacher``, the teacher is measured on the dev split first and, if it beats the starting
    model there, scores the triplets (margins for ``cfg.loss``, false negatives dropped); otherwise the
    training is MNRL on the pairs as they are, and the stats say why (``teacher``).

    ``hard_to_learn`` (pair id → the run whose data map put it there; ``train.cartography.drop_hard_to_learn``):
    those pairs are left out before ``max_pairs`` is drawn, written to :data:`PAIR_DROPS_FILE` beside the
    model. With ``cfg.cartography.enabled`` the training's data map is written to :data:`PAIR_MAP_FILE`.
    The stats' ``cartography`` has both files and the counts.
    """
    pairs = _training_rows(read_shard(pairs_path))
    replayed = _replay_sample(replay, set(pairs.column("query").to_pylist()), corpus_shards,
                              n=math.floor(cfg.replay_ratio * pairs.num_rows), seed=cfg.seed)
    pairs = pa.concat_tables([pairs, replayed.pop("pairs")])
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
        TrainPair(q, p, n, doc_id=d, negative_doc_id=nd, pair_id=pid)
        for q, p, d, n, nd, pid in zip(pairs.column("query").to_pylist(), pairs.column("positive").to_pylist(),
                                       pairs.column("doc_id").to_pylist(), negatives, negative_ids,
                                       pairs.column("pair_id").to_pylist())
    ]
    carto: dict[str, Any] = {}
    if hard_to_learn:
        examples, dropped = cartography.drop_mapped(examples, hard_to_learn)
        carto = {"dropped": dropped.num_rows,
                 "drops_path": str(write_shard(dropped, out_dir.parent / PAIR_DROPS_FILE))}
    if cfg.max_pairs is not None and len(examples) > cfg.max_pairs:  # a seeded choice, in pair order
        chosen = sorted(random.Random(cfg.seed).sample(range(len(examples)), cfg.max_pairs))
        examples = [examples[i] for i in chosen]
    if why := untrainable(examples, cfg):  # a night of a few documents: no model, and the night goes on
        return {"skipped": why, "examples": len(examples), "replay": replayed,
                **({"cartography": carto} if carto else {})}
    with all_cores():  # training is the only work left in the run
        examples, teacher, cfg = _with_teacher(examples, cfg, base_path, cache_dir)
        path = fine_tune(examples, base_path=base_path, out_dir=out_dir, cfg=cfg, checkpoint_dir=checkpoint_dir)
    stats = read_training_stats(path) or {}
    if record := stats.get("cartography"):
        mapped = cartography.data_map(record, cfg.cartography)
        carto |= {"mapped": mapped.num_rows, "checkpoints": len(record["steps"]),
                  "regions": {r: n for r, n in Counter(mapped.column("region").to_pylist()).most_common()},
                  "map_path": str(write_shard(mapped, out_dir.parent / PAIR_MAP_FILE))}
    dev = plan_training(examples, cfg).dev
    dev_path = write_shard(pa.table({"query": pa.array([e.query for e in dev], pa.string()),
                                     "doc_id": pa.array([e.passage_key for e in dev], pa.string()),
                                     "positive": pa.array([e.positive for e in dev], pa.string())}),
                           out_dir.parent / DEV_PAIRS_FILE)
    distractors = _distractors(examples, {e.passage_key for e in dev}, FUSION_DISTRACTORS, seed=cfg.seed)
    distractors_path = write_shard(pa.table({"positive": pa.array(distractors, pa.string())}),
                                   out_dir.parent / DEV_DISTRACTORS_FILE)
    return {"model_path": str(path), "dev_pairs_path": str(dev_path), "dev_distractors_path": str(distractors_path),
            "examples": len(examples),
            "with_negatives": sum(1 for e in examples if e.negative is not None), "replay": replayed,
            "teacher": teacher,
            **({"cartography": carto} if carto else {}),
            **{k: stats.get(k) for k in STAGE_STATS}}


def untrainable(examples: list[TrainPair], cfg: TrainConfig) -> str | None:
    """Why ``examples`` cannot train a model (None: they can): no pair, or too few distinct pairs
    outside the dev split to make one batch."""
    if not examples:
        return ("no kept training pairs: a night of few documents, or loosen synthesize.consistency_top_k "
                "or add passages")
    if not plan_training(examples, cfg).batches:
        return (f"{len(examples)} kept training pairs make no batch of 2 distinct pairs outside the dev split: "
                "too few to train on")
    return None


def _distractors(examples: list[TrainPair], dev_passages: set[str], n: int, *, seed: int) -> list[str]:
    """A seeded sample of ``n`` training positives whose passage is in no dev pair: candidates no dev
    query asks for, that make ranking on the dev split more than picking among its own passages."""
    others = list(dict.fromkeys(ex.positive for ex in examples if ex.passage_key not in dev_passages))
    return random.Random(seed).sample(others, min(n, len(others)))


def _with_teacher(examples: list[TrainPair], cfg: TrainConfig, base_path: str, cache_dir: str | None
                  ) -> tuple[list[TrainPair], dict[str, Any] | None, TrainConfig]:
    """The examples as the teacher scored them, what it did, and the config training runs with
    (MNRL when the teacher is not used)."""
    if cfg.teacher.kind == "none":
        return examples, None, cfg
    started = time.monotonic()
    stats: dict[str, Any] = {"kind": cfg.teacher.kind, "path": cfg.teacher.path}
    dev = plan_training(examples, cfg).dev
    if not dev:
        stats |= {"used": False, "reason": "no dev split to measure the teacher on (train.dev_fraction, dev_min_pairs)"}
    else:
        encoder = load_encoder(base_path)
        encoder.max_seq_length = cfg.max_seq_length
        collection = list(dict.fromkeys([t for ex in examples for t in (ex.positive, ex.negative) if t is not None]))
        teacher = load_teacher(cfg.teacher, encoder=encoder, collection=collection, cache_dir=cache_dir)
        distractors = _distractors(examples, {ex.passage_key for ex in dev}, DEV_CHECK_DISTRACTORS, seed=cfg.seed)
        stats |= dev_check(teacher, dev, encoder, depth=cfg.teacher.rerank_depth, distractors=distractors)
        if stats["used"]:
            examples, taught = teach(teacher, examples, encoder, false_negative_margin=cfg.teacher.false_negative_margin,
                                     scale=cfg.scale, seed=cfg.seed)
            stats |= taught
        else:
            stats["reason"] = (f"the teacher's dev nDCG@10 {stats['ndcg@10_teacher']:.4f} does not beat the starting "
                               f"model's {stats['ndcg@10_start']:.4f}: trained with MNRL on the pairs as they are")
    stats["seconds"] = round(time.monotonic() - started, 1)
    if not stats["used"] and cfg.loss != "mnrl":
        cfg = cfg.model_copy(update={"loss": "mnrl"})
    return examples, stats, cfg


def _training_rows(pairs: pa.Table) -> pa.Table:
    """The kept training pairs of a synthesize shard, in the columns training reads; a rephrased
    passage's pair (WRAP) under its original's doc id: one document to the dev split, the batches
    (never a negative of its own rephrasing) and the replay (kept while the original is)."""
    if "pair_id" not in pairs.column_names:
        pairs = pairs.append_column("pair_id", pa.nulls(pairs.num_rows, pa.string()))
    pairs = pairs.filter(pc.field("kept") & (pc.field("split") == TRAIN))
    if "original_doc_id" in pairs.column_names:
        pairs = pairs.set_column(pairs.column_names.index("doc_id"), "doc_id",
                                 pc.coalesce(pairs.column("original_doc_id"), pairs.column("doc_id")))
    return pairs.select(list(PAIR_COLUMNS)).cast(
        pa.schema([(c, pa.string()) for c in PAIR_COLUMNS]))


def _replay_sample(paths: Sequence[str], new_queries: set[str], corpus_shards: list[str], *, n: int,
                   seed: int) -> dict[str, Any]:
    """A seeded sample of at most ``n`` kept training pairs of the shards ``paths`` (``pairs``), and
    what was left out: ``missing_files`` (a night's folder deleted since), ``retired`` (a passage no
    longer in the corpus), ``same_query`` (a query the night's pairs ask)."""
    empty = pa.schema([(c, pa.string()) for c in PAIR_COLUMNS]).empty_table()
    counts = {"candidates": 0, "replayed": 0, "missing_files": 0, "retired": 0, "same_query": 0}
    tables = []
    for path in paths:
        if not Path(path).exists():
            counts["missing_files"] += 1
            continue
        tables.append(_training_rows(read_shard(path)))
    if n < 1 or not tables:
        return {**counts, "pairs": empty}
    earlier = pa.concat_tables(tables)
    fresh = pc.invert(pc.is_in(earlier.column("query"), value_set=pa.array(sorted(new_queries), pa.string())))
    counts["same_query"] = earlier.num_rows - pc.sum(fresh).as_py() if earlier.num_rows else 0
    earlier = earlier.filter(fresh)
    docs = sorted(set(earlier.column("doc_id").to_pylist()))
    current = set(read_rows(sorted(corpus_shards), docs, ["doc_id"]).column("doc_id").to_pylist()) if docs else set()
    present = pc.is_in(earlier.column("doc_id"), value_set=pa.array(sorted(current), pa.string()))
    counts["retired"] = earlier.num_rows - (pc.sum(present).as_py() or 0) if earlier.num_rows else 0
    earlier = earlier.filter(present)
    counts["candidates"] = earlier.num_rows
    chosen = sorted(random.Random(seed).sample(range(earlier.num_rows), min(n, earlier.num_rows)))
    counts["replayed"] = len(chosen)
    return {**counts, "pairs": earlier.take(pa.array(chosen, pa.int64()))}
