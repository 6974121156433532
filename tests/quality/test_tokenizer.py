"""The spaCy-compatible tokenizer: known spaCy splits, exactness of the fast affix functions against
spaCy's own (vendored) patterns, the sentencizer port, and -- when spaCy is installed -- parity with
spaCy on real BBC text."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from refinery.tasks.quality import _spacy_en as sp
from refinery.tasks.quality.text_stats import ParsedDocs
from refinery.tasks.quality.tokenizer import WordTokenizer, _prefix_len, _suffix_len, tokenize, tokenize_chunk

# What spaCy 3.8's blank English tokenizer produces (datatrove's word tokenizer).
SPACY_SPLITS = {
    "don't": ("do", "n't"),
    "$1.13bn": ("$", "1.13bn"),
    "(£600m)": ("(", "£", "600", "m", ")"),
    "year-earlier.": ("year", "-", "earlier", "."),
    "U.S.": ("U.S.",),
    "US.": ("US", "."),
    "Mr.": ("Mr.",),
    "$5m.": ("$", "5", "m."),  # "m." is a special case re-merged after the affix split
    "AOL's": ("AOL", "'s"),
    "news.bbc.co.uk/sport": ("news.bbc.co.uk/sport",),
    "hello...world": ("hello", "...", "world"),
    "5km.": ("5", "km", "."),
    '"Quote,"': ('"', "Quote", ",", '"'),
    "cannot": ("can", "not"),
    "e.g.,": ("e.g.", ","),
    "10:30am": ("10:30am",),
    "C++": ("C++",),
    "#hashtag": ("#", "hashtag"),
}

CHARS = "abcXYZ09.,;:!?'\"()[]{}-–—/\\$£€%&*+=<>#@_~…°²’“”«»¿¡é中😀©"


def fuzz_strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(1, 8))) for _ in range(n)]


@pytest.mark.parametrize("chunk", sorted(SPACY_SPLITS))
def test_known_spacy_splits(chunk: str) -> None:
    assert tokenize_chunk(chunk) == SPACY_SPLITS[chunk]


def test_whitespace_is_dropped_like_datatrove() -> None:
    assert tokenize("The  cat\tsat.\n\nIt\u00a0ran!") == ["The", "cat", "sat", ".", "It", "ran", "!"]


def test_fast_affix_functions_equal_spacys_patterns(bbc: list[tuple[str, str]]) -> None:
    prefix, suffix = re.compile(sp.PREFIX_PATTERN).search, re.compile(sp.SUFFIX_PATTERN).search
    chunks = {c for _, text in bbc for c in text.split()} | set(fuzz_strings(5000))
    for chunk in chunks:
        m = prefix(chunk)
        assert _prefix_len(chunk) == (m.end() - m.start() if m else 0), chunk
        m = suffix(chunk)
        assert _suffix_len(chunk) == (m.end() - m.start() if m else 0), chunk


@pytest.mark.parametrize(
    ("line", "sentences"),
    [
        ("Hello world. This is it.", 2),
        ("Mr. Smith went home. He slept.", 2),
        (". Hello", 2),
        ("Wait... what?! Yes.", 2),
        ("U.S. troops left. Then came rain.", 2),
        ("no punctuation at all", 1),
        ("", 0),
    ],
)
def test_sentence_counts_follow_spacys_sentencizer(line: str, sentences: int) -> None:
    docs = ParsedDocs([line + "\nOne more line.", "Other. Document!"], WordTokenizer())
    assert docs.sentences_per_line().tolist() == [sentences, 1, 2]


def test_memo_reset_keeps_results_identical(bbc: list[tuple[str, str]]) -> None:
    small = WordTokenizer(max_cached_chunks=50)
    big = WordTokenizer()
    for _, text in bbc[:20]:
        small.maybe_reset()
        a, b = ParsedDocs([text], small), ParsedDocs([text], big)
        assert a.token_strings(0) == b.token_strings(0)
        assert np.array_equal(a.flags, b.flags) and np.array_equal(a.lengths, b.lengths)
    assert len(small.tokens) < len(big.tokens)


def test_matches_spacy_on_real_text_and_fuzz(bbc: list[tuple[str, str]]) -> None:
    import spacy  # the reference; in the locked test set, so this never skips

    nlp = spacy.blank("en")
    for _, text in bbc[:150]:
        assert tokenize(text) == [t.text for t in nlp(text) if t.text.strip()]
    for chunk in fuzz_strings(3000, seed=1):
        assert tokenize_chunk(chunk) == tuple(t.text for t in nlp.tokenizer(chunk) if t.text.strip()), chunk
