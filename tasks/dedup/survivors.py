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


def preference_ranks(groups: np.ndarray, lengths: np.ndarray, *, rule: SurvivorRule = "longest") -> np.ndarray:
    """Distinct rank per row (0 = most preferred as a cluster's survivor), each row ranked as its
    group's best member is (``groups``: exact-duplicate labels; rows of one group are ordered among
    themselves by the rule too).

    The order is the survivor rule's: "longest" by length descending, then smallest row; "first"
    by smallest row. So the row choose_survivors() keeps in any union of groups is a member of the
    group whose best member ranks first.
    """
    groups = np.asarray(groups)
    lengths = np.asarray(lengths).astype(np.int64)
    rows = np.arange(groups.size)
    if rule == "longest":
        own = np.lexsort((rows, -lengths))
    elif rule == "first":
        own = rows
    else:
        raise ValueError(f"unknown survivor rule {rule!r}; valid: 'longest', 'first'")
    own_rank = np.empty(groups.size, dtype=np.int64)
    own_rank[own] = rows
    best = np.full(groups.size, groups.size, dtype=np.int64)
    np.minimum.at(best, groups, own_rank)  # each group's best member's rank
    order = np.lexsort((own_rank, best[groups]))
    ranks = np.empty(groups.size, dtype=np.int64)
    ranks[order] = rows
    return ranks
