"""Text handling shared by the generators: sentence splitting, passage truncation, query tidying.

Tidying only takes decoration off a sample; judging it (too short or long, a loop, a copy, a
repeat, unfinished) is the filters' work (:mod:`tasks.synthesize.filters`), so every sample
becomes a candidate and a rejected one is in ``pairs`` with its reason.
"""

from __future__ import annotations

import re

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


def clean_query(text: str) -> str | None:
    """One generated query, tidied; ``None`` if nothing is left.

    Takes the first non-empty line that is not a preamble ("Here is a query:"), strips list
    markers, labels ("Query:", "Title:"), quotes and trailing punctuation (a '?' stays). Nothing
    is rejected here: the filters judge the result.
    """
    line = ""
    for raw in text.strip().splitlines():
        raw = raw.strip()
        if raw and not raw.endswith(":"):
            line = raw
            break
    line = _LIST_MARKER.sub("", line)
    line = _LABEL_PREFIX.sub("", line.strip(_EDGE_CHARS))
    line = " ".join(line.strip(_EDGE_CHARS).split()).rstrip(_TRAILING_PUNCT).strip(_EDGE_CHARS)
    return line or None


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


def clean_samples(samples: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Every one of a passage's samples as ``(query, unfinished)``, in sample order.

    A sample is ``(text, finished)``. One that did not end by itself (token limit) is cut at its
    first complete sentence or line; one without any is tidied whole and ``unfinished``
    (``filter_unfinished``). A sample with nothing left after tidying is ``""``
    (``filter_too_short``), and repeats stay (``filter_near_duplicate``).
    """
    out: list[tuple[str, bool]] = []
    for text, finished in samples:
        sentence = text if finished else first_complete_sentence(text)
        out.append((clean_query(text if sentence is None else sentence) or "", sentence is None))
    return out
