"""Per-document statistics shared by the rule families, computed once per document.

:class:`ParsedDoc` splits a text into lines and spaCy-compatible tokens (see
:mod:`tasks.quality.tokenizer`) and keeps per-token property arrays, so each family aggregates with
numpy instead of looping over words in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from refinery.tasks.quality.tokenizer import FLAG_PUNCT, FLAG_SENT_END, WordTokenizer

__all__ = ["ParsedDoc", "find_duplicates", "sentences_per_line"]

class ParsedDoc:
    """A document's lines (``str.splitlines``), token ids, and per-token flags / lengths / hashes."""

    __slots__ = (
        "text", "tokenizer", "lines", "ids", "flags", "lengths", "hashes", "tokens_per_line", "chunks_per_line",
        "_sentences",
    )

    def __init__(self, text: str, tokenizer: WordTokenizer) -> None:
        self.text = text
        self.tokenizer = tokenizer
        self.lines = text.splitlines()
        self.ids, self.tokens_per_line, self.chunks_per_line = tokenizer.ids_by_line(self.lines)
        self.flags = tokenizer.flags[self.ids]
        self.lengths = tokenizer.lengths[self.ids]
        self.hashes = tokenizer.hashes[self.ids]
        self._sentences: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    def token_strings(self) -> list[str]:
        tokens = self.tokenizer.tokens
        return [tokens[i] for i in self.ids.tolist()]

    def sentences_per_line(self) -> np.ndarray:
        """Sentences spaCy's sentencizer finds in each line (0 for a line without tokens).

        The sentencizer starts a sentence at a non-punctuation token when a sentence-final token
        ('.', '!', '?', ...) occurred since the previous non-punctuation token of the same line.
        """
        if self._sentences is None:
            self._sentences = sentences_per_line(self.flags, self.tokens_per_line)
        return self._sentences


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
    """(number of elements equal to an earlier one, their total characters) -- datatrove's definition."""
    seen: set[str] = set()
    dup_elements = dup_chars = 0
    for element in elements:
        if element in seen:
            dup_elements += 1
            dup_chars += len(element)
        else:
            seen.add(element)
    return dup_elements, dup_chars
