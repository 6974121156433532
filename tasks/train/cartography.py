"""A data map of the training pairs (Dataset Cartography, Swayamdipta et al. 2020).

While a training runs, a seeded sample of its pairs is scored at each dev-scoring checkpoint: the
model's softmax probability (at the training ``scale``) of a pair's positive among its positive,
its hard negative and the positives of a fixed group of other mapped pairs (:func:`plan_map`,
:func:`confidences`). Over the checkpoints, a pair's confidence is the mean, its variability the
standard deviation, its correctness the share of checkpoints where the positive ranks first
(:func:`summarize`); the two thresholds of ``train.cartography`` place it in a region
(:func:`regions`). A later training may leave out the pairs a map put in ``hard_to_learn``
(:func:`drop_mapped`, reason :data:`REASON`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.config import CartographyConfig

EASY, AMBIGUOUS, HARD = "easy_to_learn", "ambiguous", "hard_to_learn"
REGIONS = (EASY, AMBIGUOUS, HARD)
# The `pair_drops.reason` of a pair left out because a map put it in HARD.
REASON = "cartography"
STAGE = "train"


@dataclass(frozen=True)
class MapPlan:
    """The mapped pairs, and for each the indices (into ``pairs``) of those whose positives compete."""

    pairs: list[TrainPair]
    groups: list[list[int]]


def plan_map(train: Sequence[TrainPair], cfg: CartographyConfig, *, seed: int) -> MapPlan:
    """A seeded sample of ``cfg.pairs`` of the training pairs, in their order, and a seeded group of
    ``cfg.candidates`` others per pair among those that could share its batch (no query, passage or
    document in common: :meth:`TrainPair.conflict_keys`). A pure function of its inputs, so a resumed
    training maps the same pairs."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(train)), min(cfg.pairs, len(train))))
    pairs = [train[i] for i in chosen]
    keys = [ex.conflict_keys() for ex in pairs]
    groups = []
    for i, own in enumerate(keys):
        others = [j for j, theirs in enumerate(keys) if j != i and not own & theirs]
        groups.append(sorted(rng.sample(others, min(cfg.candidates, len(others)))))
    return MapPlan(pairs, groups)


def confidences(query_emb: np.ndarray, positive_emb: np.ndarray, negative_emb: Mapping[int, np.ndarray],
                groups: Sequence[Sequence[int]], *, scale: float) -> tuple[list[float], list[bool]]:
    """Per pair ``i``: the softmax probability of ``scale`` × cosine of query ``i`` with positive ``i``
    among positive ``i``, its negative (``negative_emb[i]``, when it has one) and the positives of
    ``groups[i]``; and whether the positive scores above every other one. Rows are unit vectors."""
    probs, first = [], []
    for i, group in enumerate(groups):
        others = [positive_emb[j] for j in group] + ([negative_emb[i]] if i in negative_emb else [])
        own = float(query_emb[i] @ positive_emb[i])
        rivals = np.asarray(others, dtype=np.float64) @ query_emb[i].astype(np.float64) if others else np.zeros(0)
        logits = scale * np.concatenate([[own], rivals])
        top = logits.max()
        probs.append(float(np.exp(logits[0] - top) / np.exp(logits - top).sum()))
        first.append(bool((rivals < own).all()))
    return probs, first


def score_checkpoint(model, plan: MapPlan, scale: float) -> tuple[list[float], list[bool]]:
    """:func:`confidences` of the mapped pairs under ``model`` as its weights are (no dropout)."""
    from refinery.tasks.embedding import encode

    with_negative = [i for i, ex in enumerate(plan.pairs) if ex.negative is not None]
    model.eval()
    queries = encode(model, [ex.query for ex in plan.pairs], show_progress=False)
    positives = encode(model, [ex.positive for ex in plan.pairs], show_progress=False)
    negatives = encode(model, [plan.pairs[i].negative for i in with_negative], show_progress=False)
    model.train()
    return confidences(queries, positives, dict(zip(with_negative, negatives)), plan.groups, scale=scale)


def summarize(confidence: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair, from its values at each checkpoint (rows: checkpoints, columns: pairs): the mean
    confidence, its standard deviation over the checkpoints (population, as the paper's), and the
    share of checkpoints where the positive ranked first."""
    series = np.asarray(confidence, dtype=np.float64)
    return series.mean(axis=0), series.std(axis=0), np.asarray(correct, dtype=np.float64).mean(axis=0)


def regions(confidence: np.ndarray, variability: np.ndarray, cfg: CartographyConfig) -> list[str]:
    """The region of each pair: AMBIGUOUS at or above ``ambiguous_min_variability``; below it, HARD
    under ``hard_max_confidence`` and EASY otherwise."""
    return [AMBIGUOUS if v >= cfg.ambiguous_min_variability else HARD if c < cfg.hard_max_confidence else EASY
            for c, v in zip(confidence, variability)]


def new_record(plan: MapPlan) -> dict[str, Any]:
    """What a training records of its map as it goes (in its checkpoints and stats): the mapped
    pairs' ids and documents, and per checkpoint its step, confidences and firsts."""
    return {"pair_ids": [ex.pair_id for ex in plan.pairs], "doc_ids": [ex.passage_key for ex in plan.pairs],
            "steps": [], "confidence": [], "correct": []}


def add_checkpoint(record: dict[str, Any], step: int, scores: tuple[list[float], list[bool]]) -> None:
    record["steps"].append(step)
    record["confidence"].append(scores[0])
    record["correct"].append(scores[1])


def data_map(record: dict[str, Any], cfg: CartographyConfig) -> pa.Table:
    """The map of a training's ``record`` (:func:`new_record`): one row per mapped pair, the
    columns of the catalog's ``pair_map``."""
    conf, var, corr = summarize(record["confidence"], record["correct"])
    return pa.table({
        "pair_id": pa.array(record["pair_ids"], pa.string()),
        "doc_id": pa.array(record["doc_ids"], pa.string()),
        "confidence": pa.array(conf, pa.float64()),
        "variability": pa.array(var, pa.float64()),
        "correctness": pa.array(corr, pa.float64()),
        "checkpoints": pa.array([len(record["steps"])] * len(record["pair_ids"]), pa.int32()),
        "region": pa.array(regions(conf, var, cfg), pa.string()),
    })


def drop_mapped(examples: Sequence[TrainPair], hard: Mapping[str, str]) -> tuple[list[TrainPair], pa.Table]:
    """``examples`` less those whose ``pair_id`` is in ``hard`` (pair id → the run whose map put it in
    HARD), and the rows of ``pair_drops`` for them (reason :data:`REASON`, ``decided_in`` that run)."""
    kept = [ex for ex in examples if ex.pair_id is None or ex.pair_id not in hard]
    dropped = [ex for ex in examples if ex.pair_id is not None and ex.pair_id in hard]
    return kept, pa.table({"pair_id": pa.array([ex.pair_id for ex in dropped], pa.string()),
                           "doc_id": pa.array([ex.passage_key for ex in dropped], pa.string()),
                           "stage": pa.array([STAGE] * len(dropped), pa.string()),
                           "reason": pa.array([REASON] * len(dropped), pa.string()),
                           "decided_in": pa.array([hard[ex.pair_id] for ex in dropped], pa.string())})
