"""Decontamination: which training candidates overlap an evaluation query or its relevant passage.

The check mteb added for BEIR after test queries leaked into training sets. Texts are compared as
*normalized word sequences*: Unicode NFKC, then case-folded, then split into runs of word
characters (letters, digits, underscore), so punctuation and whitespace only separate words
("Oil-price rise!" and "oil price  RISE" are the same three words; full-width "Ｏｉｌ" is "oil";
accents are kept: "café" is not "cafe"). Overlap is an exact match of whole sequences or a shared
word :data:`NGRAM`-gram (8 words). A candidate is contaminated when

- (a) ``query_overlaps_query``: its query equals an evaluation query, or shares an 8-gram with one
  (a query shorter than 8 words can only match exactly);
- (b) ``query_quotes_relevant_passage``: its query shares an 8-gram with the relevant passage of an
  evaluation query, where that passage is kept out of training (the synthesize stage's held-out
  pairs; see :func:`EvaluationIndex.build`);
- (c) ``passage_contains_query``: its passage (the positive it would train against) contains an
  evaluation query of :data:`MIN_CONTAINED_QUERY_WORDS` words or more as a word sequence (for an
  evaluation query of 8 words or more, one shared 8-gram suffices).

The first rule that holds names the match (:data:`RULES`). Evaluation queries and passages are
held as 64-bit hashes of their n-grams (sorted arrays with the evaluation query each came from),
so the index is about 12 bytes an n-gram whatever the texts: a few MB for ``evaluate.max_queries``
titles, or for the held-out pairs of a run.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xxhash

NGRAM = 8
# An evaluation query of fewer words found inside a training passage is left alone: a 2-3 word
# query ("Prime minister's questions", "Oil prices rise") is a phrase any story may use without
# being about it. On the bundled BBC corpus (2,096 distinct titles against 8,900 inverse-cloze
# candidates of every body) 3 words drops 33 candidates, all that one phrase in other stories;
# 4 words drops none.
MIN_CONTAINED_QUERY_WORDS = 4

QUERY_OVERLAPS_QUERY = "query_overlaps_query"
QUERY_QUOTES_RELEVANT_PASSAGE = "query_quotes_relevant_passage"
PASSAGE_CONTAINS_QUERY = "passage_contains_query"
RULES = (QUERY_OVERLAPS_QUERY, QUERY_QUOTES_RELEVANT_PASSAGE, PASSAGE_CONTAINS_QUERY)
NONE = -1  # no rule matched (a :class:`Matches` entry)

_WORD = re.compile(r"\w+")
# An apostrophe inside a word joins it ("minister's" is one word, "ministers"), so word counts are
# what a reader counts; any other punctuation separates words.
_APOSTROPHE = re.compile(r"(?<=\w)['\u2019\u02bc](?=\w)")
# Odd multiplier of the polynomial n-gram hash (mod 2**64) over 64-bit word hashes.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def normalize(text: str) -> list[str]:
    """The normalized words of ``text``: NFKC, case-folded, apostrophes inside a word dropped, runs
    of word characters."""
    return _WORD.findall(_APOSTROPHE.sub("", unicodedata.normalize("NFKC", text or "").casefold()))


class _Hasher:
    """64-bit hashes of words (memoized per index: a vocabulary, not a corpus) and of their n-grams."""

    def __init__(self) -> None:
        self._words: dict[str, int] = {}

    def ids(self, words: Sequence[str]) -> np.ndarray:
        cache = self._words
        out = np.empty(len(words), dtype=np.uint64)
        for i, w in enumerate(words):
            h = cache.get(w)
            if h is None:
                h = cache[w] = xxhash.xxh3_64_intdigest(w.encode())
            out[i] = h
        return out

    @staticmethod
    def ngrams(ids: np.ndarray, n: int) -> np.ndarray:
        """Hash of every run of ``n`` consecutive words (none when fewer)."""
        count = len(ids) - n + 1
        if count <= 0:
            return np.empty(0, dtype=np.uint64)
        h = np.zeros(count, dtype=np.uint64)
        for k in range(n):  # wraps mod 2**64, as wanted
            h = h * _MULTIPLIER + ids[k : k + count]
        return h


@dataclass(frozen=True)
class _Table:
    """Sorted n-gram hashes, each with the evaluation query (index) it came from."""

    hashes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    owners: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))

    @classmethod
    def of(cls, parts: list[tuple[np.ndarray, int]]) -> _Table:
        if not parts:
            return cls()
        hashes = np.concatenate([h for h, _ in parts])
        owners = np.concatenate([np.full(len(h), o, dtype=np.int32) for h, o in parts])
        hashes, first = np.unique(hashes, return_index=True)  # sorted; one owner per hash is enough
        return cls(hashes, owners[first])

    def find(self, probe: np.ndarray) -> int:
        """The owner of the first of ``probe`` in the table, or :data:`NONE`."""
        if not len(self.hashes) or not len(probe):
            return NONE
        at = np.minimum(np.searchsorted(self.hashes, probe), len(self.hashes) - 1)
        hit = np.flatnonzero(self.hashes[at] == probe)
        return int(self.owners[at[hit[0]]]) if len(hit) else NONE

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.owners.nbytes)


@dataclass(frozen=True)
class Matches:
    """Per candidate: the rule that matched (an index into :data:`RULES`, :data:`NONE` if none) and
    the evaluation query it matched (an index into :attr:`EvaluationIndex.queries`, or NONE)."""

    rule: np.ndarray
    query: np.ndarray

    @property
    def contaminated(self) -> np.ndarray:
        return self.rule != NONE


@dataclass(frozen=True)
class EvaluationIndex:
    """The n-grams of a set of evaluation queries (and of their relevant passages, where rule (b)
    applies), to check training candidates against (:meth:`matches`)."""

    queries: tuple[str, ...]
    sets: tuple[str, ...]  # the evaluation set of each query (its task name), for the report
    exact: dict[int, int]  # hash of a whole normalized query -> its index
    query_ngrams: _Table  # 8-grams of the queries of 8 words or more: (a), and (c) for those
    contained: dict[int, _Table]  # n -> the queries of n words, MIN_CONTAINED_QUERY_WORDS <= n < NGRAM: (c)
    passage_ngrams: _Table  # 8-grams of the relevant passages given: (b)
    min_contained_words: int = MIN_CONTAINED_QUERY_WORDS

    @classmethod
    def build(cls, queries: Sequence[str], *, sets: Sequence[str] | None = None,
              passages: Sequence[str | None] | None = None,
              min_contained_words: int = MIN_CONTAINED_QUERY_WORDS) -> EvaluationIndex:
        """The index of ``queries`` (``sets``: the task each belongs to) and, for rule (b),
        ``passages[i]``: the relevant passage of ``queries[i]`` (None: none given).

        Give a relevant passage only where the evaluation keeps it out of training (held-out
        synthetic pairs). A headline's or a user query's relevant documents are the corpus that
        training adapts to by design: quoting them is domain adaptation, not leakage, and with
        ``evaluate.max_queries`` covering most of a small corpus, rule (b) on them would drop most
        inverse-cloze pairs.
        """
        if not min_contained_words >= 1:
            raise ValueError(f"min_contained_words must be >= 1, got {min_contained_words}")
        if passages is not None and len(passages) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        hasher = _Hasher()
        exact: dict[int, int] = {}
        long_parts: list[tuple[np.ndarray, int]] = []
        short_parts: dict[int, list[tuple[np.ndarray, int]]] = {}
        for i, q in enumerate(queries):
            words = normalize(q)
            if not words:
                continue
            exact.setdefault(xxhash.xxh3_64_intdigest(" ".join(words).encode()), i)
            ids = hasher.ids(words)
            if len(words) >= NGRAM:
                long_parts.append((hasher.ngrams(ids, NGRAM), i))
            elif len(words) >= min_contained_words:
                short_parts.setdefault(len(words), []).append((hasher.ngrams(ids, len(words)), i))
        passage_parts = [(hasher.ngrams(hasher.ids(normalize(p)), NGRAM), i)
                         for i, p in enumerate(passages or ()) if p]
        return cls(queries=tuple(queries), sets=tuple(sets) if sets is not None else ("",) * len(queries),
                   exact=exact, query_ngrams=_Table.of(long_parts),
                   contained={n: _Table.of(parts) for n, parts in sorted(short_parts.items())},
                   passage_ngrams=_Table.of(passage_parts), min_contained_words=min_contained_words)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def nbytes(self) -> int:
        """Bytes of the n-gram tables (what grows with the evaluation set)."""
        return (self.query_ngrams.nbytes + self.passage_ngrams.nbytes
                + sum(t.nbytes for t in self.contained.values()))

    def matches(self, queries: Sequence[str], positives: Sequence[str | None], *,
                alive: np.ndarray | None = None) -> Matches:
        """Which of the candidates (``queries[i]`` training against ``positives[i]``; only those in
        ``alive``) are contaminated, by which rule and evaluation query."""
        if len(queries) != len(positives):
            raise ValueError(f"{len(queries)} queries but {len(positives)} positives")
        rule = np.full(len(queries), NONE, dtype=np.int8)
        matched = np.full(len(queries), NONE, dtype=np.int32)
        if not self.queries:
            return Matches(rule, matched)
        hasher = _Hasher()
        for i, (q, p) in enumerate(zip(queries, positives)):
            if alive is not None and not alive[i]:
                continue
            found = self._match(hasher, normalize(q), p)
            if found is not None:
                rule[i], matched[i] = found
        return Matches(rule, matched)

    def _match(self, hasher: _Hasher, words: list[str], positive: str | None) -> tuple[int, int] | None:
        query_grams = hasher.ngrams(hasher.ids(words), NGRAM)
        # (a) the same query, or a shared 8-gram with one of 8 words or more
        if words and (i := self.exact.get(xxhash.xxh3_64_intdigest(" ".join(words).encode()))) is not None:
            return 0, i
        if (i := self.query_ngrams.find(query_grams)) != NONE:
            return 0, i
        # (b) a shared 8-gram with a relevant passage kept out of training
        if (i := self.passage_ngrams.find(query_grams)) != NONE:
            return 1, i
        # (c) an evaluation query (long enough) inside the passage
        if positive and (self.contained or len(self.query_ngrams.hashes)):
            ids = hasher.ids(normalize(positive))
            for n, table in self.contained.items():
                if (i := table.find(hasher.ngrams(ids, n))) != NONE:
                    return 2, i
            if (i := self.query_ngrams.find(hasher.ngrams(ids, NGRAM))) != NONE:
                return 2, i
        return None
