"""Exact and MinHash near-duplicate removal as pure array functions (no I/O, no Prefect).

Per shard, on any worker (a row depends only on its own text and the config):

    keys = exact_keys(texts)            # uint64 per text
    sigs = signatures(texts, cfg)       # (n, cfg.num_perm) uint32

Once, over all rows sorted by doc_id (so labels do not depend on sharding or worker count):

    result = deduplicate(keys, sigs, lengths, cfg)
    result.keep, result.reasons, result.survivors, result.similarity, result.stats()

or step by step: exact_duplicate_labels(keys), candidate_edges(sigs, cfg), star_centers(...) or
connected_component_labels(...), choose_survivors(labels, lengths). lsh_params(cfg) tells the banding and its S-curve.

Modules: config (DedupConfig), normalize (batch casefolding and whitespace collapsing), exact
(keys and labels), minhash (signatures), lsh (banding, candidate pairs, star clusters or connected
components), survivors (preference order, one survivor per cluster), clusters (deduplicate: exact,
then near, then survivors).
"""

from refinery.tasks.dedup.clusters import REASON_EXACT, REASON_NEAR, DedupResult, deduplicate
from refinery.tasks.dedup.config import DedupConfig
from refinery.tasks.dedup.exact import exact_duplicate_labels, exact_keys, normalize_for_exact
from refinery.tasks.dedup.lsh import (LshParams, candidate_edges, connected_component_labels, lsh_params,
                                      near_duplicate_labels, star_centers)
from refinery.tasks.dedup.minhash import EMPTY_SIGNATURE_VALUE, estimated_jaccard, shingle_sets, signatures
from refinery.tasks.dedup.survivors import choose_survivors, preference_ranks

__all__ = [
    "EMPTY_SIGNATURE_VALUE",
    "REASON_EXACT",
    "REASON_NEAR",
    "DedupConfig",
    "DedupResult",
    "LshParams",
    "candidate_edges",
    "choose_survivors",
    "connected_component_labels",
    "deduplicate",
    "estimated_jaccard",
    "exact_duplicate_labels",
    "exact_keys",
    "lsh_params",
    "near_duplicate_labels",
    "normalize_for_exact",
    "preference_ranks",
    "shingle_sets",
    "signatures",
    "star_centers",
]
