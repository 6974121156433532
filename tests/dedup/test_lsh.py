"""LSH parameters, candidate pairs and clusters."""

import numpy as np
import pytest
from datasketch.lsh import _optimal_param
from pydantic import ValidationError

from refinery.tasks.dedup import (
    DedupConfig,
    candidate_edges,
    connected_component_labels,
    lsh_params,
    near_duplicate_labels,
    shingle_sets,
    signatures,
)

CFG = DedupConfig()


def words(n: int, seed: int, prefix: str = "t") -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{prefix}{v}" for v in rng.choice(10**9, size=n, replace=False)]


def pair_with_jaccard(shared: int, own: int, seed: int, n: int = 5) -> tuple[str, str]:
    common = words(shared + n - 1, seed, "c")
    return " ".join(common + words(own, seed + 1, "a")), " ".join(common + words(own, seed + 2, "b"))


def fillers(k: int, seed: int) -> list[str]:
    return [" ".join(words(300, seed + i, "f")) for i in range(k)]


def partition(labels: np.ndarray, ids: list[int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for doc, label in zip(ids, labels.tolist()):
        groups.setdefault(label, set()).add(doc)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("fp_weight", [0.5, 0.01])
def test_derived_bands_rows_match_datasketch(threshold: float, fp_weight: float) -> None:
    params = lsh_params(DedupConfig(threshold=threshold, false_positive_weight=fp_weight))
    assert (params.bands, params.rows) == _optimal_param(threshold, 128, fp_weight, 1 - fp_weight)
    assert params.derived
    assert params.candidate_probability_at_threshold == pytest.approx(
        1 - (1 - threshold**params.rows) ** params.bands
    )


def test_default_derivation_favours_recall_when_verifying() -> None:
    verified, unverified = lsh_params(CFG), lsh_params(DedupConfig(verify=False, clustering="components"))
    assert verified.candidate_probability_at_threshold > 0.98
    assert (unverified.bands, unverified.rows) == _optimal_param(0.8, 128, 0.5, 0.5)


def test_explicit_bands_rows_are_used_and_validated() -> None:
    params = lsh_params(DedupConfig(bands=16, rows=8))
    assert (params.bands, params.rows, params.derived) == (16, 8, False)
    assert params.candidate_probability(1.0) == 1.0
    with pytest.raises(ValidationError, match="both bands and rows"):
        DedupConfig(bands=16)
    with pytest.raises(ValidationError, match="exceeds num_perm"):
        DedupConfig(bands=20, rows=8)
    with pytest.raises(ValidationError):
        DedupConfig(threshold=1.5)
    with pytest.raises(ValidationError):
        DedupConfig(unknown_option=1)


def test_pairs_above_the_threshold_are_found_and_below_are_not() -> None:
    high = [pair_with_jaccard(380, 10, seed=100 * s) for s in range(10)]  # J = 0.95
    low = [pair_with_jaccard(150, 50, seed=100 * s + 7) for s in range(10)]  # J = 0.6
    texts = [t for p in high + low for t in p] + fillers(20, 999)
    labels = near_duplicate_labels(signatures(texts, CFG), CFG)
    for k in range(10):
        assert labels[2 * k] == labels[2 * k + 1] == 2 * k
    for k in range(10, 20):
        assert labels[2 * k] == 2 * k and labels[2 * k + 1] == 2 * k + 1
    assert (labels[40:] == np.arange(40, 60)).all()


def test_a_chain_of_near_duplicates_is_one_cluster() -> None:
    base = words(600, 42)
    chain = [" ".join(base[10 * k : 10 * k + 400]) for k in range(8)]  # neighbours J = 0.95, ends 0.70
    sets = shingle_sets(chain, CFG)
    assert len(sets[0] & sets[-1]) / len(sets[0] | sets[-1]) < 0.8 - 0.05
    texts = fillers(3, 500) + chain[::-1] + fillers(3, 600)  # chain rows 3..10, reversed
    labels = near_duplicate_labels(signatures(texts, CFG), CFG)
    assert set(labels[3:11].tolist()) == {3}
    assert (labels[:3] == [0, 1, 2]).all() and (labels[11:] == [11, 12, 13]).all()
    i, j = candidate_edges(signatures(texts, CFG), CFG)
    assert (3, 10) not in set(zip(i.tolist(), j.tolist()))  # the ends are linked only through the chain


def test_empty_signatures_never_cluster() -> None:
    texts = ["", "", "...", "same words here", "same words here"]
    labels = near_duplicate_labels(signatures(texts, CFG), CFG)
    assert labels.tolist() == [0, 1, 2, 3, 3]


def test_big_buckets_stay_connected_with_a_small_window() -> None:
    doc = " ".join(words(200, 1))
    texts = [doc] * 50 + fillers(5, 2)
    cfg = DedupConfig(bucket_window=1)
    labels = near_duplicate_labels(signatures(texts, cfg), cfg)
    assert (labels[:50] == 0).all() and (labels[50:] == np.arange(50, 55)).all()


@pytest.fixture(scope="module")
def mixed_corpus() -> list[str]:
    rng = np.random.default_rng(7)
    texts = fillers(60, 100)
    for k in range(60):
        tokens = texts[k].split()
        for rate in (0.002, 0.01, 0.03, 0.1):
            edited = [w if rng.random() > rate else f"x{rng.integers(10**9)}" for w in tokens]
            texts.append(" ".join(edited))
    return texts


def test_labels_do_not_depend_on_batching_or_band_batches(mixed_corpus: list[str]) -> None:
    sigs = signatures(mixed_corpus, CFG)
    reference = near_duplicate_labels(sigs, CFG)
    assert len(set(reference.tolist())) < len(mixed_corpus)  # there is something to find
    for update in ({"bands_per_batch": 1}, {"bands_per_batch": 64}, {"batch_chars": 5000}):
        cfg = CFG.model_copy(update=update)
        assert np.array_equal(near_duplicate_labels(signatures(mixed_corpus, cfg), cfg), reference)


def test_clusters_do_not_depend_on_input_order(mixed_corpus: list[str]) -> None:
    ids = list(range(len(mixed_corpus)))
    reference = partition(near_duplicate_labels(signatures(mixed_corpus, CFG), CFG), ids)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(mixed_corpus)).tolist()
        labels = near_duplicate_labels(signatures([mixed_corpus[i] for i in order], CFG), CFG)
        assert partition(labels, order) == reference


def test_verification_only_removes_edges(mixed_corpus: list[str]) -> None:
    cfg = DedupConfig(bands=18, rows=7)  # fixed, since the derived banding depends on verify
    sigs = signatures(mixed_corpus, cfg)
    verified = set(zip(*(a.tolist() for a in candidate_edges(sigs, cfg))))
    raw = set(zip(*(a.tolist() for a in candidate_edges(sigs, cfg.model_copy(update={"verify": False})))))
    assert verified <= raw and verified


def test_candidate_edges_restricted_to_rows() -> None:
    doc = " ".join(words(100, 3))
    sigs = signatures([doc, doc, doc, doc], CFG)
    i, j = candidate_edges(sigs, CFG, rows=np.array([1, 3]))
    assert list(zip(i.tolist(), j.tolist())) == [(1, 3)]


def test_connected_components_label_by_smallest_member() -> None:
    i = np.array([5, 2, 7, 9, 0])
    j = np.array([9, 7, 8, 4, 1])
    labels = connected_component_labels(10, i, j)
    assert labels.tolist() == [0, 0, 2, 3, 4, 4, 6, 2, 2, 4]
    long_chain = connected_component_labels(10_000, np.arange(9_999)[::-1], np.arange(1, 10_000)[::-1])
    assert (long_chain == 0).all()
    assert connected_component_labels(3, np.array([], int), np.array([], int)).tolist() == [0, 1, 2]


def test_bad_signature_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="num_perm"):
        near_duplicate_labels(np.zeros((3, 64), dtype=np.uint32), CFG)
    with pytest.raises(ValueError, match="2-D"):
        near_duplicate_labels(np.zeros(128, dtype=np.uint32), CFG)
