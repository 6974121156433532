"""FineWeb's custom heuristics (Penedo et al. 2024), defined as datatrove's FineWebQualityFilter."""

from __future__ import annotations

import math
import operator

import numpy as np

from refinery.tasks.quality.config import FineWebConfig
from refinery.tasks.quality.text_stats import ParsedDocs, find_duplicates
from refinery.tasks.quality.tokenizer import TERMINAL_PUNCTUATION

__all__ = ["FINEWEB_ATTRIBUTES", "fineweb_attributes"]

FINEWEB_ATTRIBUTES = (
    "fineweb.non_empty_lines",  # lines (split on "\n") with a non-whitespace character
    "fineweb.line_punct_frac",  # of those, ending in terminal punctuation (no stripping, as datatrove)
    "fineweb.short_line_frac",  # of those, at most short_line_length characters
    "fineweb.char_dup_frac",  # characters in repeated lines / characters other than "\n"
    "fineweb.new_line_ratio",  # "\n" per word
)

_NAN_ROW = (math.nan,) * (len(FINEWEB_ATTRIBUTES) - 1)
_LAST = operator.itemgetter(-1)


def fineweb_attributes(docs: ParsedDocs, cfg: FineWebConfig) -> np.ndarray:
    """One row per document, one column per :data:`FINEWEB_ATTRIBUTES` name."""
    out = np.empty((len(docs), len(FINEWEB_ATTRIBUTES)))
    short_length = cfg.short_line_length
    for d, (text, n_words) in enumerate(zip(docs.texts, docs.tokens_per_doc.tolist())):
        lines = list(filter(str.strip, text.split("\n")))
        if not lines:
            out[d] = (0.0, *_NAN_ROW)
            continue
        n = len(lines)
        punct = sum(map(TERMINAL_PUNCTUATION.__contains__, map(_LAST, lines)))
        short = sum(map(short_length.__ge__, map(len, lines)))
        dup_chars = find_duplicates(lines)[1]
        n_newlines = text.count("\n")
        out[d] = (
            n,
            punct / n,
            short / n,
            dup_chars / (len(text) - n_newlines),
            n_newlines / n_words if n_words else math.nan,
        )
    return out
