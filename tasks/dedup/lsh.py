"""LSH banding of MinHash signatures into near-duplicate pairs, in bounded memory, and the two ways
of grouping those pairs into clusters.

Steps: bands are hashed a few at a time (cfg.bands_per_batch); rows whose band hashes are equal
are found by sorting; within each bucket every row is paired with up to cfg.bucket_window others
(its predecessors in row order, or with a preference order given, the bucket's most preferred
rows); pairs are optionally verified by signature-estimated Jaccard. Memory stays at about
n x (bands_per_batch x 8 + 16) bytes plus the edges, whatever the number of bands.

Clusters: star_centers() (greedy stars: every member is a verified pair with its centre) or
connected_component_labels() (every chain of pairs is one cluster, as datatrove, NeMo Curator and
text-dedup do).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from refinery.tasks.dedup.config import DedupConfig
from refinery.tasks.dedup.minhash import EMPTY_SIGNATURE_VALUE

# Candidate pairs verified per chunk: bounds the (chunk, num_perm) comparison matrix to ~8 MB at 128 perms.
_VERIFY_CHUNK_PAIRS = 1 << 16
# Grid points of the S-curve integrals (datasketch integrates the same curves with scipy.quad).
_INTEGRATION_POINTS = 2001

_U64 = np.uint64
_S33 = _U64(33)
_FMIX_C1 = _U64(0xFF51AFD7ED558CCD)
_FMIX_C2 = _U64(0xC4CEB9FE1A85EC53)


@dataclass(frozen=True)
class LshParams:
    """The banding in force and what it implies at the configured threshold."""

    bands: int
    rows: int
    threshold: float
    derived: bool
    """True when bands x rows were derived from the threshold rather than set."""
    candidate_probability_at_threshold: float
    """S-curve 1 - (1 - s**rows) ** bands at s = threshold: the chance a pair at the threshold is compared."""
    false_positive_area: float
    """Integral of the S-curve over [0, threshold] (datasketch's false-positive probability)."""
    false_negative_area: float
    """Integral of 1 - S-curve over [threshold, 1] (datasketch's false-negative probability)."""
    false_positive_weight: float

    def candidate_probability(self, similarity: float | np.ndarray) -> float | np.ndarray:
        """Probability that a pair of this Jaccard similarity shares at least one band."""
        return 1.0 - (1.0 - np.asarray(similarity, dtype=np.float64) ** self.rows) ** self.bands


def _s_curve_areas(threshold: float, bands: int, rows: int) -> tuple[float, float]:
    below = np.linspace(0.0, threshold, _INTEGRATION_POINTS)
    above = np.linspace(threshold, 1.0, _INTEGRATION_POINTS)
    fp = np.trapezoid(1.0 - (1.0 - below**rows) ** bands, below)
    fn = np.trapezoid((1.0 - above**rows) ** bands, above)
    return float(fp), float(fn)


@lru_cache(maxsize=64)
def _optimal_bands_rows(threshold: float, num_perm: int, false_positive_weight: float) -> tuple[int, int]:
    """datasketch's MinHashLSH parameter choice: minimise the weighted false-positive/negative areas."""
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp, fn = _s_curve_areas(threshold, bands, rows)
            error = false_positive_weight * fp + (1.0 - false_positive_weight) * fn
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def lsh_params(cfg: DedupConfig) -> LshParams:
    """Bands and rows in force (set, or derived from cfg.threshold) and their S-curve figures."""
    weight = cfg.effective_false_positive_weight
    if cfg.bands is not None and cfg.rows is not None:
        bands, rows, derived = cfg.bands, cfg.rows, False
    else:
        bands, rows = _optimal_bands_rows(cfg.threshold, cfg.num_perm, weight)
        derived = True
    fp, fn = _s_curve_areas(cfg.threshold, bands, rows)
    return LshParams(
        bands=bands,
        rows=rows,
        threshold=cfg.threshold,
        derived=derived,
        candidate_probability_at_threshold=float(1.0 - (1.0 - cfg.threshold**rows) ** bands),
        false_positive_area=fp,
        false_negative_area=fn,
        false_positive_weight=weight,
    )


def _band_hashes(
    sigs: np.ndarray, live: np.ndarray | None, first_band: int, n_bands: int, rows: int, seed: int
) -> np.ndarray:
    """(n_bands, len(live)) 64-bit hash of each live row's values in each band (all rows if live is None)."""
    rng = np.random.default_rng([seed, 0xBA4D5])
    mult = rng.integers(0, 2**64, size=rows, dtype=np.uint64, endpoint=False) | _U64(1)
    n_live = sigs.shape[0] if live is None else live.size
    out = np.empty((n_bands, n_live), dtype=np.uint64)
    for k in range(n_bands):
        lo, hi = (first_band + k) * rows, (first_band + k + 1) * rows
        cols = (sigs[:, lo:hi] if live is None else sigs[live, lo:hi]).astype(np.uint64)
        h = (cols * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> _S33
        h *= _FMIX_C1
        h ^= h >> _S33
        h *= _FMIX_C2
        h ^= h >> _S33
        out[k] = h
    return out


def _bucket_pairs(band_hash: np.ndarray, rows: np.ndarray, window: int, *, heads: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, for rows sharing a band hash.

    Buckets list rows in the order they arrive. Each row is paired with up to `window` of its
    predecessors, or with heads=True, with the bucket's first `window` rows (its heads): given rows
    in preference order, every row meets the rows most likely to be its cluster's centre however
    big the bucket. Either way buckets of up to window+1 rows yield all their pairs.
    """
    order = np.argsort(band_hash, kind="stable")  # buckets list rows in arrival order
    keys, members = band_hash[order], rows[order]
    if heads:
        return _head_pairs(keys, members, window)
    firsts, seconds = [], []
    for offset in range(1, window + 1):
        if offset >= keys.size:
            break
        same = np.flatnonzero(keys[offset:] == keys[:-offset])
        if same.size == 0:
            break  # no bucket holds offset+1 rows, so none holds more
        firsts.append(members[same])
        seconds.append(members[same + offset])
    if not firsts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(firsts), np.concatenate(seconds)


def _head_pairs(keys: np.ndarray, members: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of each row with the first `window` rows of its bucket (keys sorted, buckets contiguous)."""
    # Only rows of buckets with two or more rows pair at all: most rows are alone in most bands.
    same = keys[1:] == keys[:-1]
    shared = np.zeros(keys.size, dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    keys, members = keys[shared], members[shared]
    if keys.size < 2:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    positions = np.arange(keys.size)
    starts = np.zeros(keys.size, dtype=np.int64)
    new = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts[new] = new
    np.maximum.accumulate(starts, out=starts)
    rank_in_bucket = positions - starts
    firsts, seconds = [], []
    for head in range(window):
        later = np.flatnonzero(rank_in_bucket > head)
        if later.size == 0:
            break
        a, b = members[starts[later] + head], members[later]
        firsts.append(np.minimum(a, b))
        seconds.append(np.maximum(a, b))
    if not firsts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(firsts), np.concatenate(seconds)


def _check_signatures(sigs: np.ndarray, cfg: DedupConfig) -> None:
    if sigs.ndim != 2:
        raise ValueError(f"signatures must be 2-D (docs, num_perm), got shape {sigs.shape}")
    if sigs.shape[1] != cfg.num_perm:
        raise ValueError(f"signatures have {sigs.shape[1]} values per row, config says num_perm={cfg.num_perm}")


def _verified(sigs: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of pairs whose fraction of equal signature positions is at least threshold."""
    keep = np.empty(i.size, dtype=bool)
    need = int(np.ceil(threshold * sigs.shape[1] - 1e-9))
    for lo in range(0, i.size, _VERIFY_CHUNK_PAIRS):
        hi = lo + _VERIFY_CHUNK_PAIRS
        equal = np.count_nonzero(sigs[i[lo:hi]] == sigs[j[lo:hi]], axis=1)
        keep[lo:hi] = equal >= need
    return keep


def candidate_edges(
    sigs: np.ndarray, cfg: DedupConfig, *, rows: np.ndarray | None = None, preference: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Unique near-duplicate edges (i, j), i < j, sorted: LSH candidates, verified when cfg.verify.

    rows: ascending row indices allowed to take part (e.g. exact-dedup representatives); None for
    all. preference: a rank per row (lower = preferred as a cluster's centre); given, a big bucket
    pairs each row with its most preferred rows instead of its predecessors in row order (star
    clustering needs each row to meet its would-be centre). Rows with the empty-document signature
    never become candidates. Signatures are not copied.
    """
    _check_signatures(sigs, cfg)
    n = sigs.shape[0]
    params = lsh_params(cfg)
    if rows is None:
        rows = np.arange(n, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    live = rows[sigs[rows, 0] != EMPTY_SIGNATURE_VALUE]
    all_live = live.size == n
    # With a preference, buckets list rows by preference: band hashes are computed in row order
    # (reading signatures in order) and then permuted, which is cheaper than gathering rows at random.
    by_preference = None if preference is None else np.argsort(preference[live], kind="stable")
    members = live if by_preference is None else live[by_preference]
    accepted = np.empty(0, dtype=np.int64)  # edge keys i * n + j, sorted and unique
    for first in range(0, params.bands, cfg.bands_per_batch):
        count = min(cfg.bands_per_batch, params.bands - first)
        hashes = _band_hashes(sigs, None if all_live else live, first, count, params.rows, cfg.seed)
        if by_preference is not None:
            hashes = hashes[:, by_preference]
        pairs = [_bucket_pairs(h, members, cfg.bucket_window, heads=preference is not None) for h in hashes]
        keys = np.unique(np.concatenate([p[0] * n + p[1] for p in pairs]))
        # Pairs accepted from an earlier band batch need no second verification.
        keys = keys[~np.isin(keys, accepted, assume_unique=True)]
        if cfg.verify and keys.size:
            keys = keys[_verified(sigs, keys // n, keys % n, cfg.threshold)]
        accepted = np.union1d(accepted, keys)
    return accepted // max(n, 1), accepted % max(n, 1)


def connected_component_labels(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Label of each of n nodes = smallest node index in its connected component of edges (i, j).

    Min-label hooking plus pointer jumping, all in numpy; a few passes even on long chains. Every
    pointer goes to a smaller index, so each component's root is its smallest member.
    """
    labels = np.arange(n, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    while True:
        li, lj = labels[i], labels[j]
        split = li != lj
        if not split.any():
            return labels
        li, lj = li[split], lj[split]
        # Both are roots here; hook the larger root under the smaller one.
        np.minimum.at(labels, np.maximum(li, lj), np.minimum(li, lj))
        while True:  # pointer jumping until every node points at its root
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped


def star_centers(n: int, i: np.ndarray, j: np.ndarray, preference: np.ndarray) -> np.ndarray:
    """Centre of each of n nodes under greedy star clustering of edges (i, j): itself if it is a centre.

    Nodes are visited in preference order (lowest rank first); a node not yet claimed becomes a
    centre and claims every unclaimed neighbour it is preferred to. A claimed node claims no one. So
    every member of a star is joined by an edge to its centre (with verified edges: its estimated
    Jaccard with the centre is at least the threshold), no two centres share an edge, and the
    result depends only on the edges and the ranks. O(n + edges): one pass in rank order.
    preference: distinct ranks per node (ties would make the order depend on the edges' order).
    """
    centers = np.arange(n, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if i.size == 0:
        return centers
    # Orient each edge from the preferred node (a) to the other (b); visit claimers in rank order.
    a = np.where(preference[i] < preference[j], i, j)
    b = i + j - a
    order = np.argsort(preference[a], kind="stable")
    a, b = a[order], b[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    ends = np.r_[starts[1:], a.size]
    claimed = bytearray(n)
    members: list[int] = []
    owners: list[int] = []
    targets = b.tolist()
    for u, lo, hi in zip(a[starts].tolist(), starts.tolist(), ends.tolist()):
        if claimed[u]:
            continue  # a member cannot claim others
        for v in targets[lo:hi]:
            if not claimed[v]:
                claimed[v] = 1
                members.append(v)
                owners.append(u)
    centers[np.array(members, dtype=np.int64)] = np.array(owners, dtype=np.int64)
    return centers


def near_duplicate_labels(sigs: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """int64 label per row: the smallest row index of its near-duplicate cluster (itself if unique).

    Clusters are connected components, so A~B and B~C put A, B and C in one cluster even when A and C
    fall below the threshold. Labels depend only on the rows and their order: sort rows by a stable
    key (the flow uses doc_id) to make them independent of sharding and worker count.
    """
    i, j = candidate_edges(sigs, cfg)
    return connected_component_labels(sigs.shape[0], i, j)
