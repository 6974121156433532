"""The same-label task: documents as queries, the other documents of their label as answers.

Every corpus whose documents carry a label (``documents.label``: the source's ``label_field``, or
for a folder of text files the subfolder a file is in; BBC News: business, entertainment,
politics, sport, tech) gets a second retrieval task without any judgement of its own. A seeded
sample of the evaluation pool's labelled documents are the queries (query by example); for each,
every *other* pool document with the same label is relevant, and the query document itself is
left out of its ranking. Dense models query with the document's embedding of the pool (nothing is
embedded again), BM25 with its text. With few labels a query has many relevant documents, so
nDCG@10 is close to a rank-discounted precision@10, and Recall@100 is bounded by 100 over the
label's size: compare models on it, not with the other tasks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from refinery.tasks.evaluate.pool import doc_key

SAME_LABEL = "same_label"
# Salt of the query sample: not the draw of the pool's distractors.
LABEL_SALT = "evaluate-same-label\x1f"
NO_LABELS = "no document of the evaluation pool has a label"
ONE_LABEL = "every labelled document of the evaluation pool has the same label"


def has_label(label: str | None) -> bool:
    return label is not None and label.strip() != ""


def skip_reason(labels: Sequence[str | None]) -> str | None:
    """Why the task cannot be scored on documents with these labels, or None when it can."""
    distinct = {label for label in labels if has_label(label)}
    if not distinct:
        return NO_LABELS
    return ONE_LABEL if len(distinct) == 1 else None


def label_queries(doc_ids: Sequence[str], labels: Sequence[str | None], *, max_queries: int,
                  seed: int) -> tuple[list[str], dict[str, int]]:
    """The query documents of the pool ``doc_ids`` (with ``labels``) and the task's query counts.

    At most ``max_queries`` labelled documents are sampled, those of smallest seeded key
    (:func:`tasks.evaluate.pool.doc_key`), so the sample is the same on every run; a sampled
    document whose label no other pool document has (nothing to find) is counted, not scored.
    Counts: ``in_source`` (labelled pool documents), ``sampled``, ``scored``, ``alone_in_label``,
    ``unlabelled`` (pool documents without a label, never relevant).
    """
    if len(doc_ids) != len(labels):
        raise ValueError(f"{len(doc_ids)} documents but {len(labels)} labels")
    labelled = [(d, lab) for d, lab in zip(doc_ids, labels) if has_label(lab)]
    sizes = Counter(lab for _, lab in labelled)
    sample = sorted(labelled, key=lambda x: (doc_key(x[0], seed=seed, salt=LABEL_SALT), x[0]))[:max_queries]
    scored = sorted(d for d, lab in sample if sizes[lab] > 1)
    counts = {"in_source": len(labelled), "sampled": len(sample), "scored": len(scored),
              "alone_in_label": len(sample) - len(scored), "unlabelled": len(doc_ids) - len(labelled)}
    return scored, counts


def label_codes(labels: Sequence[str | None]) -> np.ndarray:
    """One integer per document: equal for equal labels, -1 for none (which matches nothing)."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(lab, len(codes)) if has_label(lab) else -1 for lab in labels],
                    dtype=np.int64)


def label_hits(rankings: np.ndarray, codes: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, n_relevant)`` of query-by-example rankings (see :func:`tasks.evaluate.retrieval.relevance_hits`).

    ``rankings[q]`` ranks the pool for the query document ``queries[q]``, without that document
    (:func:`tasks.evaluate.retrieval.without_self`); ``codes`` are the pool's :func:`label_codes`.
    A ranked document is a hit when it has the query's label; the query's relevant documents are
    the others of its label.
    """
    codes = np.asarray(codes, dtype=np.int64)
    own = codes[np.asarray(queries, dtype=np.int64)]
    if (own < 0).any():
        raise ValueError("every query document needs a label")
    sizes = np.bincount(codes[codes >= 0], minlength=int(codes.max()) + 1)
    return codes[np.asarray(rankings, dtype=np.int64)] == own[:, None], sizes[own] - 1
