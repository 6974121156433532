"""Exact keys and labels."""

import numpy as np
import pytest

from refinery.tasks.dedup import exact_duplicate_labels, exact_keys, normalize_for_exact


def test_keys_ignore_case_and_whitespace_layout_but_not_punctuation() -> None:
    keys = exact_keys(["Hello  World\n", "hello world", " HELLO\tWORLD ", "hello, world", "Straße", "STRASSE"])
    assert keys.dtype == np.uint64
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] != keys[0]
    assert keys[4] == keys[5]  # casefold, not lower
    assert normalize_for_exact("  A\u00a0b\n\nc ") == "a b c"


def test_keys_are_stable_across_calls_and_batches() -> None:
    texts = ["one", "two", "", "three"]
    assert np.array_equal(exact_keys(texts), np.concatenate([exact_keys(texts[:2]), exact_keys(texts[2:])]))
    assert exact_keys([""])[0] == exact_keys(["  \n"])[0]


def test_labels_are_the_smallest_row_with_the_same_key() -> None:
    keys = np.array([7, 3, 7, 9, 3, 7], dtype=np.uint64)
    assert exact_duplicate_labels(keys).tolist() == [0, 1, 0, 3, 1, 0]
    assert exact_duplicate_labels(np.array([], dtype=np.uint64)).tolist() == []
    with pytest.raises(ValueError):
        exact_duplicate_labels(np.zeros((2, 2), dtype=np.uint64))
