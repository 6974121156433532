"""Text handling shared by the generators: sentence splitting, passage truncation, query cleaning."""

from __future__ import annotations

import re
from collections.abc import Collection

from refinery.tasks.synthesize.config import DEFAULT_MAX_QUERY_WORDS, DEFAULT_MIN_QUERY_WORDS

# A query that repeats this many consecutive passage words verbatim is extraction, not a query.
COPY_MIN_WORDS = 6
# Below this share of distinct words a query is a repetition loop ("jobs job jobs job ...").
MIN_DISTINCT_WORD_RATIO = 0.5

_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n")
# A sentence ends at . ! or ? (optionally followed by a closing quote) before whitespace and
# an upper-case letter, digit or opening quote. BBC style writes "Mr Brown", so abbreviations
# with full stops are rare enough to ignore.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)(?:[\"'\u201d\u2019])?\s+(?=[\"'\u201c\u2018A-Z0-9£$])")
WORD = re.compile(r"\w+")


def split_sentences(text: str) -> list[list[str]]:
    """Paragraphs of ``text`` (split on blank lines), each a list of its sentences."""
    paragraphs = []
    for para in _PARAGRAPH_SPLIT.split(text.strip()):
        para = " ".join(para.split())
        if para:
            paragraphs.append(_split_paragraph(para))
    return paragraphs


def _split_paragraph(para: str) -> list[str]:
    # re.split with a look-behind that may swallow a closing quote: rebuild sentence ends by hand.
    sentences, start = [], 0
    for match in _SENTENCE_SPLIT.finditer(para):
        end = match.start()
        closing = para[end : match.end()].strip()
        sentences.append(para[start:end] + closing)
        start = match.end()
    sentences.append(para[start:])
    return [s.strip() for s in sentences if s.strip()]


_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_LABEL_PREFIX = re.compile(
    r"^(?:search\s+query|query|question|title|headline|answer|claim|statement|keywords?)\s*[:\-\u2013]\s*",
    re.IGNORECASE,
)
_EDGE_CHARS = "\"'`*\u201c\u201d\u2018\u2019 "
_TRAILING_PUNCT = ".,;:-\u2013 "


def clean_query(
    text: str,
    passage: str,
    *,
    min_words: int = DEFAULT_MIN_QUERY_WORDS,
    max_words: int = DEFAULT_MAX_QUERY_WORDS,
    shot_queries: Collection[str] | None = None,
) -> str | None:
    """Tidy one generated query, or ``None`` if it is unusable.

    Takes the first non-empty line that is not a preamble ("Here is a query:"), strips list
    markers, labels ("Query:", "Title:"), quotes and trailing punctuation (a '?' stays). Rejects
    a query with too few or too many words, a repetition loop, a copy of a few-shot example
    (``shot_queries``, lower-cased; the built-in examples when ``None``), or one that repeats
    :data:`COPY_MIN_WORDS` or more consecutive words of the passage verbatim.
    """
    if shot_queries is None:
        from refinery.tasks.synthesize.generators.prompts import BUILTIN_SHOT_QUERIES

        shot_queries = BUILTIN_SHOT_QUERIES
    line = ""
    for raw in text.strip().splitlines():
        raw = raw.strip()
        if raw and not raw.endswith(":"):
            line = raw
            break
    line = _LIST_MARKER.sub("", line)
    line = _LABEL_PREFIX.sub("", line.strip(_EDGE_CHARS))
    line = " ".join(line.strip(_EDGE_CHARS).split()).rstrip(_TRAILING_PUNCT).strip(_EDGE_CHARS)
    words = WORD.findall(line.lower())
    if not min_words <= len(words) <= max_words:
        return None
    if len(words) >= 4 and len(set(words)) / len(words) < MIN_DISTINCT_WORD_RATIO:
        return None
    if line.lower() in shot_queries:
        return None
    if len(words) >= COPY_MIN_WORDS and f" {' '.join(words)} " in f" {' '.join(WORD.findall(passage.lower()))} ":
        return None
    return line


_COMPLETE_SENTENCE = re.compile(r"(.+?(?:(?<!\b[A-Z])[.!?](?=\s|$)|(?=\n)))", re.DOTALL)


def first_complete_sentence(text: str) -> str | None:
    """``text`` up to its first line break or sentence end, or ``None`` if it has neither."""
    match = _COMPLETE_SENTENCE.match(text.lstrip())
    return match.group(1).strip() if match else None


def truncate_passage(passage: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``passage``, cut back to a word boundary."""
    text = " ".join(passage.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def clean_samples(
    samples: list[tuple[str, bool]],
    passage: str,
    *,
    min_words: int = DEFAULT_MIN_QUERY_WORDS,
    max_words: int = DEFAULT_MAX_QUERY_WORDS,
    shot_queries: Collection[str] | None = None,
) -> list[str]:
    """The usable, distinct queries among one passage's samples, in sample order.

    A sample is ``(text, finished)``; one that did not end by itself (token limit) is kept only up
    to its first complete sentence or line, then every sample goes through :func:`clean_query`.
    """
    queries: list[str] = []
    seen: set[str] = set()
    for text, finished in samples:
        if not finished:
            text = first_complete_sentence(text)
            if text is None:
                continue
        query = clean_query(text, passage, min_words=min_words, max_words=max_words, shot_queries=shot_queries)
        if query is None or query.lower() in seen:
            continue
        seen.add(query.lower())
        queries.append(query)
    return queries
