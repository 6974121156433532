"""Statistics shared by the rule families, computed once per batch of documents.

:class:`ParsedDocs` splits a batch of texts into lines and spaCy-compatible tokens (see
:mod:`tasks.quality.tokenizer`) in one tokenizer pass, and keeps the batch's per-token property
arrays end to end with per-document offsets, so each family aggregates with a few numpy calls per
batch instead of a few per document (whose fixed cost dominated at news-article sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from refinery.tasks.quality.tokenizer import FLAG_PUNCT, FLAG_SENT_END, WordTokenizer

__all__ = ["ParsedDocs", "find_duplicates", "sentences_per_line", "segment_sums"]


class ParsedDocs:
    """Documents' lines (``str.splitlines``), token ids, and per-token flags / lengths / hashes.

    Lines and tokens of all documents are concatenated in document order: document ``i`` owns lines
    ``line_offsets[i]:line_offsets[i + 1]`` of :attr:`lines` and tokens
    ``token_offsets[i]:token_offsets[i + 1]`` of :attr:`ids` (and of flags, lengths, hashes).
    Token ids are the tokenizer's, valid until its next :meth:`~WordTokenizer.maybe_reset`.
    """

    __slots__ = (
        "texts", "tokenizer", "lines", "line_offsets", "ids", "flags", "lengths", "hashes", "token_offsets",
        "tokens_per_line", "chunks_per_line", "_sentences",
    )

    def __init__(self, texts: Sequence[str], tokenizer: WordTokenizer) -> None:
        self.texts = list(texts)
        self.tokenizer = tokenizer
        per_doc = [text.splitlines() for text in self.texts]
        self.line_offsets = _offsets(map(len, per_doc), len(per_doc))
        self.lines: list[str] = list(chain.from_iterable(per_doc))
        self.ids, self.tokens_per_line, self.chunks_per_line = tokenizer.ids_by_line(self.lines)
        self.flags = tokenizer.flags[self.ids]
        self.lengths = tokenizer.lengths[self.ids]
        self.hashes = tokenizer.hashes[self.ids]
        self.token_offsets = np.concatenate(((0,), np.cumsum(self.tokens_per_line)))[self.line_offsets]
        self._sentences: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def tokens_per_doc(self) -> np.ndarray:
        return np.diff(self.token_offsets)

    @property
    def lines_per_doc(self) -> np.ndarray:
        return np.diff(self.line_offsets)

    def doc_lines(self, i: int) -> list[str]:
        return self.lines[self.line_offsets[i] : self.line_offsets[i + 1]]

    def token_strings(self, i: int) -> list[str]:
        tokens = self.tokenizer.tokens
        return [tokens[t] for t in self.ids[self.token_offsets[i] : self.token_offsets[i + 1]].tolist()]

    def sentences_per_line(self) -> np.ndarray:
        """Sentences spaCy's sentencizer finds in each line of :attr:`lines` (0 for a line without tokens).

        The sentencizer starts a sentence at a non-punctuation token when a sentence-final token
        ('.', '!', '?', ...) occurred since the previous non-punctuation token of the same line.
        """
        if self._sentences is None:
            self._sentences = sentences_per_line(self.flags, self.tokens_per_line)
        return self._sentences


def _offsets(counts, n: int) -> np.ndarray:
    out = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(counts, dtype=np.int64, count=n), out=out[1:])
    return out


def segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of ``values[offsets[i]:offsets[i + 1]]`` for each i (0 for an empty segment), exact for ints."""
    totals = np.concatenate(((0,), np.cumsum(values, dtype=np.int64 if values.dtype.kind in "biu" else None)))
    return totals[offsets[1:]] - totals[offsets[:-1]]


def sentences_per_line(flags: np.ndarray, tokens_per_line: np.ndarray) -> np.ndarray:
    """Sentence count of each line, given the lines' concatenated token flags and token counts."""
    n_lines = len(tokens_per_line)
    out = (tokens_per_line > 0).astype(np.int64)
    if not len(flags):
        return out
    sent_end = (flags & FLAG_SENT_END) != 0
    word_idx = np.flatnonzero((flags & (FLAG_PUNCT | FLAG_SENT_END)) == 0)
    if not len(word_idx):
        return out
    line_of = np.repeat(np.arange(n_lines), tokens_per_line)
    line_start = np.cumsum(tokens_per_line) - tokens_per_line
    ends_before = np.concatenate(([0], np.cumsum(sent_end)))  # sentence-final tokens before index i
    prev_word_end = np.concatenate(([0], word_idx[:-1] + 1))
    lines_of_words = line_of[word_idx]
    lo = np.maximum(prev_word_end, line_start[lines_of_words])
    starts = ends_before[word_idx] > ends_before[lo]
    out += np.bincount(lines_of_words[starts], minlength=n_lines)
    return out


def find_duplicates(elements: Sequence[str]) -> tuple[int, int]:
    """(number of elements equal to an earlier one, their total characters) -- datatrove's definition.

    Every element but the first of each distinct value is such a repeat.
    """
    distinct = set(elements)
    return len(elements) - len(distinct), sum(map(len, elements)) - sum(map(len, distinct))
