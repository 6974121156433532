"""Exact duplicates: a 64-bit key per normalized text, and labels grouping equal keys."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

from refinery.tasks.dedup.normalize import collapse_whitespace, normalize_for_exact, utf8_casefolded

__all__ = ["EXACT_KEY_SEED", "exact_duplicate_labels", "exact_keys", "normalize_for_exact"]

EXACT_KEY_SEED = 0
# Characters normalized per vectorized batch; bounds memory, never changes keys.
EXACT_BATCH_CHARS = 1 << 18


def _batch_keys(texts: Sequence[str], seed: int) -> np.ndarray:
    buf, bounds = collapse_whitespace(*utf8_casefolded(texts))
    view = buf.tobytes()
    digest = xxhash.xxh3_64_intdigest
    spans = zip(bounds[:-1].tolist(), bounds[1:].tolist())
    return np.fromiter((digest(view[a:b], seed) for a, b in spans), dtype=np.uint64, count=len(texts))


def exact_keys(texts: Sequence[str], *, seed: int = EXACT_KEY_SEED) -> np.ndarray:
    """uint64 xxh3 of each text's UTF-8 after normalize_for_exact(): casefold, whitespace runs to
    one space, ends stripped. Equal normalized texts, equal keys; a key depends only on its text and
    seed, never on the batch it is computed in.
    """
    keys = np.empty(len(texts), dtype=np.uint64)
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    lo = 0
    while lo < len(texts):
        base = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + EXACT_BATCH_CHARS, side="right")))
        keys[lo:hi] = _batch_keys(texts[lo:hi], seed)
        lo = hi
    return keys


def exact_duplicate_labels(keys: np.ndarray) -> np.ndarray:
    """int64 label per row: the smallest row index holding the same key."""
    keys = np.asarray(keys)
    if keys.ndim != 1:
        raise ValueError(f"keys must be 1-D, got shape {keys.shape}")
    if keys.size == 0:
        return np.empty(0, dtype=np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse].astype(np.int64)
