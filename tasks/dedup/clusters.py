"""Exact then near dedup over whole arrays: cluster labels, survivors and drop reasons in one call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refinery.tasks.dedup.config import DedupConfig
from refinery.tasks.dedup.exact import exact_duplicate_labels
from refinery.tasks.dedup.lsh import LshParams, candidate_edges, connected_component_labels, lsh_params, star_centers
from refinery.tasks.dedup.minhash import estimated_jaccard
from refinery.tasks.dedup.survivors import choose_survivors, preference_ranks

REASON_KEPT = ""
REASON_EXACT = "dedup_exact"
REASON_NEAR = "dedup_near"
# Rows whose similarity with their survivor is estimated at once (2 x 8 MB of signatures at 128 perms).
_SIMILARITY_CHUNK = 1 << 14


@dataclass(frozen=True)
class DedupResult:
    """Per-row outcome of deduplicate(); arrays are aligned with its input rows."""

    exact_labels: np.ndarray
    """int64: smallest row index with the same exact key (the row itself when exact is off)."""
    labels: np.ndarray
    """int64: smallest row index of the row's duplicate cluster (exact and near merged)."""
    keep: np.ndarray
    """bool: one True per cluster, chosen by cfg.survivor."""
    survivors: np.ndarray
    """int64: the row kept for the row's cluster (the row itself when kept)."""
    similarity: np.ndarray
    """float64: signature-estimated Jaccard with the survivor (1.0 for survivors and exact copies;
    NaN when near dedup is off)."""
    reasons: np.ndarray
    """str per row: "" kept, "dedup_exact" same normalized text as the survivor, "dedup_near" otherwise."""
    lsh: LshParams | None
    """Banding used, None when near dedup is off."""
    edges: tuple[np.ndarray, np.ndarray]
    """Near-duplicate pairs (i, j), i < j, accepted between exact representatives: the evidence for labels."""

    def stats(self) -> dict[str, int | float]:
        """Counts for the run report: docs, kept, dropped per reason, clusters with more than one doc."""
        n = int(self.labels.size)
        sizes = np.bincount(self.labels, minlength=n) if n else np.zeros(0, dtype=np.int64)
        out: dict[str, int | float] = {
            "docs": n,
            "kept": int(self.keep.sum()),
            "dropped_dedup_exact": int((self.reasons == REASON_EXACT).sum()),
            "dropped_dedup_near": int((self.reasons == REASON_NEAR).sum()),
            "duplicate_clusters": int((sizes > 1).sum()),
            "largest_cluster": int(sizes.max()) if n else 0,
        }
        near = self.similarity[self.reasons == REASON_NEAR]
        if near.size:
            # How alike a near drop is to the document it is filed under: under `star` never below
            # the threshold; under `components` chains show here as low values.
            p10, median = np.quantile(near, [0.1, 0.5])
            out |= {
                "near_survivor_jaccard_min": round(float(near.min()), 4),
                "near_survivor_jaccard_p10": round(float(p10), 4),
                "near_survivor_jaccard_median": round(float(median), 4),
            }
        if self.lsh is not None:
            out |= {
                "lsh_bands": self.lsh.bands,
                "lsh_rows": self.lsh.rows,
                "lsh_derived_from_threshold": self.lsh.derived,
                "lsh_threshold": self.lsh.threshold,
                "lsh_candidate_probability_at_threshold": self.lsh.candidate_probability_at_threshold,
            }
        return out


def deduplicate(
    keys: np.ndarray | None, sigs: np.ndarray | None, lengths: np.ndarray, cfg: DedupConfig
) -> DedupResult:
    """Exact dedup, then near dedup of the exact survivors' representatives, then one survivor per cluster.

    keys: exact_keys() per row (needed when cfg.exact); sigs: signatures() per row (needed when
    cfg.near); lengths: text length per row, for the survivor rule. Rows must be in a stable order
    (the flow sorts by doc_id): labels are smallest row indices.

    Near clusters follow cfg.clustering. "star": greedy stars over the verified pairs, visited in
    survivor-preference order, so each near drop is a verified pair with its own survivor.
    "components": connected components, so a chain of pairs puts documents that share nothing in
    one cluster (what datatrove, NeMo Curator and text-dedup do).
    """
    n = int(np.asarray(lengths).size)
    if cfg.exact:
        if keys is None:
            raise ValueError("cfg.exact is on: pass exact_keys()")
        exact = exact_duplicate_labels(keys)
    else:
        exact = np.arange(n, dtype=np.int64)
    labels = exact
    params = None
    i = j = np.empty(0, dtype=np.int64)
    if cfg.near:
        if sigs is None:
            raise ValueError("cfg.near is on: pass signatures()")
        # Near dedup runs on one representative per exact group (the group's smallest row), so each
        # row's cluster is its representative's, labelled by the cluster's smallest row.
        reps = np.flatnonzero(exact == np.arange(n))
        if cfg.clustering == "star":
            # A representative is as preferred as its group's best member, so a star's survivor (the
            # best member of its whole cluster) is a member of the centre's group: same text as the centre.
            preference = preference_ranks(exact, lengths, rule=cfg.survivor)
            i, j = candidate_edges(sigs, cfg, rows=reps, preference=preference)
            centers = star_centers(n, i, j, preference)[exact]
            smallest = np.full(n, n, dtype=np.int64)
            np.minimum.at(smallest, centers, np.arange(n))
            labels = smallest[centers]
        else:
            i, j = candidate_edges(sigs, cfg, rows=reps)
            labels = connected_component_labels(n, i, j)[exact]
        params = lsh_params(cfg)
    keep = choose_survivors(labels, lengths, rule=cfg.survivor)
    survivor_of_label = np.empty(n, dtype=np.int64)
    survivor_of_label[labels[keep]] = np.flatnonzero(keep)
    survivors = survivor_of_label[labels]
    same_text = exact == exact[survivors]
    reasons = np.where(keep, REASON_KEPT, np.where(same_text, REASON_EXACT, REASON_NEAR))
    similarity = np.full(n, np.nan if sigs is None or not cfg.near else 1.0)
    near = np.flatnonzero(reasons == REASON_NEAR)
    for lo in range(0, near.size, _SIMILARITY_CHUNK):  # chunks bound the copies of signature rows
        rows = near[lo : lo + _SIMILARITY_CHUNK]
        similarity[rows] = estimated_jaccard(sigs[rows], sigs[survivors[rows]])
    return DedupResult(exact_labels=exact, labels=labels, keep=keep, survivors=survivors, similarity=similarity,
                       reasons=reasons, lsh=params, edges=(i, j))
