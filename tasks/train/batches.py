"""Training examples and the no-duplicates batching of MultipleNegativesRankingLoss."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainPair:
    """One training example: a query, its positive passage and optionally a hard negative.

    ``doc_id`` names the positive's document (the unit of the dev split, and what no two examples
    of a batch may share); ``negative_doc_id`` the negative's. Without ids the texts stand in.
    ``margin``: a teacher's score of the positive minus the negative's, in the student's units
    (MarginMSE; :mod:`tasks.train.teachers`). ``pair_id``: the synthesize ``pairs`` row it came from
    (what the data map, :mod:`tasks.train.cartography`, names it by).
    """

    query: str
    positive: str
    negative: str | None = None
    doc_id: str | None = None
    negative_doc_id: str | None = None
    margin: float | None = None
    pair_id: str | None = None

    @property
    def passage_key(self) -> str:
        return self.doc_id if self.doc_id is not None else self.positive

    def columns(self) -> tuple[str, ...]:
        return (self.query, self.positive) if self.negative is None else (self.query, self.positive, self.negative)

    def conflict_keys(self) -> set[tuple[str, str]]:
        """What this example may share with no other example of its batch: its query, its passages'
        texts and their documents (a shared document would be a positive and a negative at once)."""
        keys = {("query", self.query), ("text", self.positive), ("doc", self.passage_key)}
        if self.negative is not None:
            keys |= {("text", self.negative),
                     ("doc", self.negative_doc_id if self.negative_doc_id is not None else self.negative)}
        return keys


def as_train_pairs(items: Iterable[TrainPair | Sequence[str | None]]) -> list[TrainPair]:
    """``TrainPair``s as they are; (query, positive) and (query, positive, negative) tuples converted."""
    out: list[TrainPair] = []
    for item in items:
        if isinstance(item, TrainPair):
            out.append(item)
        elif len(item) in (2, 3):
            query, positive = item[0], item[1]
            out.append(TrainPair(str(query), str(positive), item[2] if len(item) == 3 else None))
        else:
            raise ValueError(f"expected (query, positive) or (query, positive, negative), got {len(item)} fields")
    return out


def make_batches(examples: Sequence[TrainPair], batch_size: int, *, seed: int) -> list[list[TrainPair]]:
    """Shuffle ``examples`` into batches in which no two examples share a query, a passage text or a
    document (:meth:`TrainPair.conflict_keys`).

    With in-batch negatives a shared passage would be both the positive and a negative of the same
    query, so a conflicting example waits for a later batch. Triplets and pairs go in separate
    batches (the loss needs the same columns throughout a batch). The last batch of each kind may
    be smaller; a batch of one (no negatives to learn from) is dropped.
    """
    rng = random.Random(seed)
    batches: list[list[TrainPair]] = []
    for has_negative in (False, True):
        group = [ex for ex in examples if (ex.negative is not None) == has_negative]
        rng.shuffle(group)
        pending: deque[TrainPair] = deque(group)
        while pending:
            batch: list[TrainPair] = []
            taken: set[tuple[str, str]] = set()
            deferred: list[TrainPair] = []
            while pending and len(batch) < batch_size:
                ex = pending.popleft()
                keys = ex.conflict_keys()
                if keys & taken:
                    deferred.append(ex)
                    continue
                batch.append(ex)
                taken |= keys
            pending.extendleft(reversed(deferred))
            if len(batch) < 2:
                # Nothing else fits beside it (only conflicting examples are left): no negatives.
                continue
            batches.append(batch)
    rng.shuffle(batches)
    return batches
