"""Split synthesized pairs into training and held-out evaluation pairs, by passage.

The unit of the split is the passage (its doc id), never the single pair: every candidate of a
held-out passage is held out, so no text the evaluation asks about is ever trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

TRAIN = "train"
HELDOUT = "heldout"


def heldout_passages(doc_ids: Sequence[str], fraction: float, *, seed: int) -> set[str]:
    """The doc ids to hold out: ``round(fraction * n)`` of the ``n`` distinct ids, at least one
    and at most ``n - 1`` (so both sides have a passage when ``n >= 2``; none when ``n < 2``).

    Chosen by the smallest seeded hash of the doc id, so the choice does not depend on the order
    of ``doc_ids`` and stays the same for a passage across runs with the same seed.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    distinct = sorted(set(doc_ids))
    if len(distinct) < 2:
        return set()
    n = min(max(round(fraction * len(distinct)), 1), len(distinct) - 1)
    ranked = sorted(distinct, key=lambda d: (xxhash.xxh3_64_intdigest(d.encode(), seed=seed), d))
    return set(ranked[:n])


def split_by_passage(doc_ids: Sequence[str], kept: np.ndarray, fraction: float | None, *, seed: int) -> np.ndarray:
    """``'train'`` or ``'heldout'`` per candidate pair.

    Passages are drawn among those with a kept pair (the pairs that can be trained or evaluated
    on); all candidates of a drawn passage are ``'heldout'``. ``fraction=None`` holds nothing out.
    """
    split = np.full(len(doc_ids), TRAIN, dtype=object)
    if fraction is None or not len(doc_ids):
        return split
    kept = np.asarray(kept, dtype=bool)
    held = heldout_passages([d for d, k in zip(doc_ids, kept) if k], fraction, seed=seed)
    split[np.array([d in held for d in doc_ids], dtype=bool)] = HELDOUT
    return split


def split_of_docs(doc_ids: Sequence[str], heldout: Sequence[str]) -> np.ndarray:
    """``'heldout'`` for each candidate pair of a document in ``heldout`` (passages drawn for
    evaluation), ``'train'`` for the others."""
    held = set(heldout)
    return np.array([HELDOUT if d in held else TRAIN for d in doc_ids], dtype=object)
