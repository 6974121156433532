"""Gopher quality and repetition attributes (Rae et al. 2021), defined as datatrove computes them.

Each function returns one float per name in the matching ``*_ATTRIBUTES`` tuple, in that order;
NaN means "not defined for this document" (e.g. mean word length of a document without words),
and no rule fails on NaN.
"""

from __future__ import annotations

import math
import re
from itertools import repeat

import numpy as np

from refinery.tasks.quality.config import STOP_WORDS, GopherQualityConfig
from refinery.tasks.quality.text_stats import ParsedDocs, find_duplicates, segment_sums
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
_BULLETS = ("•", "-")
_ELLIPSES = ("...", "…")
_DEFAULT_STOP_WORDS = list(STOP_WORDS)
_NGRAM_BASE = np.uint64(0x100000001B3)  # odd multiplier for the rolling n-gram hash
_NGRAM_SIZES = (*TOP_NGRAM_SIZES, DUP_NGRAM_SIZES[0])  # sorted together, one size tag each
_TAG_BITS = 2


def gopher_quality_attributes(docs: ParsedDocs, cfg: GopherQualityConfig) -> np.ndarray:
    """One row per document, one column per :data:`GOPHER_QUALITY_ATTRIBUTES` name."""
    texts = docs.texts
    flags, offsets = docs.flags, docs.token_offsets
    n_tokens = docs.tokens_per_doc
    words = (flags & FLAG_NON_SYMBOL) != 0
    n_words = segment_sums(words, offsets)
    word_chars = segment_sums(np.where(words, docs.lengths, 0), offsets)
    n_alpha = segment_sums((flags & FLAG_ALPHA) != 0, offsets)
    n_hash = np.fromiter((t.count("#") for t in texts), dtype=np.int64, count=len(texts))
    n_ellipsis = np.fromiter((t.count("...") + t.count("…") for t in texts), dtype=np.int64, count=len(texts))
    lines = docs.lines
    n_lines = docs.lines_per_doc
    bullet = map(str.startswith, map(str.lstrip, lines), repeat(_BULLETS))
    bullets = segment_sums(np.fromiter(bullet, dtype=bool, count=len(lines)), docs.line_offsets)
    ellipsis = map(str.endswith, map(str.rstrip, lines), repeat(_ELLIPSES))
    ellipsis_lines = segment_sums(np.fromiter(ellipsis, dtype=bool, count=len(lines)), docs.line_offsets)
    if cfg.stop_words == _DEFAULT_STOP_WORDS:
        n_stop = _stop_words_present(flags, offsets)
    else:
        stop_words = set(cfg.stop_words)
        n_stop = np.array([len(stop_words.intersection(docs.token_strings(i))) for i in range(len(docs))])
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0: NaN, "not defined for this document"
        return np.column_stack((
            n_words,
            word_chars / np.where(n_words > 0, n_words, np.nan),
            n_hash / np.where(n_tokens > 0, n_tokens, np.nan),
            n_ellipsis / np.where(n_tokens > 0, n_tokens, np.nan),
            bullets / np.where(n_lines > 0, n_lines, np.nan),
            ellipsis_lines / np.where(n_lines > 0, n_lines, np.nan),
            n_alpha / np.where(n_tokens > 0, n_tokens, np.nan),
            n_stop,
        )).astype(np.float64)


def _stop_words_present(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Distinct default stop words per document: popcount of the OR of its tokens' stop-word bits."""
    out = np.zeros(len(offsets) - 1, dtype=np.int64)
    nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
    if len(nonempty):  # reduceat over each non-empty document's start (empty ones in between add nothing)
        bits = np.bitwise_or.reduceat(flags, offsets[nonempty]) >> STOP_WORD_SHIFT
        out[nonempty] = np.bitwise_count(bits)
    return out


def gopher_repetition_attributes(docs: ParsedDocs) -> np.ndarray:
    """One row per document, one column per :data:`GOPHER_REPETITION_ATTRIBUTES` name."""
    out = np.empty((len(docs), len(GOPHER_REPETITION_ATTRIBUTES)))
    n_chars = np.fromiter(map(len, docs.texts), dtype=np.int64, count=len(docs))
    for i, text in enumerate(docs.texts):
        if not n_chars[i]:
            out[i, 1:5] = NAN
            continue
        paragraphs = _paragraphs(text.strip())
        lines = _lines(text)
        dup_paras, dup_para_chars = find_duplicates(paragraphs)
        dup_lines, dup_line_chars = find_duplicates(lines)
        out[i, 1:5] = (dup_paras / len(paragraphs), dup_para_chars / n_chars[i],
                       dup_lines / len(lines), dup_line_chars / n_chars[i])
    out[:, 0] = n_chars
    out[:, 5:] = _ngram_fractions(docs.hashes, docs.lengths, docs.token_offsets, n_chars)
    out[n_chars == 0, 5:] = NAN
    return out


def _paragraphs(text: str) -> list[str]:
    r"""``re.split(r"\n{2,}", text)`` for a stripped text: ``str.split`` when no run exceeds two."""
    return text.split("\n\n") if "\n\n\n" not in text else _PARAGRAPH_SPLIT(text)


def _lines(text: str) -> list[str]:
    r"""``re.split("\n+", text)``: a run of newlines is one separator, so only inner parts can be empty."""
    parts = text.split("\n")
    if len(parts) > 2 and "\n\n" in text:
        parts = [parts[0], *filter(None, parts[1:-1]), parts[-1]]
    return parts


def _ngram_fractions(hashes: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, n_chars: np.ndarray) -> np.ndarray:
    """Top 2/3/4-gram and duplicated 5..10-gram character fractions per document, from token hashes.

    ``hashes``/``lengths`` are the batch's tokens end to end, document i owning
    ``offsets[i]:offsets[i + 1]``. datatrove semantics: the "top" n-gram is the most frequent one,
    ties going to the one seen first (``Counter.most_common(1)``), and counts
    ``count * len(" ".join(ngram))`` characters; duplicated n-grams are found by a left-to-right scan
    that skips past each repeat and counts ``len("".join(ngram))`` characters. Top fractions are NaN
    when the text has fewer than n words.

    One sort serves the whole batch and n = 2, 3, 4, 5: a key is (document, size tag, hash bits)
    from the top bit down, so documents and sizes sort apart; at least 51 bits of hash are left
    (batches of up to 2**11 documents), which keeps collisions within a document negligible.
    """
    n_docs = len(offsets) - 1
    out = np.full((n_docs, len(TOP_NGRAM_SIZES) + len(DUP_NGRAM_SIZES)), NAN)
    out[:, len(TOP_NGRAM_SIZES) :] = 0.0
    n_tokens = len(hashes)
    present = [n for n in _NGRAM_SIZES if n <= n_tokens]
    if not present:
        return out
    # Key bits from the top: document (n_docs itself marks n-grams that cross into the next document),
    # size tag, hash. Keys of size tag t fill keys[block[t]:block[t + 1]], one per start position.
    doc_bits = n_docs.bit_length()
    tag_shift = 64 - doc_bits - _TAG_BITS
    block = np.concatenate(((0,), np.cumsum([n_tokens - n + 1 for n in present])))
    doc_key = np.repeat(np.arange(n_docs, dtype=np.uint64) << np.uint64(64 - doc_bits), np.diff(offsets))
    crossing = np.uint64(n_docs) << np.uint64(64 - doc_bits)
    keys = np.empty(block[-1], dtype=np.uint64)
    rolling = hashes
    for tag, n in enumerate(present):
        rolling = rolling[:-1] * _NGRAM_BASE + hashes[n - 1 :]  # hash of tokens i .. i+n-1
        part = keys[block[tag] : block[tag + 1]]
        np.right_shift(rolling, np.uint64(doc_bits + _TAG_BITS), out=part)
        part |= doc_key[: len(part)]
        part |= np.uint64(tag << tag_shift)
        starts = (offsets[1:, None] - np.arange(1, n)).ravel()  # the last n - 1 starts of each document
        part[starts[(starts >= np.repeat(offsets[:-1], n - 1)) & (starts < len(part))]] = crossing
        if n == DUP_NGRAM_SIZES[0]:
            five_grams = rolling
    order = np.argsort(keys)
    keys = keys[order]
    run_starts = np.flatnonzero(np.concatenate(((True,), keys[1:] != keys[:-1])))
    run_counts = np.diff(run_starts, append=len(keys))
    run_first = np.minimum.reduceat(order, run_starts)  # key index of each n-gram's first occurrence
    run_segment = (keys[run_starts] >> np.uint64(tag_shift)).astype(np.int64)  # doc * 4 + tag
    seg_starts = np.flatnonzero(np.concatenate(((True,), run_segment[1:] != run_segment[:-1])))
    segment = run_segment[seg_starts]
    seg_doc, seg_tag = segment >> _TAG_BITS, segment & ((1 << _TAG_BITS) - 1)
    runs_per_seg = np.diff(seg_starts, append=len(run_starts))
    best = np.maximum.reduceat(run_counts, seg_starts)
    first_best = np.minimum.reduceat(np.where(run_counts == np.repeat(best, runs_per_seg), run_first, len(keys)),
                                     seg_starts) - block[seg_tag]  # start position of the first top n-gram
    real = seg_doc < n_docs
    seg_doc, seg_tag, best, first_best = seg_doc[real], seg_tag[real], best[real], first_best[real]
    sizes = np.asarray(_NGRAM_SIZES)[seg_tag]
    cum_len = np.concatenate(((0,), np.cumsum(lengths, dtype=np.int64)))
    top = seg_tag < len(TOP_NGRAM_SIZES)
    chars = cum_len[first_best + sizes] - cum_len[first_best] + sizes - 1
    out[seg_doc[top], seg_tag[top]] = best[top] * chars[top] / n_chars[seg_doc[top]]
    # Duplicated 5..10-grams: only where some 5-gram repeats, from the positions of the repeats.
    repeated = np.zeros(len(real), dtype=bool)
    repeated[real] = ~top & (best > 1)
    if repeated.any():
        in_repeated = np.repeat(repeated, runs_per_seg) & (run_counts > 1)
        candidates = np.sort(order[np.repeat(in_repeated, run_counts)]) - block[len(TOP_NGRAM_SIZES)]
        out[:, len(TOP_NGRAM_SIZES) :] = _dup_ngram_fractions(
            hashes, cum_len, offsets, n_chars, candidates, five_grams[candidates]
        )
    return out


def _dup_ngram_fractions(
    hashes: np.ndarray, cum_len: np.ndarray, offsets: np.ndarray, n_chars: np.ndarray, candidates: np.ndarray,
    keys: np.ndarray,
) -> np.ndarray:
    """Duplicated n-gram fractions per document and size, from the (ascending) positions whose
    5-gram repeats within its document and those 5-grams' keys.

    Every occurrence of a repeated n-gram starts where a repeated (n-1)-gram starts, so each size
    only looks at the previous size's candidates. Positions whose n-gram occurs once never hit
    datatrove's "seen" set, so the sequential scan (plain Python: it is sequential, and candidates
    are few) can skip them.
    """
    out = np.zeros((len(n_chars), len(DUP_NGRAM_SIZES)))
    docs = np.searchsorted(offsets, candidates, side="right") - 1
    for i, n in enumerate(DUP_NGRAM_SIZES):
        if i:  # extend each candidate's (n-1)-gram key by one word, keep the keys repeated in their document
            fits = candidates + n <= offsets[docs + 1]
            candidates, docs = candidates[fits], docs[fits]
            keys = keys[fits] * _NGRAM_BASE + hashes[candidates + n - 1]
            order = np.lexsort((keys, docs))
            sorted_keys, sorted_docs = keys[order], docs[order]
            run = np.cumsum(np.concatenate(
                ((True,), (sorted_keys[1:] != sorted_keys[:-1]) | (sorted_docs[1:] != sorted_docs[:-1]))
            )) - 1
            again = np.empty(len(order), dtype=bool)
            again[order] = np.bincount(run)[run] > 1
            candidates, keys, docs = candidates[again], keys[again], docs[again]
        if not len(candidates):
            break  # no repeated n-gram means no repeated longer n-gram either
        chars = cum_len[candidates + n] - cum_len[candidates]
        repeated_chars: dict[int, int] = {}
        current = -1
        for pos, key, size, doc in zip(candidates.tolist(), keys.tolist(), chars.tolist(), docs.tolist()):
            if doc != current:
                current, seen, cursor = doc, set(), 0
            if pos < cursor:
                continue
            if key in seen:
                repeated_chars[doc] = repeated_chars.get(doc, 0) + size
                cursor = pos + n
            else:
                seen.add(key)
                cursor = pos + 1
        for doc, total in repeated_chars.items():
            out[doc, i] = total / int(n_chars[doc])
    return out
