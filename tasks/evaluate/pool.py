"""Bounded, seeded samples of the curated corpus: passages, the filter pool, the evaluation pool.

Every document gets a seeded 64-bit key, ``xxh3(salt + doc_id, seed)``; the documents with the
``n`` smallest keys are a uniform random sample that is the same on every run and machine, and
does not depend on the order of the shards. Each shard reports only its keys below a threshold
set so that about ``n`` keys pass in all (:func:`key_threshold`), so whoever merges them holds
about ``n`` keys however large the corpus is.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import xxhash

KEY_SPACE = 1 << 64
# The count of keys below the threshold is binomial: aiming at n + 6 standard deviations (+16 for
# tiny n) leaves about a 1e-9 chance of too few, and then the threshold is simply raised.
THRESHOLD_SIGMAS = 6
THRESHOLD_SLACK = 16
# Documents per pool part: one embedding task each, as many as a corpus shard holds by default.
POOL_PART_DOCS = 500


class Keyed(NamedTuple):
    """A document's sample key and where it lives (its shard's index in the sorted shard list, its row)."""

    key: int
    shard: int
    row: int
    doc_id: str


def doc_key(doc_id: str, *, seed: int, salt: str = "") -> int:
    """The sample key of a document. ``salt`` separates samples drawn with the same seed."""
    return xxhash.xxh3_64_intdigest((salt + doc_id).encode(), seed=seed)


def key_threshold(n: int, total: int, attempt: int = 0) -> int:
    """Keys below this value are, with near certainty, at least ``n`` of ``total`` uniform keys.

    Each ``attempt`` doubles the margin; :data:`KEY_SPACE` (every key) once it covers the corpus.
    """
    if n >= total:
        return KEY_SPACE
    expected = (n + THRESHOLD_SIGMAS * math.sqrt(n) + THRESHOLD_SLACK) * 2**attempt
    return KEY_SPACE if expected >= total else int(KEY_SPACE * (expected / total))


def smallest_in_shard(doc_ids: Sequence[str], *, shard: int, seed: int, salt: str, n: int,
                      below: int = KEY_SPACE) -> list[Keyed]:
    """The at most ``n`` smallest keys of one shard's documents that are below ``below``, smallest first."""
    keyed = (Keyed(doc_key(d, seed=seed, salt=salt), shard, row, d) for row, d in enumerate(doc_ids))
    return heapq.nsmallest(n, (k for k in keyed if k.key < below))


def merge_smallest(parts: Iterable[Sequence[Keyed]], n: int) -> list[Keyed]:
    """The ``n`` smallest of sorted per-shard lists; ties (never seen with 64-bit keys) go by shard, then row."""
    return list(heapq.merge(*parts))[:n] if n else []


def choose_pool(ranked: Iterable[str], required: Iterable[str], size: int) -> list[str]:
    """Every id of ``required``, then ids of ``ranked`` (key order) not already in, up to ``size`` in all.

    The required ids (relevant documents, passages) are always in, even beyond ``size``.
    """
    pool = dict.fromkeys(required)
    for doc_id in ranked:
        if len(pool) >= size:
            break
        pool.setdefault(doc_id)
    return list(pool)


def group_shards(shards: Sequence[str], docs: int, *, part_docs: int = POOL_PART_DOCS) -> list[list[str]]:
    """Split ``shards`` (in order) into contiguous groups, one pool part each, of about ``part_docs``
    of the ``docs`` sampled documents (which are spread evenly over the shards)."""
    if not shards:
        return []
    parts = max(1, min(len(shards), math.ceil(docs / part_docs)))
    bounds = [round(i * len(shards) / parts) for i in range(parts + 1)]
    return [list(shards[a:b]) for a, b in zip(bounds, bounds[1:])]
