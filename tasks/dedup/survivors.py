"""Which document of each duplicate cluster is kept."""

from __future__ import annotations

import numpy as np

from refinery.tasks.dedup.config import SurvivorRule


def choose_survivors(labels: np.ndarray, lengths: np.ndarray, *, rule: SurvivorRule = "longest") -> np.ndarray:
    """Bool mask with exactly one True per distinct label.

    rule "longest": the row with the largest length, ties to the smallest row index (the most
    complete copy wins, and the choice is deterministic). rule "first": the smallest row index.
    """
    labels = np.asarray(labels)
    lengths = np.asarray(lengths)
    if labels.shape != lengths.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and lengths {lengths.shape} must be 1-D of one length")
    keep = np.zeros(labels.size, dtype=bool)
    if labels.size == 0:
        return keep
    rows = np.arange(labels.size)
    if rule == "longest":
        order = np.lexsort((rows, -lengths.astype(np.int64), labels))
    elif rule == "first":
        order = np.lexsort((rows, labels))
    else:
        raise ValueError(f"unknown survivor rule {rule!r}; valid: 'longest', 'first'")
    sorted_labels = labels[order]
    group_start = np.ones(labels.size, dtype=bool)
    group_start[1:] = sorted_labels[1:] != sorted_labels[:-1]
    keep[order[group_start]] = True
    return keep
