"""Gopher quality and repetition attributes (Rae et al. 2021), defined as datatrove computes them.

Each function returns one float per name in the matching ``*_ATTRIBUTES`` tuple, in that order;
NaN means "not defined for this document" (e.g. mean word length of a document without words),
and no rule fails on NaN.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from refinery.tasks.quality.config import STOP_WORDS, GopherQualityConfig
from refinery.tasks.quality.text_stats import ParsedDoc, find_duplicates
from refinery.tasks.quality.tokenizer import FLAG_ALPHA, FLAG_NON_SYMBOL, STOP_WORD_SHIFT

__all__ = [
    "GOPHER_QUALITY_ATTRIBUTES",
    "GOPHER_REPETITION_ATTRIBUTES",
    "TOP_NGRAM_SIZES",
    "DUP_NGRAM_SIZES",
    "gopher_quality_attributes",
    "gopher_repetition_attributes",
]

NAN = math.nan

GOPHER_QUALITY_ATTRIBUTES = (
    "gopher_quality.word_count",  # tokens with a character outside datatrove's PUNCTUATION
    "gopher_quality.mean_word_length",  # over those words
    "gopher_quality.hash_word_ratio",  # '#' characters per token
    "gopher_quality.ellipsis_word_ratio",  # '...' and '…' per token
    "gopher_quality.bullet_lines_frac",  # lines starting with '•' or '-'
    "gopher_quality.ellipsis_lines_frac",  # lines ending with '...' or '…'
    "gopher_quality.alpha_words_frac",  # tokens containing a letter
    "gopher_quality.stop_word_count",  # distinct stop words present
)

TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)
GOPHER_REPETITION_ATTRIBUTES = (
    "gopher_repetition.char_count",
    "gopher_repetition.dup_para_frac",
    "gopher_repetition.dup_para_char_frac",
    "gopher_repetition.dup_line_frac",
    "gopher_repetition.dup_line_char_frac",
    *(f"gopher_repetition.top_{n}gram_char_frac" for n in TOP_NGRAM_SIZES),
    *(f"gopher_repetition.dup_{n}gram_char_frac" for n in DUP_NGRAM_SIZES),
)

_PARAGRAPH_SPLIT = re.compile(r"\n{2,}").split
_LINE_SPLIT = re.compile("\n+").split
_BULLETS = ("•", "-")
_ELLIPSES = ("...", "…")
_DEFAULT_STOP_WORDS = list(STOP_WORDS)
_NGRAM_BASE_INT = 0x100000001B3  # odd multiplier for the rolling n-gram hash
_NGRAM_BASE = np.uint64(_NGRAM_BASE_INT)
_MASK64 = (1 << 64) - 1
_TWO = np.uint64(2)
_TAGS = np.arange(4, dtype=np.uint64) << np.uint64(62)
_TRUE = np.ones(1, dtype=bool)


def gopher_quality_attributes(doc: ParsedDoc, cfg: GopherQualityConfig) -> tuple[float, ...]:
    text = doc.text
    n_tokens = doc.n_tokens
    flags = doc.flags
    words = (flags & FLAG_NON_SYMBOL) != 0
    n_words = int(np.count_nonzero(words))
    mean_len = float(doc.lengths[words].sum()) / n_words if n_words else NAN
    if n_tokens:
        hash_ratio = text.count("#") / n_tokens
        ellipsis_ratio = (text.count("...") + text.count("…")) / n_tokens
        alpha_frac = int(np.count_nonzero(flags & FLAG_ALPHA)) / n_tokens
    else:
        hash_ratio = ellipsis_ratio = alpha_frac = NAN
    lines = doc.lines
    if lines:
        bullet_frac = sum(1 for s in lines if s.lstrip().startswith(_BULLETS)) / len(lines)
        ellipsis_lines_frac = sum(1 for s in lines if s.rstrip().endswith(_ELLIPSES)) / len(lines)
    else:
        bullet_frac = ellipsis_lines_frac = NAN
    if cfg.stop_words == _DEFAULT_STOP_WORDS:
        stop_bits = int(np.bitwise_or.reduce(flags)) >> STOP_WORD_SHIFT if n_tokens else 0
        n_stop = stop_bits.bit_count()
    else:
        present = set(doc.token_strings())
        n_stop = sum(1 for w in set(cfg.stop_words) if w in present)
    return (float(n_words), mean_len, hash_ratio, ellipsis_ratio, bullet_frac, ellipsis_lines_frac, alpha_frac, float(n_stop))


def gopher_repetition_attributes(doc: ParsedDoc) -> tuple[float, ...]:
    text = doc.text
    n_chars = len(text)
    if not n_chars:
        return (0.0,) + (NAN,) * (len(GOPHER_REPETITION_ATTRIBUTES) - 1)
    paragraphs = _PARAGRAPH_SPLIT(text.strip())
    dup_paras, dup_para_chars = find_duplicates(paragraphs)
    lines = _LINE_SPLIT(text)
    dup_lines, dup_line_chars = find_duplicates(lines)
    return (
        float(n_chars),
        dup_paras / len(paragraphs),
        dup_para_chars / n_chars,
        dup_lines / len(lines),
        dup_line_chars / n_chars,
        *_ngram_fractions(doc.hashes, doc.lengths, n_chars),
    )


def _first_position(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in ``keys`` holding one of the (few) ``wanted`` values."""
    if len(wanted) > 8:
        return np.flatnonzero(np.isin(keys, wanted))
    mask = keys == wanted[0]
    for w in wanted[1:]:
        mask |= keys == w
    return np.flatnonzero(mask)


def _ngram_fractions(hashes: np.ndarray, lengths: np.ndarray, n_chars: int) -> list[float]:
    """Top 2/3/4-gram and duplicated 5..10-gram character fractions, from per-token hashes.

    datatrove semantics: the "top" n-gram is the most frequent one, ties going to the one seen
    first (``Counter.most_common(1)``), and counts ``count * len(" ".join(ngram))`` characters;
    duplicated n-grams are found by a left-to-right scan that skips past each repeat and counts
    ``len("".join(ngram))`` characters. Top fractions are NaN when the text has fewer than n words.
    """
    n_words = len(hashes)
    top = [NAN] * len(TOP_NGRAM_SIZES)
    dup = [0.0] * len(DUP_NGRAM_SIZES)
    if n_words < TOP_NGRAM_SIZES[0]:
        return top + dup
    # One sort serves n = 2, 3, 4 and 5: each size's keys carry the size in their top two bits, so
    # sizes sort apart; 62 bits of hash leave collisions negligible.
    sizes = [n for n in (*TOP_NGRAM_SIZES, DUP_NGRAM_SIZES[0]) if n <= n_words]
    tagged = []
    keys = hashes
    for tag, n in enumerate(sizes):
        keys = keys[:-1] * _NGRAM_BASE + hashes[n - 1 :]
        tagged.append((keys >> _TWO) | _TAGS[tag])
    ordered = np.concatenate(tagged)
    ordered.sort()
    run_starts = np.flatnonzero(np.concatenate((_TRUE, ordered[1:] != ordered[:-1])))
    run_keys = ordered[run_starts]
    run_counts = np.diff(run_starts, append=len(ordered))
    bounds = [0, *np.searchsorted(run_keys, _TAGS[1 : len(sizes)]).tolist(), len(run_keys)]
    cum_len = None
    for i, n in enumerate(sizes):
        counts = run_counts[bounds[i] : bounds[i + 1]]
        best = int(counts.max())
        if n in TOP_NGRAM_SIZES:
            pos = 0  # with all n-grams distinct, the first one wins the tie
            if best > 1:
                pos = int(_first_position(tagged[i], run_keys[bounds[i] : bounds[i + 1]][counts == best])[0])
            chars = int(lengths[pos : pos + n].sum()) + n - 1
            top[TOP_NGRAM_SIZES.index(n)] = best * chars / n_chars
        elif best > 1:  # some 5-gram repeats
            candidates = _first_position(tagged[i], run_keys[bounds[i] : bounds[i + 1]][counts > 1])
            cum_len = np.concatenate(((0,), np.cumsum(lengths, dtype=np.int64))).tolist()
            dup = _dup_ngram_fractions(
                hashes.tolist(), cum_len, n_chars, candidates.tolist(), tagged[i][candidates].tolist()
            )
    return top + dup


def _dup_ngram_fractions(
    hashes: list[int], cum_len: list[int], n_chars: int, candidates: list[int], keys: list[int]
) -> list[float]:
    """Duplicated n-gram fractions for every size, from the positions whose 5-gram repeats.

    Every occurrence of a repeated n-gram starts where a repeated (n-1)-gram starts, so each size
    only looks at the previous size's candidates (few, hence plain Python). Positions whose n-gram
    occurs once never hit datatrove's "seen" set, so the sequential scan can skip them.
    """
    out = [0.0] * len(DUP_NGRAM_SIZES)
    n_words = len(hashes)
    for i, n in enumerate(DUP_NGRAM_SIZES):
        if i:  # extend each candidate's (n-1)-gram key by one word
            pairs = [
                (pos, (key * _NGRAM_BASE_INT + hashes[pos + n - 1]) & _MASK64)
                for pos, key in zip(candidates, keys)
                if pos + n <= n_words
            ]
            counts = Counter(key for _, key in pairs)
            candidates = [pos for pos, key in pairs if counts[key] > 1]
            keys = [key for _, key in pairs if counts[key] > 1]
        if not candidates:
            break  # no repeated n-gram means no repeated longer n-gram either
        seen: set[int] = set()
        cursor = repeated_chars = 0
        for pos, key in zip(candidates, keys):
            if pos < cursor:
                continue
            if key in seen:
                repeated_chars += cum_len[pos + n] - cum_len[pos]
                cursor = pos + n
            else:
                seen.add(key)
                cursor = pos + 1
        out[i] = repeated_chars / n_chars
    return out
