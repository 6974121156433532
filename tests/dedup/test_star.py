"""Star clustering: every near-duplicate drop nearly duplicates the survivor it is filed under.

A chain of pairs no longer drops documents that share nothing with their survivor (what connected
components do, and `clustering: components` still does for comparison with the anchors).
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from refinery.tasks.dedup import REASON_NEAR, DedupConfig, deduplicate, exact_keys, signatures
from tests.fixtures.corpora import overlapping_runs

STAR = DedupConfig()
COMPONENTS = DedupConfig(clustering="components")


def words(n: int, seed: int) -> list[str]:
    return [f"w{v}" for v in np.random.default_rng(seed).choice(10**9, size=n, replace=False)]


def five_grams(text: str) -> set[tuple[str, ...]]:
    tokens = text.lower().split()
    return {tuple(tokens[k : k + 5]) for k in range(len(tokens) - 4)}


def jaccard(a: str, b: str) -> float:
    x, y = five_grams(a), five_grams(b)
    return len(x & y) / len(x | y)


def dedup(texts: list[str], cfg: DedupConfig):
    lengths = np.array([len(t) for t in texts])
    return deduplicate(exact_keys(texts), signatures(texts, cfg), lengths, cfg)


def windows(n_windows: int, width: int, stride: int, seed: int) -> list[str]:
    stream = words(width + stride * (n_windows - 1), seed)
    return [" ".join(stream[k * stride : k * stride + width]) for k in range(n_windows)]


def test_a_chain_whose_ends_share_nothing_is_not_one_cluster() -> None:
    # 30 windows of 100 words, each 4 words on from the last: neighbours are near-duplicates
    # (J ~ 0.92), the first and the last share no word at all.
    texts = windows(30, 100, 4, seed=3)
    assert jaccard(texts[0], texts[1]) > 0.9 and not set(texts[0].split()) & set(texts[-1].split())
    cfg = {"survivor": "first"}  # the first window is the preferred survivor
    chained = dedup(texts, COMPONENTS.model_copy(update=cfg))
    assert chained.keep.tolist() == [True] + [False] * 29  # one cluster: the last window dropped under the first
    assert chained.survivors[-1] == 0
    star = dedup(texts, STAR.model_copy(update=cfg))
    assert star.keep[0] and star.survivors[-1] != 0
    assert star.keep.sum() >= 6  # a window claims at most its 2-3 nearest on each side
    for row in np.flatnonzero(~star.keep):
        assert star.reasons[row] == REASON_NEAR
        assert jaccard(texts[row], texts[star.survivors[row]]) >= 0.75, row  # the threshold, less estimate noise


def test_every_near_drop_is_a_verified_pair_with_its_survivor_on_overlapping_runs() -> None:
    texts = [t for chunk in overlapping_runs(20_000, seed=5) for t in chunk.texts]
    sigs = signatures(texts, STAR)
    lengths = np.array([len(t) for t in texts])
    keys = exact_keys(texts)
    star = deduplicate(keys, sigs, lengths, STAR)
    near = np.flatnonzero(star.reasons == REASON_NEAR)
    assert near.size > 300  # the corpus has near-duplicates to test on
    equal_positions = (sigs[near] == sigs[star.survivors[near]]).mean(axis=1)
    assert equal_positions.min() >= STAR.threshold
    true = np.array([jaccard(texts[r], texts[star.survivors[r]]) for r in near[:400].tolist()])
    assert np.quantile(true, 0.1) >= 0.75 and np.median(true) >= 0.8
    # What components do on the same corpus: chains file documents under survivors they hardly resemble.
    chained = deduplicate(keys, sigs, lengths, COMPONENTS)
    chained_near = np.flatnonzero(chained.reasons == REASON_NEAR)
    assert (sigs[chained_near] == sigs[chained.survivors[chained_near]]).mean(axis=1).min() < 0.7
    assert chained.keep.sum() < star.keep.sum()
    # No two survivors are a verified pair: what star clustering keeps has no near-duplicate left in it.
    i, j = star.edges
    assert not (star.keep[i] & star.keep[j]).any()
    assert star.stats()["near_survivor_jaccard_min"] >= STAR.threshold


def test_a_big_bucket_of_copies_is_one_star_with_a_small_window() -> None:
    # 40 copies, each with one word changed: every pair is near (J ~ 0.95), so all share buckets. With
    # one partner per row in a bucket, a row must meet the bucket's most preferred row, not its predecessor.
    base = words(200, 8)
    texts = [" ".join(base[:k] + [f"edit{k}"] + base[k + 1 :]) for k in range(40)]
    texts[17] += " and a longer ending"  # the preferred survivor (longest) sits mid-bucket
    result = dedup(texts, STAR.model_copy(update={"bucket_window": 1}))
    assert np.flatnonzero(result.keep).tolist() == [17]
    assert (result.survivors == 17).all()


def test_star_needs_verified_pairs() -> None:
    with pytest.raises(ValidationError, match="verify"):
        DedupConfig(verify=False)
    assert DedupConfig(verify=False, clustering="components").clustering == "components"


def test_star_centers_claim_in_preference_order_and_claimed_nodes_claim_no_one() -> None:
    from refinery.tasks.dedup import star_centers

    path_i, path_j = np.array([0, 1, 2]), np.array([1, 2, 3])  # 0 - 1 - 2 - 3
    assert star_centers(4, path_i, path_j, np.array([0, 1, 2, 3])).tolist() == [0, 0, 2, 2]
    assert star_centers(4, path_i, path_j, np.array([3, 2, 1, 0])).tolist() == [1, 1, 3, 3]
    # 1 is most preferred: it claims both ends; the ends never meet
    assert star_centers(4, path_i, path_j, np.array([1, 0, 2, 3])).tolist() == [1, 1, 1, 3]
    assert star_centers(3, np.array([], int), np.array([], int), np.arange(3)).tolist() == [0, 1, 2]


def test_preference_ranks_order_groups_by_their_best_member() -> None:
    from refinery.tasks.dedup import preference_ranks

    groups = np.array([0, 1, 0, 3, 1])  # exact groups {0, 2}, {1, 4}, {3}
    lengths = np.array([10, 30, 50, 40, 30])
    # longest: group {0, 2} has the longest member (2: 50), then {3} (40), then {1, 4} (30, ties to row 1)
    assert preference_ranks(groups, lengths, rule="longest").tolist() == [1, 3, 0, 2, 4]
    assert preference_ranks(groups, lengths, rule="first").tolist() == [0, 2, 1, 4, 3]
