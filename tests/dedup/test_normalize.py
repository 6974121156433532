"""Batch normalization equals the plain-Python definitions, text by text."""

import sys

import numpy as np
import xxhash

from refinery.tasks.dedup import exact_keys, normalize_for_exact
from refinery.tasks.dedup.normalize import UNICODE_SPACES, collapse_whitespace, utf8_casefolded

ALPHABET = "aZ \t\n\r\x0b\x0c\x1c\x1f.,ßİΣσÉé£’\u00ad\x85\xa0\u1680\u2000\u200a\u200b\u2028\u202f\u205f\u3000ﬁ"


def random_texts(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(ALPHABET))
    return ["".join(rng.choice(letters, size=rng.integers(0, 14))) for _ in range(count)]


def spans(buf: np.ndarray, bounds: np.ndarray, gap: int = 0) -> list[bytes]:
    return [bytes(buf[a : b - gap]) for a, b in zip(bounds[:-1], bounds[1:])]


def test_unicode_spaces_are_exactly_what_str_split_splits_on() -> None:
    expected = [chr(c).encode() for c in range(128, sys.maxunicode + 1) if chr(c).isspace()]
    assert sorted(UNICODE_SPACES) == sorted(expected)


def test_casefolded_buffer_matches_str_casefold() -> None:
    texts = random_texts(3000, 1) + ["ß", "ß", "İ", "x", "aİ", "İb", "", "ﬃ"]
    buf, bounds = utf8_casefolded(texts)
    assert spans(buf, bounds) == [t.casefold().encode() for t in texts]
    assert not buf[bounds[-1] :].any()  # zero padding
    buf, bounds = utf8_casefolded(texts, separator=b"\n")
    assert spans(buf, bounds, gap=1) == [t.casefold().encode() for t in texts]


def test_collapsed_buffer_matches_split_and_join() -> None:
    texts = random_texts(3000, 2) + ["", "   ", "\u3000a\u3000", " a  b "]
    buf, bounds = collapse_whitespace(*utf8_casefolded(texts))
    assert spans(buf, bounds) == [normalize_for_exact(t).encode() for t in texts]


def test_exact_keys_hash_the_normalized_text_whatever_the_batch() -> None:
    texts = random_texts(2000, 3)
    expected = np.array([xxhash.xxh3_64_intdigest(normalize_for_exact(t).encode()) for t in texts], dtype=np.uint64)
    assert np.array_equal(exact_keys(texts), expected)
    assert np.array_equal(np.concatenate([exact_keys(texts[:7]), exact_keys(texts[7:])]), expected)
