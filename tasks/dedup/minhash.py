"""MinHash signatures of whole batches of texts: tokenize, shingle and hash with numpy, no per-doc loop.

How a batch is hashed (all steps are array passes over the batch):

1. Each text is casefolded (char shingles: whitespace runs also collapse to one space, ends are
   stripped) into one UTF-8 buffer for the batch (tasks.dedup.normalize); word mode joins texts
   with a newline byte, which is never part of a token, so no token spans two documents.
2. Units are found from a byte mask: for word shingles a token is a maximal run of ASCII letters and
   digits or non-ASCII bytes (so "naïve" and "don’t" stay whole words); for char shingles a unit is
   one code point.
3. Each unit is hashed from 8-byte little-endian words gathered at its start (longer units fold in
   one more word per 8 bytes), then mixed with the murmur3 finalizer.
4. A shingle hash is a seeded linear combination of n consecutive unit hashes, finalized again.
   A document with fewer than n units has one shingle, all its units; one with none has no shingle.
5. One-permutation hashing (Li, Owen & Zhang 2012): a shingle's top hash bits choose one of
   num_perm bins, its low 32 bits are the value, and each (document, bin) keeps its minimum. Empty
   bins are filled by optimal densification (Shrivastava 2017): bin j borrows from the first non-empty
   bin in a seeded random order of the bins that depends only on j, never on the document, so for two
   documents P[sig_a[j] == sig_b[j]] equals the Jaccard similarity of their shingle sets, as for
   classic MinHash. The cost is bounded per empty bin, so one-word documents stay cheap.

A signature row is a pure function of its text and the config: batch size and batch company never
change it. A document without shingles gets the all-EMPTY_SIGNATURE_VALUE row, which LSH ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from refinery.tasks.dedup.config import DedupConfig
from refinery.tasks.dedup.normalize import PADDING, collapse_whitespace, normalize_for_exact, utf8_casefolded

EMPTY_SIGNATURE_VALUE = np.uint32(0xFFFFFFFF)
SIGNATURE_DTYPE = np.uint32
# Empty bins densified per vectorized step: bounds the (chunk, num_perm) rank matrix to ~2 MB at 128.
_DENSIFY_CHUNK = 8192
_DENSIFY_QUICK_PROBES = 3
_SEPARATOR = b"\n"

_U64 = np.uint64
_FMIX_C1 = _U64(0xFF51AFD7ED558CCD)
_FMIX_C2 = _U64(0xC4CEB9FE1A85EC53)
_S33 = _U64(33)
_S32 = _U64(32)
_LOW32 = _U64(0xFFFFFFFF)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finalizer, in place (uint64 arithmetic wraps mod 2**64 as intended)."""
    h ^= h >> _S33
    h *= _FMIX_C1
    h ^= h >> _S33
    h *= _FMIX_C2
    h ^= h >> _S33
    return h


class _Constants:
    """Seed-derived hash constants; PCG64 streams are stable across numpy versions and platforms."""

    def __init__(self, seed: int, ngram: int, num_perm: int) -> None:
        rng = np.random.default_rng([seed, 0x5EED_D0C])

        def draw(k: int) -> np.ndarray:
            return rng.integers(0, 2**64, size=k, dtype=np.uint64, endpoint=False)

        self.unit_seed = draw(1)[0]
        self.chunk_mult = draw(1)[0] | _U64(1)
        self.length_mult = draw(1)[0] | _U64(1)
        self.shingle_mult = draw(ngram) | _U64(1)
        self.short_mult = draw(1)[0] | _U64(1)
        self.shingle_seed = draw(1)[0]
        # Row j ranks every bin in empty bin j's probe order; a seeded permutation per row.
        self.probe_ranks = np.argsort(rng.random((num_perm, num_perm)), axis=1).astype(np.int16)
        self.probe_order = np.argsort(self.probe_ranks, axis=1).astype(np.int16)


@lru_cache(maxsize=8)
def _constants(seed: int, ngram: int, num_perm: int) -> _Constants:
    return _Constants(seed, ngram, num_perm)


def normalize_for_shingles(text: str, shingle: str) -> str:
    """The text the shingles are taken from: casefolded; for char shingles also normalize_for_exact()."""
    return normalize_for_exact(text) if shingle == "char" else text.casefold()


def _encode_batch(texts: Sequence[str], shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalized UTF-8 of the batch (padded) and each text's first byte."""
    if shingle == "word":
        # The newline between texts is no word byte, so no token spans two texts.
        buf, bounds = utf8_casefolded(texts, separator=_SEPARATOR)
    else:
        buf, bounds = collapse_whitespace(*utf8_casefolded(texts))
    return buf, bounds[:-1]


def _word_units(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each token: runs of [0-9a-z] or bytes >= 0x80 (text is casefolded)."""
    word = buf >= 0x80
    word |= (buf - np.uint8(ord("a"))) < 26
    word |= (buf - np.uint8(ord("0"))) < 10
    edges = np.diff(word.view(np.int8), prepend=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # the padding guarantees every run ends inside buf
    return starts, ends - starts


def _char_units(buf: np.ndarray, payload: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each code point of buf[:payload]."""
    starts = np.flatnonzero((buf[:payload] & np.uint8(0xC0)) != np.uint8(0x80))
    lengths = np.diff(starts, append=payload)
    return starts, lengths


def _hash_units(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, const: _Constants) -> np.ndarray:
    """64-bit hash of each byte span buf[start:start+length], from gathered little-endian 8-byte words."""
    words = as_strided(buf, shape=(buf.size - 7, 8), strides=(1, 1)).view("<u8")[:, 0]
    # Keep only the unit's own bytes (the low ones, little-endian) of the first word.
    drop = (_U64(8) - np.minimum(lengths, 8).astype(np.uint64)) * _U64(8)
    first = words[starts] << drop
    first >>= drop
    h = first ^ const.unit_seed
    long_idx = np.flatnonzero(lengths > 8)
    offset = 8
    while long_idx.size:
        rem = lengths[long_idx] - offset
        chunk = words[starts[long_idx] + offset]
        drop = (_U64(8) - np.minimum(rem, 8).astype(np.uint64)) * _U64(8)
        chunk <<= drop
        chunk >>= drop
        hl = _fmix64(h[long_idx])
        hl *= const.chunk_mult
        hl += chunk
        h[long_idx] = hl
        long_idx = long_idx[rem > 8]
        offset += 8
    h += lengths.astype(np.uint64) * const.length_mult
    return _fmix64(h)


def _shingle_hashes(
    unit_hashes: np.ndarray, first_unit: np.ndarray, unit_counts: np.ndarray, ngram: int, const: _Constants
) -> tuple[np.ndarray, np.ndarray]:
    """(doc index, 64-bit hash) of every shingle of the batch, grouped by doc in ascending order."""
    n_docs = unit_counts.size
    n_full = unit_hashes.size - ngram + 1
    if n_full > 0:
        acc = unit_hashes[:n_full] * const.shingle_mult[0]
        for j in range(1, ngram):
            acc += unit_hashes[j : j + n_full] * const.shingle_mult[j]
        # Units of a doc are contiguous, so a window is a shingle iff its first and last unit share a doc.
        doc_of_unit = np.repeat(np.arange(n_docs, dtype=np.int32), unit_counts)
        keep = doc_of_unit[:n_full] == doc_of_unit[ngram - 1 :]
        docs = doc_of_unit[:n_full][keep]
        hashes = acc[keep]
    else:
        docs = np.empty(0, dtype=np.int32)
        hashes = np.empty(0, dtype=np.uint64)

    short_docs = np.flatnonzero((unit_counts > 0) & (unit_counts < ngram))
    if short_docs.size:
        counts = unit_counts[short_docs]
        short_hash = counts.astype(np.uint64) * const.short_mult
        for j in range(ngram - 1):
            has = counts > j
            short_hash[has] += unit_hashes[first_unit[short_docs[has]] + j] * const.shingle_mult[j]
        docs = np.concatenate([docs, short_docs.astype(np.int32)])
        hashes = np.concatenate([hashes, short_hash])
        order = np.argsort(docs, kind="stable")
        docs, hashes = docs[order], hashes[order]
    hashes ^= const.shingle_seed
    return docs, _fmix64(hashes)


def _one_permutation_minhash(docs: np.ndarray, hashes: np.ndarray, n_docs: int, num_perm: int) -> np.ndarray:
    """(n_docs, num_perm) minimum low-32-bit value per (doc, bin); EMPTY_SIGNATURE_VALUE where no shingle fell."""
    # Multiply-shift maps the top 32 bits uniformly onto [0, num_perm) for any num_perm.
    bins = ((hashes >> _S32) * _U64(num_perm)) >> _S32
    values = np.minimum(hashes & _LOW32, _U64(EMPTY_SIGNATURE_VALUE) - _U64(1)).astype(SIGNATURE_DTYPE)
    keys = docs.astype(np.int64) * num_perm + bins.astype(np.int64)
    sig = np.full(n_docs * num_perm, EMPTY_SIGNATURE_VALUE, dtype=SIGNATURE_DTYPE)
    np.minimum.at(sig, keys, values)
    return sig.reshape(n_docs, num_perm)


def _densify(sig: np.ndarray, const: _Constants) -> None:
    """Optimal densification in place: empty bin j copies the filled bin ranked first in bin j's
    seeded random order of all bins (the order a probe sequence h(j, 1), h(j, 2), ... visits them)."""
    filled = sig != EMPTY_SIGNATURE_VALUE
    rows, cols = np.nonzero(~filled & filled.any(axis=1)[:, None])
    num_perm = sig.shape[1]
    # Most documents fill most bins, so the first few bins in order settle nearly every empty bin.
    for rank in range(min(_DENSIFY_QUICK_PROBES, num_perm)):
        source = const.probe_order[cols, rank]
        hit = filled[rows, source]
        sig[rows[hit], cols[hit]] = sig[rows[hit], source[hit]]
        rows, cols = rows[~hit], cols[~hit]
    for lo in range(0, rows.size, _DENSIFY_CHUNK):
        r, c = rows[lo : lo + _DENSIFY_CHUNK], cols[lo : lo + _DENSIFY_CHUNK]
        ranks = np.where(filled[r], const.probe_ranks[c], num_perm)
        sig[r, c] = sig[r, ranks.argmin(axis=1)]


def _signature_batch(texts: Sequence[str], cfg: DedupConfig) -> np.ndarray:
    ngram, num_perm = cfg.shingle_size, cfg.num_perm
    const = _constants(cfg.seed, ngram, num_perm)
    buf, doc_starts = _encode_batch(texts, cfg.shingle)
    if cfg.shingle == "word":
        starts, lengths = _word_units(buf)
    else:
        starts, lengths = _char_units(buf, buf.size - PADDING)
    first_unit = np.searchsorted(starts, doc_starts)
    unit_counts = np.diff(first_unit, append=starts.size)
    unit_hashes = _hash_units(buf, starts, lengths, const)
    docs, hashes = _shingle_hashes(unit_hashes, first_unit, unit_counts, ngram, const)
    sig = _one_permutation_minhash(docs, hashes, len(texts), num_perm)
    _densify(sig, const)
    return sig


def signatures(texts: Sequence[str], cfg: DedupConfig) -> np.ndarray:
    """MinHash signatures, shape (len(texts), cfg.num_perm), dtype uint32.

    Row i depends only on texts[i] and cfg (never on batching, sharding or the other texts), so
    workers can sign shards independently. The fraction of equal positions in two rows estimates the
    Jaccard similarity of the two texts' shingle sets. Texts without any unit (empty, or only
    punctuation/whitespace in word mode) get an all-EMPTY_SIGNATURE_VALUE row.
    """
    out = np.empty((len(texts), cfg.num_perm), dtype=SIGNATURE_DTYPE)
    for lo, hi in _batches(texts, cfg.batch_chars):
        out[lo:hi] = _signature_batch(texts[lo:hi], cfg)
    return out


def _batches(texts: Sequence[str], batch_chars: int) -> list[tuple[int, int]]:
    """[lo, hi) row ranges holding about batch_chars characters each, at least one row each."""
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    bounds = [0]
    while bounds[-1] < len(texts):
        lo = bounds[-1]
        base = int(ends[lo - 1]) if lo else 0
        hi = int(np.searchsorted(ends, base + batch_chars, side="right"))
        bounds.append(max(hi, lo + 1))
    return list(zip(bounds[:-1], bounds[1:]))


def shingle_sets(texts: Sequence[str], cfg: DedupConfig) -> list[set[tuple[str, ...]]]:
    """Reference shingle sets in plain Python (slow): what the signatures estimate Jaccard on.

    For ground truth and tests; it follows the unit and shingle rules of signatures() exactly.
    """
    import re

    token = re.compile(r"[0-9a-z\u0080-\U0010ffff]+")
    n = cfg.shingle_size
    out: list[set[tuple[str, ...]]] = []
    for text in texts:
        norm = normalize_for_shingles(text, cfg.shingle)
        units = token.findall(norm) if cfg.shingle == "word" else list(norm)
        if not units:
            out.append(set())
        elif len(units) < n:
            out.append({tuple(units)})
        else:
            out.append({tuple(units[i : i + n]) for i in range(len(units) - n + 1)})
    return out


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """Fraction of equal signature positions (row-wise for 2-D inputs); 0 if either is an empty-doc row."""
    equal = (sig_a == sig_b).mean(axis=-1)
    empty = (sig_a == EMPTY_SIGNATURE_VALUE).all(axis=-1) | (sig_b == EMPTY_SIGNATURE_VALUE).all(axis=-1)
    return np.where(empty, 0.0, equal)
