"""Decide which synthesized candidates become training pairs, each rejection with its reason, and
mine hard negatives, from base-model rankings.

Each filter is a small function that returns a boolean mask of the candidates it rejects;
:func:`run_filters` applies them in order (a candidate is judged only by the filters it reached),
records the first reason per candidate and counts them. The reasons (``pairs.reason``, NULL for
a kept candidate), in the order :func:`candidate_filters` applies them:

- ``filter_unfinished``: the LLM sample hit the token limit before it ended a sentence or line
  (one that ended one was cut there and is judged like the others);
- ``filter_too_short``: fewer than ``min_query_words`` words (an empty sample too);
- ``filter_too_long``: more than ``max_query_words`` words (not for :data:`EXTRACTIVE_GENERATORS`,
  whose query is a whole sentence by design);
- ``filter_repetition``: a repetition loop ("jobs job jobs job"), under
  :data:`MIN_DISTINCT_WORD_RATIO` distinct words;
- ``filter_copy``: the whole query (:data:`COPY_MIN_WORDS` words or more) appears verbatim in the
  positive it would train against, or it repeats a few-shot example;
- ``decontaminated``: its query or passage overlaps an evaluation query or its relevant passage
  (``contaminated``, from :mod:`tasks.synthesize.decontaminate`). After the text checks, whose
  reasons say more about a malformed sample; before consistency, so the count does not depend on
  the base model; and before near-duplicates and the cap, which choose among the survivors, so a
  contaminated candidate never takes the place of a clean one of its passage;
- ``filter_consistency``: the base model does not rank the candidate's passage (or a member of its
  dedup cluster) in the top ``consistency_top_k`` of the filter pool;
- ``filter_near_duplicate``: its word set is at least ``near_duplicate_jaccard`` similar to that
  of a better-ranked query of any passage that passed every filter so far (so a generator that
  repeats itself shows it here, not as the cap); with ``near_duplicate_jaccard`` null only a query
  with the same words as a better-ranked one of its passage and generator (a repeated sample);
- ``filter_per_passage_cap``: its passage and generator already have ``max_pairs_per_passage``
  better-ranked kept candidates.

A candidate of a rephrased passage (WRAP, :mod:`tasks.synthesize.rephrase`) is judged by the same
filters, its positive the rephrasing; its consistency hit is the original document (the pool holds
corpus documents; a query the original answers asks about what the rephrasing kept of it, and one
about what a rephrasing made up finds nothing). After the split, one whose original is held out is
rejected as ``rephrase_heldout``: trained on, it would leak the held-out text; as an evaluation
query, its relevant document would be no corpus document.

Rankings take L2-normalised embeddings (as :func:`tasks.embedding.encode` returns), so a dot
product is a cosine similarity, and score every query against the documents they are given (the
synthesize stage gives the filter pool: the passages' documents and seeded distractors). Queries
are scored in chunks of at most :data:`SCORE_CHUNK_BYTES` of scores.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable, Sequence

import numpy as np

from refinery.tasks.evaluate.retrieval import SCORE_CHUNK_BYTES, rows_per_chunk
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.diversity import jaccard, words

FILTER_UNFINISHED = "filter_unfinished"
FILTER_TOO_SHORT = "filter_too_short"
FILTER_TOO_LONG = "filter_too_long"
FILTER_REPETITION = "filter_repetition"
FILTER_COPY = "filter_copy"
FILTER_CONSISTENCY = "filter_consistency"
FILTER_PER_PASSAGE_CAP = "filter_per_passage_cap"
FILTER_NEAR_DUPLICATE = "filter_near_duplicate"
# The name, not filter_*: a rule about the evaluation, not about the candidate's quality.
DECONTAMINATED = "decontaminated"
# A rephrased passage's candidate (:mod:`tasks.synthesize.rephrase`) whose original the evaluation holds
# out: set after the filters and the split, so not one of REASONS' steps.
REPHRASE_HELDOUT = "rephrase_heldout"
REASONS = (FILTER_UNFINISHED, FILTER_TOO_SHORT, FILTER_TOO_LONG, FILTER_REPETITION, FILTER_COPY,
           DECONTAMINATED, FILTER_CONSISTENCY, FILTER_NEAR_DUPLICATE, FILTER_PER_PASSAGE_CAP)

# Generators whose query is a sentence of the passage (removed from the positive): the length cap
# is for generated queries, a news sentence is often longer.
EXTRACTIVE_GENERATORS = frozenset({"inverse_cloze"})
# A query of this many words or more found verbatim in its positive is extraction, not a query.
COPY_MIN_WORDS = 6
# Below this share of distinct words (in a query of 4 words or more) a query is a repetition loop.
MIN_DISTINCT_WORD_RATIO = 0.5
REPETITION_MIN_WORDS = 4

# A filter: the mask of candidates still in play -> the mask of those it rejects.
Filter = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- the runner


def run_filters(n: int, steps: Sequence[tuple[str, Filter]]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Apply ``steps`` (reason, filter) in order to ``n`` candidates.

    Each filter sees the mask of the candidates no earlier step rejected and may reject only
    those. Returns ``(kept, reason, counts)``: the mask of candidates no step rejected, the reason
    of each rejected candidate (``None`` when kept; an object array) and the number rejected per
    reason (every step's reason, zeros too).
    """
    alive = np.ones(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    counts: dict[str, int] = {}
    for name, step in steps:
        rejected = np.asarray(step(alive.copy()), dtype=bool) & alive
        reason[rejected] = name
        alive &= ~rejected
        counts[name] = counts.get(name, 0) + int(rejected.sum())
    return alive, reason, counts


def candidate_filters(
    cfg: SynthesizeConfig,
    queries: Sequence[str],
    positives: Sequence[str],
    generators: Sequence[str],
    passage_keys: Sequence[Hashable],
    rank: np.ndarray,
    consistent: np.ndarray,
    *,
    examples: Collection[str] = (),
    unfinished: Sequence[bool] | None = None,
    contaminated: Sequence[bool] | np.ndarray | None = None,
) -> list[tuple[str, Filter]]:
    """The synthesize stage's filters over its candidates (for :func:`run_filters`), in order:
    unfinished samples (``unfinished``, :attr:`Candidate.unfinished`; none when ``None``), the text
    checks, decontamination (``contaminated``, :attr:`decontaminate.Matches.contaminated`; none
    when ``None``), consistency (``consistent`` and ``rank`` from :func:`consistency_filter`),
    near-duplicates and the per-passage cap over ``passage_keys``, these two judging the
    best-ranked candidates first (the earlier one on a tie). ``examples``: the prompts' few-shot
    queries."""
    rank = np.asarray(rank, dtype=np.int64)
    unfinished = np.zeros(len(queries), dtype=bool) if unfinished is None else np.asarray(unfinished, dtype=bool)
    consistent = np.asarray(consistent, dtype=bool)
    contaminated = np.zeros(len(queries), dtype=bool) if contaminated is None else np.asarray(contaminated, dtype=bool)
    extractive = np.array([g in EXTRACTIVE_GENERATORS for g in generators], dtype=bool)
    best_first = np.lexsort((np.arange(len(rank)), rank))
    steps: list[tuple[str, Filter]] = [
        (FILTER_UNFINISHED, lambda alive: unfinished),
        (FILTER_TOO_SHORT, lambda alive: too_short(queries, min_words=cfg.min_query_words)),
        (FILTER_TOO_LONG, lambda alive: too_long(queries, max_words=cfg.max_query_words) & ~extractive),
        (FILTER_REPETITION, lambda alive: repetition_loop(queries)),
        (FILTER_COPY, lambda alive: copied(queries, positives, examples=examples, alive=alive)),
        (DECONTAMINATED, lambda alive: contaminated),
        (FILTER_CONSISTENCY, lambda alive: ~consistent),
    ]
    if cfg.near_duplicate_jaccard is not None:
        steps.append((FILTER_NEAR_DUPLICATE, lambda alive: near_duplicates(
            queries, threshold=cfg.near_duplicate_jaccard, alive=alive, order=best_first)))
    else:  # off across queries, but a repeated sample of one passage still counts once
        steps.append((FILTER_NEAR_DUPLICATE, lambda alive: near_duplicates(
            queries, threshold=1.0, alive=alive, order=best_first, groups=passage_keys)))
    steps.append((FILTER_PER_PASSAGE_CAP, lambda alive: over_passage_cap(
        rank, passage_keys, alive=alive, max_per_passage=cfg.max_pairs_per_passage)))
    return steps


# --------------------------------------------------------------------------- text filters


def too_short(queries: Sequence[str], *, min_words: int) -> np.ndarray:
    """Queries with fewer than ``min_words`` words."""
    return np.array([len(words(q)) < min_words for q in queries], dtype=bool)


def too_long(queries: Sequence[str], *, max_words: int) -> np.ndarray:
    """Queries with more than ``max_words`` words."""
    return np.array([len(words(q)) > max_words for q in queries], dtype=bool)


def repetition_loop(queries: Sequence[str], *, min_distinct_ratio: float = MIN_DISTINCT_WORD_RATIO,
                    min_words: int = REPETITION_MIN_WORDS) -> np.ndarray:
    """Queries of ``min_words`` words or more of which under ``min_distinct_ratio`` are distinct."""
    out = np.zeros(len(queries), dtype=bool)
    for i, q in enumerate(queries):
        tokens = words(q)
        out[i] = len(tokens) >= min_words and len(set(tokens)) / len(tokens) < min_distinct_ratio
    return out


def copied(queries: Sequence[str], positives: Sequence[str], *, min_words: int = COPY_MIN_WORDS,
           examples: Collection[str] = (), alive: np.ndarray | None = None) -> np.ndarray:
    """Queries that copy: all their words (``min_words`` or more) in order, verbatim, in their
    positive (case and punctuation aside), or the same words as one of ``examples`` (the prompt's
    few-shot queries). Only candidates in ``alive`` are checked (positives are long)."""
    if len(queries) != len(positives):
        raise ValueError(f"{len(queries)} queries but {len(positives)} positives")
    shots = {" ".join(words(e)) for e in examples}
    out = np.zeros(len(queries), dtype=bool)
    for i, (q, p) in enumerate(zip(queries, positives)):
        if alive is not None and not alive[i]:
            continue
        tokens = words(q)
        joined = " ".join(tokens)
        out[i] = joined in shots or (len(tokens) >= min_words and f" {joined} " in f" {' '.join(words(p or ''))} ")
    return out


# --------------------------------------------------------------------------- ranking filters


def positive_ranks(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    positive_index: Sequence[int] | np.ndarray,
    *,
    same_as_positive: Sequence[Collection[int]] | None = None,
) -> np.ndarray:
    """1-based rank of each query's positive document among the documents of ``corpus_emb``.

    Rank is one plus the number of documents scoring strictly higher than the positive, not
    counting documents in ``same_as_positive[q]`` (members of the positive's dedup cluster:
    ranking a duplicate first is not a failure).
    """
    query_emb = np.asarray(query_emb, dtype=np.float32)
    corpus_emb = np.asarray(corpus_emb, dtype=np.float32)
    positive_index = np.asarray(positive_index, dtype=np.int64)
    if query_emb.shape[0] != positive_index.shape[0]:
        raise ValueError(f"{query_emb.shape[0]} queries but {positive_index.shape[0]} positive indices")
    if same_as_positive is not None and len(same_as_positive) != len(positive_index):
        raise ValueError("same_as_positive needs one set per query")
    ranks = np.empty(len(positive_index), dtype=np.int64)
    step = rows_per_chunk(corpus_emb.shape[0], SCORE_CHUNK_BYTES)
    for start in range(0, len(positive_index), step):
        stop = start + step
        scores = query_emb[start:stop] @ corpus_emb.T
        rows = np.arange(scores.shape[0])
        pos = positive_index[start:stop]
        pos_score = scores[rows, pos]
        if same_as_positive is not None:
            for r, q in enumerate(range(start, min(stop, len(positive_index)))):
                others = [d for d in same_as_positive[q] if d != pos[r]]
                if others:
                    scores[r, others] = -np.inf
        ranks[start:stop] = 1 + (scores > pos_score[:, None]).sum(axis=1)
    return ranks


def consistency_filter(
    query_emb: np.ndarray,
    passage_emb_of_corpus: np.ndarray,
    positive_index: Sequence[int] | np.ndarray,
    top_k: int,
    *,
    same_as_positive: Sequence[Collection[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep a synthesized query only if its own passage ranks in the top ``top_k`` of the documents.

    Returns ``(kept, rank)``: a boolean mask and the 1-based rank of the positive per query
    (see :func:`positive_ranks` for ``same_as_positive``). A query that the base model cannot
    connect to its passage is usually off topic or too generic to teach anything.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    rank = positive_ranks(query_emb, passage_emb_of_corpus, positive_index, same_as_positive=same_as_positive)
    return rank <= top_k, rank


def over_passage_cap(
    rank: Sequence[int] | np.ndarray,
    passage_of: Sequence[Hashable],
    *,
    alive: np.ndarray,
    max_per_passage: int,
) -> np.ndarray:
    """Candidates in ``alive`` beyond the ``max_per_passage`` best-ranked of their key.

    Keys are ``passage_of`` (a passage id, or a (passage, generator) tuple to cap each generator
    separately); the earlier candidate wins a tie. Several queries for one passage add little but
    near-duplicate positives, which in-batch negatives handle badly.
    """
    rank = np.asarray(rank, dtype=np.int64)
    alive = np.asarray(alive, dtype=bool)
    if rank.shape[0] != len(passage_of) or alive.shape[0] != rank.shape[0]:
        raise ValueError("rank, passage_of and alive must have one entry per candidate")
    if max_per_passage < 1:
        raise ValueError("max_per_passage must be >= 1")
    over = np.zeros(rank.shape[0], dtype=bool)
    taken: Counter[Hashable] = Counter()
    for c in np.lexsort((np.arange(rank.shape[0]), rank)):
        if not alive[c]:
            continue
        key = passage_of[c]
        if taken[key] < max_per_passage:
            taken[key] += 1
        else:
            over[c] = True
    return over


def near_duplicates(
    queries: Sequence[str],
    *,
    threshold: float,
    alive: np.ndarray | None = None,
    order: Sequence[int] | np.ndarray | None = None,
    groups: Sequence[Hashable] | None = None,
) -> np.ndarray:
    """Queries (of ``alive``, judged in ``order``) whose lower-cased word set has Jaccard similarity
    at least ``threshold`` with that of an earlier query that was not itself a near-duplicate
    (with ``groups``, one per query, only an earlier query of the same group counts).

    Same words in any order, case or punctuation are a near-duplicate at every threshold. Only
    pairs sharing a word of their prefixes are compared (prefix filtering: with words ordered
    rarest first, two sets of Jaccard >= t share one of their first ``|s| - ceil(t |s|) + 1``
    words), so the cost stays near linear for varied queries.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    n = len(queries)
    alive = np.ones(n, dtype=bool) if alive is None else np.asarray(alive, dtype=bool)
    order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    if groups is not None and len(groups) != n:
        raise ValueError(f"{n} queries but {len(groups)} groups")
    sets = [frozenset(words(q)) if alive[i] else frozenset() for i, q in enumerate(queries)]
    frequency = Counter(w for s in sets for w in s)
    postings: dict[tuple[Hashable, str], list[int]] = defaultdict(list)
    dup = np.zeros(n, dtype=bool)
    for i in order:
        if not alive[i] or not sets[i]:
            continue
        group = None if groups is None else groups[i]
        ranked = sorted(sets[i], key=lambda w: (frequency[w], w))
        prefix = ranked[: len(ranked) - math.ceil(threshold * len(ranked) - 1e-9) + 1]
        compared: set[int] = set()
        for w in prefix:
            for j in postings[group, w]:
                if j not in compared:
                    compared.add(j)
                    if jaccard(sets[i], sets[j]) >= threshold:
                        dup[i] = True
                        break
            if dup[i]:
                break
        if not dup[i]:
            for w in prefix:
                postings[group, w].append(int(i))
    return dup


# --------------------------------------------------------------------------- hard negatives


def mine_hard_negatives(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    positive_index: Sequence[int] | np.ndarray,
    *,
    exclude: Sequence[Collection[int]] | None = None,
    rank_window: tuple[int, int],
    margin: float | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """One hard negative per query from the base model's ranking, or -1 where none qualifies.

    The corpus is ranked for each query and the positive, the documents in ``exclude[q]`` (its
    dedup cluster, held-out documents) and, with ``margin`` (TopK-PercPos), every document
    scoring at or above ``margin`` times the positive's score are removed: those are likely
    unlabelled positives. With ``seed=None`` the negative is the document at 0-based position
    ``rank_window[0]`` of what remains (the hardest one allowed); with a seed it is drawn
    uniformly from positions ``rank_window[0] .. rank_window[1] - 1`` (fewer when fewer remain),
    one seeded stream over the queries in order, so the same inputs give the same negatives.
    """
    start, stop = rank_window
    if not 0 <= start < stop:
        raise ValueError(f"rank_window must satisfy 0 <= start < stop, got {rank_window}")
    if margin is not None and not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    query_emb = np.asarray(query_emb, dtype=np.float32)
    corpus_emb = np.asarray(corpus_emb, dtype=np.float32)
    positive_index = np.asarray(positive_index, dtype=np.int64)
    if exclude is not None and len(exclude) != len(positive_index):
        raise ValueError("exclude needs one set per query")
    rng = np.random.default_rng(seed) if seed is not None else None
    negatives = np.full(len(positive_index), -1, dtype=np.int64)
    step = rows_per_chunk(corpus_emb.shape[0], SCORE_CHUNK_BYTES)
    for begin in range(0, len(positive_index), step):
        scores = query_emb[begin : begin + step] @ corpus_emb.T
        for r in range(scores.shape[0]):
            q = begin + r
            row = scores[r]
            if margin is not None:
                row[row >= margin * row[positive_index[q]]] = -np.inf
            row[positive_index[q]] = -np.inf
            if exclude is not None and exclude[q]:
                row[list(exclude[q])] = -np.inf
            allowed = int(np.isfinite(row).sum())
            if start >= allowed:
                continue
            depth = min(stop, allowed) if rng is not None else start + 1
            # Partial sort: only the first `depth` positions are needed; ties go to the lower index.
            top = np.argpartition(-row, depth - 1)[:depth]
            top = top[np.lexsort((top, -row[top]))]
            pick = start if rng is None else int(rng.integers(start, depth))
            negatives[q] = int(top[pick])
    return negatives
