"""The batched scoring path: a batch of documents scores each document exactly as it scores alone,
the repetition n-gram fractions equal a plain transcription of datatrove's definitions, and the
Arrow tokenizer pass splits exactly as ``str.split`` does."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from refinery.tasks.quality import QualityConfig, score_documents
from refinery.tasks.quality import score as score_module
from refinery.tasks.quality.gopher import DUP_NGRAM_SIZES, TOP_NGRAM_SIZES
from refinery.tasks.quality.text_stats import ParsedDocs
from refinery.tasks.quality.tokenizer import WordTokenizer, tokenize

HAND_MADE = [
    "", " ", "\n", "\n\n\n", "x", "a b", "a\n\nb\n\n", "\nfoo\n", "Hello.", "  lead\n\n\n trail  \n",
    "a\n\n\n\nb\n\n\n\n\nc", "the the the the the the the the the the the the",
    "one two three four five one two three four five one two three four five six",
    "Line one [1] has a cite.\nLine [edit] two is here.\n[citation needed] three x y.\n",
    "lorem ipsum dolor sit amet.\n{ curly } brackets here ok.\nPlease enable JavaScript now ok.\n"
    "Our privacy policy is fine.\nThis site uses cookies, you see.",
    "• bullet one here\n- bullet two here\n...\nend with dots...\nand with … too…",
    "# # # # hash tag words ... … ...", "a\r\nb\rc\u2028d\x0ce\x1cf\u0085g\u2029h\x0bi",
    "Mr. Smith went home. He slept! Did he? Yes...", "word " * 3000,
    "word" + "x" * 1200 + " short. And more words here.", "日本語のテキストです。これはテストです。",
    "\t\t\n \u00a0\n\u3000", "A B C D E F G H I J K L M N O P " * 20, "end no newline", "x\n" * 50,
    "a lone \ud800 surrogate, with \udfff another one.", "the of the of and to the of the of and to",
]


def random_texts(n: int, seed: int) -> list[str]:
    """Texts from a small vocabulary (so n-grams repeat and tie) with odd tokens, lines and paragraphs."""
    rng = random.Random(seed)
    vocab = "the of and to a in is it that was for on are with as I his they be at one have this from".split()
    odd = ["x", "Mr.", "U.S.", "...", "--", "#x", "don't", "(a)", "5km.", "!?", "ab", "abcdefgh", "[1]", "{"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 400)):
            parts.append(rng.choice(vocab) if rng.random() < 0.75 else rng.choice(odd))
            r = rng.random()
            parts.append("\n" if r < 0.04 else "\n\n" if r < 0.06 else "\n\n\n" if r < 0.065 else ". " if r < 0.15 else " ")
        out.append("".join(parts))
    return out


@pytest.fixture(scope="module")
def varied(mixed_texts: list[str]) -> list[str]:
    return HAND_MADE + random_texts(120, seed=0) + mixed_texts[::5]


RULES_ONLY = QualityConfig(langid={"enabled": False})
OTHER_SETTINGS = QualityConfig(
    langid={"enabled": False},
    gopher_quality={"stop_words": ["the", "of", "xyz"]},
    c4={"remove_citations": False, "max_word_length": 20, "min_words_per_line": None, "filter_javascript": False,
        "filter_no_terminal_punct": False},
    fineweb={"short_line_length": 10},
)


@pytest.mark.parametrize("cfg", [RULES_ONLY, OTHER_SETTINGS], ids=["defaults", "other-settings"])
def test_a_batch_scores_each_document_as_it_scores_alone(
    varied: list[str], cfg: QualityConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = [score_documents([text], cfg) for text in varied]
    monkeypatch.setattr(score_module, "BATCH_DOCS", 37)  # several batches, boundaries anywhere
    together = score_documents(varied, cfg)
    monkeypatch.setattr(score_module, "BATCH_CHARS", 5_000)  # batches cut by size too
    backwards = score_documents(varied[::-1], cfg)
    assert set(together) == set(alone[0]) == set(backwards)
    for name, values in together.items():
        expected = np.array([a[name][0] for a in alone])
        np.testing.assert_array_equal(values, expected, err_msg=name)
        np.testing.assert_array_equal(backwards[name][::-1], expected, err_msg=name)


def datatrove_ngram_fractions(text: str) -> list[float]:
    """datatrove's GopherRepetitionFilter n-gram figures, over spaCy-compatible words."""
    words = tokenize(text)
    out = []
    for n in TOP_NGRAM_SIZES:
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        if not grams:
            out.append(np.nan)
            continue
        gram, count = Counter(grams).most_common(1)[0]  # ties: the first seen
        out.append(len(" ".join(gram)) * count / len(text))
    for n in DUP_NGRAM_SIZES:
        seen: set[tuple[str, ...]] = set()
        idx = repeated_chars = 0
        while idx < len(words) - n + 1:
            gram = tuple(words[idx : idx + n])
            if gram in seen:
                repeated_chars += len("".join(gram))
                idx += n
            else:
                seen.add(gram)
                idx += 1
        out.append(repeated_chars / len(text))
    return out


def test_ngram_fractions_follow_datatrove(varied: list[str]) -> None:
    texts = [t for t in varied if t]
    repeats = " ".join(["alpha beta gamma delta epsilon zeta eta theta iota kappa"] * 3 + ["x y z"] * 4)
    texts += [repeats, repeats + " " + repeats.replace("x", "xx")]
    attrs = score_documents(texts, RULES_ONLY)
    names = [f"gopher_repetition.top_{n}gram_char_frac" for n in TOP_NGRAM_SIZES]
    names += [f"gopher_repetition.dup_{n}gram_char_frac" for n in DUP_NGRAM_SIZES]
    ours = np.column_stack([attrs[name] for name in names])
    expected = np.array([datatrove_ngram_fractions(t) for t in texts])
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)
    fired = (ours[:, len(TOP_NGRAM_SIZES) :] > 0).any(axis=0)
    assert fired.all(), "every duplicated n-gram size must be exercised"


def test_arrow_whitespace_is_str_split_whitespace() -> None:
    # Every code point but the surrogates, each between two non-space characters.
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    joined = "x".join(chars)
    assert pc.utf8_split_whitespace(pa.array([joined])).to_pylist()[0] == joined.split()
    padded = [c + "x" + c for c in chars]
    assert pc.utf8_trim_whitespace(pa.array(padded)).to_pylist() == [s.strip() for s in padded]


def test_arrow_tokenizer_pass_equals_the_str_split_one(varied: list[str]) -> None:
    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()] + ["\u200b", "\ufeff", "\x00"]
    lines = [line for text in varied for line in text.splitlines()]
    lines += ["", " ", *spaces, *(f"{c}a{c}{c}b{c}" for c in spaces), "don't  stop\u3000(now).", "a\ud800 b"]
    tokenizer = WordTokenizer()
    fast = tokenizer.ids_by_line(lines)
    plain = tokenizer._ids_by_line_python(lines)
    for got, want in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(got, want)
    docs = ParsedDocs(["a\ud800 b\nc", "d"], tokenizer)  # a lone surrogate: the plain pass, same result
    assert [docs.token_strings(i) for i in range(2)] == [["a\ud800", "b", "c"], ["d"]]
