"""Exact then near dedup over whole arrays: cluster labels, survivors and drop reasons in one call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refinery.tasks.dedup.config import DedupConfig
from refinery.tasks.dedup.exact import exact_duplicate_labels
from refinery.tasks.dedup.lsh import LshParams, candidate_edges, connected_component_labels, lsh_params
from refinery.tasks.dedup.survivors import choose_survivors

REASON_KEPT = ""
REASON_EXACT = "dedup_exact"
REASON_NEAR = "dedup_near"


@dataclass(frozen=True)
class DedupResult:
    """Per-row outcome of deduplicate(); arrays are aligned with its input rows."""

    exact_labels: np.ndarray
    """int64: smallest row index with the same exact key (the row itself when exact is off)."""
    labels: np.ndarray
    """int64: smallest row index of the row's duplicate cluster (exact and near merged)."""
    keep: np.ndarray
    """bool: one True per cluster, chosen by cfg.survivor."""
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
        # row's cluster is its representative's component, labelled by the component's smallest row.
        reps = np.flatnonzero(exact == np.arange(n))
        i, j = candidate_edges(sigs, cfg, rows=reps)
        labels = connected_component_labels(n, i, j)[exact]
        params = lsh_params(cfg)
    keep = choose_survivors(labels, lengths, rule=cfg.survivor)
    survivor_of_label = np.empty(n, dtype=np.int64)
    survivor_of_label[labels[keep]] = np.flatnonzero(keep)
    same_text = exact == exact[survivor_of_label[labels]]
    reasons = np.where(keep, REASON_KEPT, np.where(same_text, REASON_EXACT, REASON_NEAR))
    return DedupResult(exact_labels=exact, labels=labels, keep=keep, reasons=reasons, lsh=params, edges=(i, j))
