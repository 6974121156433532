"""FineWeb's custom heuristics (Penedo et al. 2024), defined as datatrove's FineWebQualityFilter."""

from __future__ import annotations

import math

from refinery.tasks.quality.config import FineWebConfig
from refinery.tasks.quality.text_stats import ParsedDoc, find_duplicates
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


def fineweb_attributes(doc: ParsedDoc, cfg: FineWebConfig) -> tuple[float, ...]:
    text = doc.text
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return (0.0, *_NAN_ROW)
    n = len(lines)
    punct = sum(1 for line in lines if line[-1] in TERMINAL_PUNCTUATION)
    short = sum(1 for line in lines if len(line) <= cfg.short_line_length)
    dup_chars = find_duplicates(lines)[1]
    n_newlines = text.count("\n")
    n_words = doc.n_tokens
    return (
        float(n),
        punct / n,
        short / n,
        dup_chars / (len(text) - n_newlines),
        n_newlines / n_words if n_words else math.nan,
    )
