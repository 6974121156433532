"""One survivor per cluster, by a documented rule."""

import numpy as np
import pytest

from refinery.tasks.dedup import choose_survivors


def test_longest_wins_and_ties_go_to_the_smallest_row() -> None:
    labels = np.array([0, 0, 2, 0, 2, 5])
    lengths = np.array([10, 30, 7, 30, 8, 1])
    keep = choose_survivors(labels, lengths)
    assert keep.tolist() == [False, True, False, False, True, True]


def test_first_rule_keeps_the_smallest_row() -> None:
    labels = np.array([3, 1, 1, 3])
    keep = choose_survivors(labels, np.array([1, 1, 9, 9]), rule="first")
    assert keep.tolist() == [True, True, False, False]


def test_exactly_one_survivor_per_label() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 50, 1000)
    keep = choose_survivors(labels, rng.integers(0, 5, 1000))
    assert sorted(labels[keep].tolist()) == sorted(set(labels.tolist()))
    assert choose_survivors(np.array([], int), np.array([], int)).tolist() == []


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown survivor rule"):
        choose_survivors(np.array([0]), np.array([1]), rule="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        choose_survivors(np.array([0, 0]), np.array([1]))
