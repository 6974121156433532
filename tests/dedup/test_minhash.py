"""Signatures: what callers rely on (row independence, Jaccard estimates, edge-case texts)."""

import numpy as np
import pytest
from datasketch import MinHash

from refinery.tasks.dedup import EMPTY_SIGNATURE_VALUE, DedupConfig, estimated_jaccard, shingle_sets, signatures

CFG = DedupConfig()
BBC_LIKE = [
    "Ink helps drive democracy in Asia\n\nThe Kyrgyz Republic, a small, mountainous state, is using invisible ink.",
    "Markets rally as oil price falls. Shares in London rose on Monday after crude prices eased.",
    "",
    "word",
    "Straße café — naïve résumé, déjà vu!",
    "   \n\t  ",
    "supercalifragilisticexpialidocious antidisestablishmentarianism " * 3,
]


def words(n: int, seed: int, prefix: str = "t") -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{prefix}{v}" for v in rng.choice(10**9, size=n, replace=False)]


def pair_with_jaccard(shared: int, own: int, seed: int, n: int = 5) -> tuple[str, str, float]:
    """Two texts whose word n-gram sets share exactly `shared` shingles and have `own` private ones each."""
    common = words(shared + n - 1, seed, "c")
    a = common + words(own, seed + 1, "a")
    b = common + words(own, seed + 2, "b")
    return " ".join(a), " ".join(b), shared / (shared + 2 * own)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def test_shape_dtype_and_rows_depend_only_on_their_own_text() -> None:
    sigs = signatures(BBC_LIKE, CFG)
    assert sigs.shape == (len(BBC_LIKE), CFG.num_perm)
    assert sigs.dtype == np.uint32
    alone = np.vstack([signatures([t], CFG) for t in BBC_LIKE])
    tiny_batches = signatures(BBC_LIKE, CFG.model_copy(update={"batch_chars": 1}))
    order = np.random.default_rng(0).permutation(len(BBC_LIKE))
    shuffled = signatures([BBC_LIKE[i] for i in order], CFG)
    assert np.array_equal(sigs, alone)
    assert np.array_equal(sigs, tiny_batches)
    assert np.array_equal(sigs[order], shuffled)


def test_reference_shingle_sets_have_the_designed_jaccard() -> None:
    a, b, want = pair_with_jaccard(shared=300, own=30, seed=1)
    sa, sb = shingle_sets([a, b], CFG)
    assert jaccard(sa, sb) == pytest.approx(want)


@pytest.mark.parametrize("shared,own", [(380, 10), (300, 30), (150, 50), (100, 100)])  # J = .95, .83, .6, .33
def test_estimates_are_unbiased_and_as_tight_as_datasketch(shared: int, own: int) -> None:
    pairs = [pair_with_jaccard(shared, own, seed=10 * s) for s in range(40)]
    want = pairs[0][2]
    ours = estimated_jaccard(signatures([p[0] for p in pairs], CFG), signatures([p[1] for p in pairs], CFG))
    theirs = []
    for a, b, _ in pairs:
        sets = shingle_sets([a, b], CFG)
        ms = [MinHash(num_perm=CFG.num_perm, seed=1) for _ in sets]
        for m, s in zip(ms, sets):
            m.update_batch([" ".join(x).encode() for x in s])
        theirs.append(ms[0].jaccard(ms[1]))
    # 40 pairs: the mean's standard error is at most 0.044 / sqrt(40) = 0.007.
    assert abs(ours.mean() - want) < 0.025
    assert np.abs(ours - want).mean() <= np.abs(np.array(theirs) - want).mean() + 0.015


def test_identical_texts_estimate_one_and_disjoint_texts_zero() -> None:
    a, b, _ = pair_with_jaccard(shared=0, own=200, seed=3)
    sigs = signatures([a, a, b], CFG)
    assert estimated_jaccard(sigs[0], sigs[1]) == 1.0
    assert estimated_jaccard(sigs[0], sigs[2]) < 0.05


def test_empty_and_punctuation_only_texts_get_the_empty_signature() -> None:
    sigs = signatures(["", "   \n\t", "!!! ... ---"], CFG)
    assert (sigs == EMPTY_SIGNATURE_VALUE).all()
    assert estimated_jaccard(sigs[0], sigs[1]) == 0.0


def test_one_word_and_short_texts_are_one_shingle_of_all_their_words() -> None:
    sigs = signatures(["word", "WORD!", "  word ", "other", "a b c", "a b c d"], CFG)
    assert not (sigs == EMPTY_SIGNATURE_VALUE).any()
    assert np.array_equal(sigs[0], sigs[1]) and np.array_equal(sigs[0], sigs[2])
    assert (sigs[0] == sigs[0, 0]).all()  # one shingle fills every bin by densification
    assert estimated_jaccard(sigs[0], sigs[3]) == 0.0
    assert estimated_jaccard(sigs[4], sigs[5]) == 0.0  # {(a,b,c)} vs {(a,b,c,d)}
    assert [len(s) for s in shingle_sets(["word", "a b c"], CFG)] == [1, 1]


def test_casefolding_covers_non_ascii_and_words_keep_non_ascii_letters() -> None:
    sigs = signatures(["STRASSE Über alles", "straße über alles", "strasse uber alles"], CFG)
    assert np.array_equal(sigs[0], sigs[1])
    assert not np.array_equal(sigs[0], sigs[2])


def test_long_tokens_are_hashed_in_full() -> None:
    cfg = DedupConfig(ngram=1)
    texts = ["internationalization", "internationalisation", "internationalizations", "a" * 40, "a" * 41]
    sigs = signatures(texts, cfg)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            assert estimated_jaccard(sigs[i], sigs[j]) == 0.0, (texts[i], texts[j])


def test_char_shingles_ignore_whitespace_layout_and_default_to_nine() -> None:
    cfg = DedupConfig(shingle="char")
    assert cfg.shingle_size == 9 and DedupConfig().shingle_size == 5
    sigs = signatures(["Hello   big\nworld again", "hello big world again", "hello big world gain"], cfg)
    assert np.array_equal(sigs[0], sigs[1])
    sets = shingle_sets(["hello big world again", "hello big world gain"], cfg)
    assert estimated_jaccard(sigs[1], sigs[2]) == pytest.approx(jaccard(*sets), abs=0.25)
    assert signatures(["", "abc"], cfg)[0][0] == EMPTY_SIGNATURE_VALUE


def test_char_estimates_track_true_jaccard() -> None:
    cfg = DedupConfig(shingle="char")
    a, b, _ = pair_with_jaccard(shared=250, own=30, seed=5)
    sets = shingle_sets([a, b], cfg)
    sigs = signatures([a, b], cfg)
    assert estimated_jaccard(sigs[0], sigs[1]) == pytest.approx(jaccard(*sets), abs=0.12)


def test_seed_and_num_perm_change_signatures() -> None:
    base = signatures(BBC_LIKE[:2], CFG)
    assert not np.array_equal(base, signatures(BBC_LIKE[:2], DedupConfig(seed=2)))
    assert signatures(BBC_LIKE[:2], DedupConfig(num_perm=100)).shape == (2, 100)


def test_rows_are_batch_independent_on_awkward_unicode() -> None:
    rng = np.random.default_rng(4)
    letters = np.array(list("ab \n.ßİΣ£’\xa0\u3000ﬁ"))
    texts = ["".join(rng.choice(letters, size=rng.integers(0, 30))) for _ in range(300)]
    for shingle in ("word", "char"):
        cfg = DedupConfig(shingle=shingle, ngram=2)
        together = signatures(texts, cfg)
        alone = np.vstack([signatures([t], cfg) for t in texts])
        assert np.array_equal(together, alone)
        # Same normalized text (casefold; for char, whitespace too) -> same signature.
        assert np.array_equal(signatures(["ΣΑΣ ß"], cfg), signatures(["σας ss"], cfg))
