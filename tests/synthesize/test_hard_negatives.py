"""Hard negatives (tasks/synthesize/filters.mine_hard_negatives) on hand-made embeddings: under the
TopK-PercPos margin, never the positive or its dedup cluster, a seeded draw that reproduces."""

from __future__ import annotations

import numpy as np
import pytest

from refinery.tasks.synthesize.config import DEFAULT_HARD_NEGATIVE_MARGIN
from refinery.tasks.synthesize.filters import mine_hard_negatives


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def docs_scoring(scores: list[float]) -> np.ndarray:
    """Unit vectors whose cosine with the query [1, 0] is each of ``scores``."""
    s = np.array(scores)
    return np.stack([s, np.sqrt(1 - s**2)], axis=1).astype(np.float32)


QUERY = np.array([[1.0, 0.0]], dtype=np.float32)
# doc 0 is the positive (0.80); 0.95 x 0.80 = 0.76, so docs 1 (0.90) and 2 (0.78) are too close to it
SCORES = [0.80, 0.90, 0.78, 0.75, 0.70, 0.60, 0.50, 0.40]


def test_margin_removes_documents_scoring_near_or_above_the_positive():
    corpus = docs_scoring(SCORES)
    hardest = mine_hard_negatives(QUERY, corpus, [0], rank_window=(0, 1), margin=0.95)
    assert hardest.tolist() == [3]  # 0.75: the best below 0.76
    assert mine_hard_negatives(QUERY, corpus, [0], rank_window=(0, 1)).tolist() == [1]  # no margin: the top one
    assert mine_hard_negatives(QUERY, corpus, [0], rank_window=(0, 1), margin=0.55).tolist() == [7]
    # Nothing left under the margin: no negative.
    assert mine_hard_negatives(QUERY, corpus, [0], rank_window=(0, 1), margin=0.4).tolist() == [-1]
    with pytest.raises(ValueError):
        mine_hard_negatives(QUERY, corpus, [0], rank_window=(0, 1), margin=1.5)


def test_never_from_the_positive_cluster():
    corpus = docs_scoring(SCORES)
    # docs 3 and 4 are dedup cluster mates of the positive: the next allowed one is doc 5
    picked = mine_hard_negatives(QUERY, corpus, [0], exclude=[{0, 3, 4}], rank_window=(0, 1), margin=0.95)
    assert picked.tolist() == [5]
    drawn = {int(mine_hard_negatives(QUERY, corpus, [0], exclude=[{3, 4}], rank_window=(0, 10), margin=0.95,
                                     seed=s)[0]) for s in range(40)}
    assert drawn == {5, 6, 7}  # every allowed document can be drawn, and nothing else


@pytest.fixture(scope="module")
def random_case():
    """60 queries, each near its positive among 80 documents, with a 3-document cluster apiece."""
    rng = np.random.default_rng(7)
    corpus = unit(rng.normal(size=(80, 16))).astype(np.float32)
    positive = rng.integers(0, 80, size=60)
    query = unit(corpus[positive] + 0.9 * rng.normal(size=(60, 16))).astype(np.float32)
    clusters = [{int(p), *map(int, rng.choice(80, size=2, replace=False))} for p in positive]
    return query, corpus, positive, clusters


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_always_under_the_margin_and_outside_the_cluster(random_case, seed):
    query, corpus, positive, clusters = random_case
    margin = DEFAULT_HARD_NEGATIVE_MARGIN
    negatives = mine_hard_negatives(query, corpus, positive, exclude=clusters, rank_window=(0, 10), margin=margin,
                                    seed=seed)
    scores = query @ corpus.T
    assert (negatives >= 0).sum() > 40  # most queries have one
    for q, neg in enumerate(negatives):
        if neg < 0:
            continue
        assert neg != positive[q] and neg not in clusters[q]
        assert scores[q, neg] < margin * scores[q, positive[q]]


def test_without_a_seed_the_hardest_allowed_one(random_case):
    query, corpus, positive, clusters = random_case
    negatives = mine_hard_negatives(query, corpus, positive, exclude=clusters, rank_window=(0, 10), margin=0.95)
    scores = query @ corpus.T
    for q, neg in enumerate(negatives):
        allowed = [d for d in range(corpus.shape[0])
                   if d not in clusters[q] and d != positive[q] and scores[q, d] < 0.95 * scores[q, positive[q]]]
        assert neg == (max(allowed, key=lambda d: scores[q, d]) if allowed else -1)


def test_seeded_draw_reproduces_and_depends_on_the_seed(random_case):
    query, corpus, positive, clusters = random_case
    args = dict(exclude=clusters, rank_window=(0, 10), margin=0.95)
    first = mine_hard_negatives(query, corpus, positive, seed=3, **args)
    assert first.tolist() == mine_hard_negatives(query, corpus, positive, seed=3, **args).tolist()
    assert first.tolist() != mine_hard_negatives(query, corpus, positive, seed=4, **args).tolist()
    # The draw stays among the 10 hardest allowed documents.
    scores = query @ corpus.T
    for q, neg in enumerate(first):
        allowed = sorted((d for d in range(corpus.shape[0])
                          if d not in clusters[q] and scores[q, d] < 0.95 * scores[q, positive[q]]),
                         key=lambda d: -scores[q, d])
        assert neg in allowed[:10]
