"""Properties of dedup's normalization and shingling, tested with hypothesis over arbitrary texts:

- the vectorized batch normalization equals its plain-Python definition, text by text, whatever
  the batch;
- a signature is a function of the text's shingle set: texts that differ only in case and in what
  separates their words (word shingles) or in whitespace (char shingles) have the same shingle set
  and the same signature, so an exact duplicate is a near duplicate too (of word shingles only when
  its spaces are ASCII: a non-ASCII character, U+3000 or U+00A0 included, is part of a word);
- a signature row depends only on its own text, never on its batch; the estimated Jaccard of a
  text with itself is 1, is symmetric and lies in [0, 1]; a text without shingles has the empty
  signature, similar to nothing;
- deduplicate keeps exactly one document of each cluster, never two with the same normalized text,
  and each near drop's signature agrees with its survivor's in at least the threshold's share of positions.

Examples are drawn from a fixed seed (``derandomize``) and bounded in number; no deadline."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refinery.tasks.dedup import (EMPTY_SIGNATURE_VALUE, DedupConfig, deduplicate, estimated_jaccard, exact_keys,
                                  normalize_for_exact, shingle_sets, signatures)
from refinery.tasks.dedup.normalize import collapse_whitespace, utf8_casefolded

PROPERTIES = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORD = DedupConfig()
CHAR = DedupConfig(shingle="char")
SHORT_WORD = DedupConfig(ngram=2, num_perm=32)  # documents of a few words get several shingles

# Characters dedup treats specially (ASCII and Unicode whitespace, case pairs whose folding changes
# length, punctuation, a soft hyphen, a zero-width space that is not whitespace), mixed into any text.
SPECIAL = list("aZ \t\n\r\x0b\x0c\x1c\x1f.,-'ßİΣσÉé£’\u00ad\x85\xa0\u1680\u2000\u200b\u2028\u3000ﬁ")
# Any character UTF-8 can hold: dedup reads documents ingest made storable, never a lone surrogate
# (st.characters() alone may draw one, and did once in a suite run: "surrogates not allowed").
texts = st.text(st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8")), max_size=40)
batches = st.lists(texts, max_size=8)
# Words: runs of word characters (ASCII letters and digits, any non-ASCII letter), in either case.
words = st.text(st.sampled_from(list("abcxyzABCXYZ019éßΣσ中")), min_size=1, max_size=6)
# What may stand between words: in word mode, any ASCII character that is no letter or digit (a
# non-ASCII character, even a space, is part of a word); whitespace for exact keys and char mode.
word_gaps = st.text(st.sampled_from(list(" \t\n\r.,;:!?-()\"'/\x1c\x7f")), min_size=1, max_size=3)
space_gaps = st.text(st.sampled_from(list(" \t\n\r\x0b\x1c\x85\xa0\u2028\u3000")), min_size=1, max_size=3)


def spaced(draw, tokens: list[str], gaps) -> str:
    """``tokens`` with a drawn gap between each two (and maybe at the ends), each token in a drawn case."""
    ends = [draw(st.sampled_from(["", draw(gaps)])) for _ in range(2)]
    cased = [t.upper() if draw(st.booleans()) else t.lower() for t in tokens]
    return ends[0] + "".join(t + (draw(gaps) if k < len(cased) - 1 else "") for k, t in enumerate(cased)) + ends[1]


@st.composite
def respelled(draw, gaps) -> tuple[str, str]:
    """Two spellings of the same words: other case, other gaps between them."""
    tokens = draw(st.lists(words, min_size=1, max_size=12))
    return spaced(draw, tokens, gaps), spaced(draw, tokens, gaps)


@PROPERTIES
@given(batch=batches)
def test_batch_normalization_equals_the_plain_definition_text_by_text(batch):
    buf, bounds = utf8_casefolded(batch)
    assert [bytes(buf[a:b]) for a, b in zip(bounds[:-1], bounds[1:])] == [t.casefold().encode() for t in batch]
    buf, bounds = collapse_whitespace(buf, bounds)
    assert [bytes(buf[a:b]).decode() for a, b in zip(bounds[:-1], bounds[1:])] == [normalize_for_exact(t) for t in batch]
    keys = exact_keys(batch)
    assert np.array_equal(keys, np.concatenate([exact_keys([t]) for t in batch] or [np.empty(0, np.uint64)]))


@PROPERTIES
@given(pair=respelled(word_gaps))
def test_word_shingles_and_signatures_ignore_case_and_what_separates_words(pair):
    a, b = pair
    for cfg in (WORD, SHORT_WORD):
        sa, sb = shingle_sets([a, b], cfg)
        assert sa == sb and sa
        assert np.array_equal(*signatures([a, b], cfg))


@PROPERTIES
@given(pair=respelled(space_gaps))
def test_an_exact_duplicate_is_a_near_duplicate_of_char_shingles(pair):
    a, b = pair
    assert normalize_for_exact(a) == normalize_for_exact(b)
    assert exact_keys([a])[0] == exact_keys([b])[0]
    sa, sb = shingle_sets([a, b], CHAR)
    assert sa == sb and sa
    sig = signatures([a, b], CHAR)
    assert np.array_equal(sig[0], sig[1]) and estimated_jaccard(sig[0], sig[1]) == 1.0
    if all(c.isascii() for c in a + b if c.isspace()):  # and of word shingles, with ASCII spaces only
        assert np.array_equal(*signatures([a, b], WORD))


@PROPERTIES
@given(batch=st.lists(texts, min_size=1, max_size=8), cfg=st.sampled_from([WORD, CHAR, SHORT_WORD]))
def test_signature_rows_depend_only_on_their_text_and_estimates_are_sane(batch, cfg):
    sigs = signatures(batch, cfg)
    alone = np.vstack([signatures([t], cfg) for t in batch])
    tiny = signatures(batch, cfg.model_copy(update={"batch_chars": 1}))
    assert np.array_equal(sigs, alone) and np.array_equal(sigs, tiny)
    for text, sig, shingles in zip(batch, sigs, shingle_sets(batch, cfg)):
        empty = bool((sig == EMPTY_SIGNATURE_VALUE).all())
        assert empty == (not shingles), text  # no shingle, and only then, the empty signature
        assert estimated_jaccard(sig, sig) == (0.0 if empty else 1.0)
    pairs = estimated_jaccard(sigs[:, None, :], sigs[None, :, :])
    assert np.array_equal(pairs, pairs.T) and ((0.0 <= pairs) & (pairs <= 1.0)).all()


@PROPERTIES
@given(batch=st.lists(st.one_of(texts, st.sampled_from(["Some text.", "some   TEXT.", "other words here"])),
                      min_size=1, max_size=12),
       survivor=st.sampled_from(["longest", "first"]))
def test_deduplicate_keeps_one_document_per_cluster_and_no_two_exact_duplicates(batch, survivor):
    cfg = WORD.model_copy(update={"survivor": survivor})
    lengths = np.array([len(t) for t in batch])
    sigs = signatures(batch, cfg)
    result = deduplicate(exact_keys(batch), sigs, lengths, cfg)
    kept = np.flatnonzero(result.keep)
    assert result.keep[result.survivors].all() and (result.survivors[kept] == kept).all()
    near = np.flatnonzero(result.reasons == "dedup_near")  # star clustering: each near drop is a verified pair
    assert ((sigs[near] == sigs[result.survivors[near]]).mean(axis=1) >= cfg.threshold).all()
    assert sorted(result.labels[kept]) == sorted(set(result.labels.tolist()))  # one survivor per cluster
    assert len({normalize_for_exact(batch[i]) for i in kept}) == len(kept)
    for i, text in enumerate(batch):  # a drop names its reason; an exact drop's survivor has its text
        survivor_row = kept[result.labels[kept] == result.labels[i]][0]
        if result.keep[i]:
            assert result.reasons[i] == ""
        elif result.reasons[i] == "dedup_exact":
            assert normalize_for_exact(text) == normalize_for_exact(batch[survivor_row])
        else:
            assert result.reasons[i] == "dedup_near"
            assert normalize_for_exact(text) != normalize_for_exact(batch[survivor_row])
