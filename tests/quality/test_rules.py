"""Every rule in RULES on crafted documents just inside and just outside its threshold.

Each case is a "dial": a family of documents indexed by k that get monotonically worse for one
rule. The test scores the whole dial, finds where the decision flips, and checks that the two
documents around the flip straddle the published threshold. Only the rule under test is switched
on, so the crafted text only has to move one attribute. A rule added to RULES without a case here
fails ``test_every_rule_has_a_case``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from refinery.tasks.quality import RULES, QualityConfig, Rule, decide, score_documents
from refinery.tasks.quality.rules import FAMILIES

EN = (
    "The government said on Monday that it would publish the report later this year. "
    "Ministers have been under pressure to explain how the money was spent. "
    "Officials at the department declined to comment on the figures. "
)
DE = (
    "Die Regierung hat am Montag angekündigt, dass sie den Bericht noch in diesem Jahr veröffentlichen wird. "
    "Die Minister stehen unter Druck, zu erklären, wie das Geld ausgegeben wurde. "
    "Beamte des Ministeriums wollten sich zu den Zahlen nicht äußern. "
)


def unique_words(n: int, start: int = 0) -> list[str]:
    """Distinct letter-only words of 5 characters (no accidental repeats or stop words)."""
    out = []
    for i in range(start, start + n):
        a, b = divmod(i, 26 * 26)
        b, c = divmod(b, 26)
        out.append("q" + "abcdefghijklmnopqrstuvwxyz"[a % 26] + "xz"[a // 26 % 2] + chr(97 + b) + chr(97 + c))
    return out


def sentence(i: int, n_words: int = 6) -> str:
    return " ".join(unique_words(n_words, i * n_words)).capitalize() + "."


@dataclass
class Case:
    dial: Callable[[int], str] | None = None  # k -> document, worse as k grows
    max_k: int = 120
    pair: tuple[str, str] | None = None  # (inside, outside) when a dial makes no sense
    settings: dict | None = None  # extra settings for the rule's family (e.g. an optional threshold)


def repeated_ngram_dial(n: int, base_words: int = 200) -> Callable[[int], str]:
    phrase = " ".join(unique_words(n, 10_000))

    def make(k: int) -> str:
        words = unique_words(base_words)
        parts = []
        for i, w in enumerate(words):
            parts.append(w)
            if i % 5 == 4 and i // 5 < k:
                parts.append(phrase)
        return " ".join(parts)

    return make


def lines_dial(total: int, bad: Callable[[int], str], good: Callable[[int], str], *, sep: str = "\n") -> Callable[[int], str]:
    return lambda k: sep.join(bad(i) if i < k else good(i) for i in range(total))


CASES: dict[str, Case] = {
    "langid.not_allowed": Case(dial=lambda k: EN * max(0, 12 - k) + DE * k, max_k=13),
    "gopher_repetition.empty": Case(pair=("x", "")),
    "gopher_repetition.dup_para_frac": Case(
        dial=lambda k: "\n\n".join([sentence(i) for i in range(20)] + [sentence(0)] * k)
    ),
    "gopher_repetition.dup_para_char_frac": Case(
        dial=lambda k: "\n\n".join([sentence(i, 20) for i in range(40)] + [sentence(i, 20) for i in range(k)])
    ),
    "gopher_repetition.dup_line_frac": Case(dial=lambda k: "\n".join([sentence(i) for i in range(20)] + [sentence(0)] * k)),
    "gopher_repetition.dup_line_char_frac": Case(
        dial=lambda k: "\n".join([sentence(i, 20) for i in range(40)] + [sentence(i, 20) for i in range(k)])
    ),
    **{f"gopher_repetition.top_{n}gram": Case(dial=repeated_ngram_dial(n)) for n in (2, 3, 4)},
    **{f"gopher_repetition.dup_{n}gram": Case(dial=repeated_ngram_dial(n)) for n in range(5, 11)},
    "gopher_quality.min_word_count": Case(dial=lambda k: " ".join(unique_words(60 - k)), max_k=60),
    "gopher_quality.max_word_count": Case(
        pair=(" ".join(["word"] * 100_000), " ".join(["word"] * 100_001))
    ),
    "gopher_quality.min_mean_word_length": Case(dial=lambda k: " ".join(["ab"] * k + ["abc"] * (100 - k)), max_k=100),
    "gopher_quality.max_mean_word_length": Case(
        dial=lambda k: " ".join(["abcdefghijk"] * k + ["abcdefghij"] * (100 - k)), max_k=100
    ),
    "gopher_quality.max_hash_ratio": Case(dial=lambda k: " ".join(unique_words(100) + ["#"] * k)),
    "gopher_quality.max_ellipsis_ratio": Case(dial=lambda k: " ".join(unique_words(100) + ["..."] * k)),
    "gopher_quality.max_bullet_lines": Case(dial=lines_dial(20, lambda i: "- " + sentence(i), sentence), max_k=21),
    "gopher_quality.max_ellipsis_lines": Case(dial=lines_dial(20, lambda i: sentence(i) + "..", sentence), max_k=21),
    "gopher_quality.min_alpha_words": Case(dial=lambda k: " ".join(["123"] * k + unique_words(100 - k)), max_k=100),
    "gopher_quality.min_stop_words": Case(pair=("the cat of the hill", "the cat on the hill")),
    "c4.lorem_ipsum": Case(
        # A lorem-ipsum line that C4's line rules remove (no final punctuation) does not count.
        pair=("\n".join([sentence(i) for i in range(6)] + ["Some lorem ipsum text here"]),
              "\n".join([sentence(i) for i in range(6)] + ["Some lorem ipsum text here."]))
    ),
    "c4.curly_bracket": Case(
        pair=("\n".join([sentence(i) for i in range(6)] + ["var x = { a: 1 }"]),
              "\n".join([sentence(i) for i in range(6)] + ["var x = { a: 1 } is code."]))
    ),
    "c4.min_sentences": Case(dial=lambda k: "\n".join(sentence(i) for i in range(8 - k)), max_k=9),
    "c4.min_terminal_punct_lines": Case(
        dial=lines_dial(20, lambda i: sentence(i)[:-1], sentence), max_k=21,
        settings={"min_terminal_punct_lines_ratio": 0.5},
    ),
    "c4.max_short_lines": Case(
        dial=lines_dial(20, lambda i: "Too short.", sentence), max_k=21, settings={"max_short_lines_ratio": 0.5}
    ),
    "c4.max_javascript_lines": Case(
        dial=lines_dial(20, lambda i: "Please enable JavaScript to view this page.", sentence), max_k=21,
        settings={"max_javascript_lines": 2},
    ),
    "c4.max_policy_lines": Case(
        dial=lines_dial(20, lambda i: "Read our privacy policy before you continue.", sentence), max_k=21,
        settings={"max_policy_lines": 2},
    ),
    "fineweb.empty": Case(pair=("x", "\n \n")),
    "fineweb.line_punct_ratio": Case(dial=lines_dial(100, lambda i: sentence(i)[:-1], sentence), max_k=101),
    "fineweb.short_line_ratio": Case(
        dial=lines_dial(100, lambda i: "Short line here.", lambda i: sentence(i, 8)), max_k=101
    ),
    "fineweb.char_dup_ratio": Case(dial=lambda k: "\n".join([sentence(i, 30) for i in range(60)] + ["Dup."] * k)),
    "fineweb.new_line_ratio": Case(dial=lambda k: " ".join(unique_words(100)) + "\n" * k),
    "pii.found": Case(
        pair=(EN + "Write to the news desk.", EN + "Write to news.desk@example.org."),
        settings={"mode": "drop", "apply_to": "all"},  # score_documents is told of no URL: 'web' would see none
    ),
}


def only(rule: Rule, settings: dict | None = None) -> QualityConfig:
    """A config where ``rule`` is the single rule switched on (with its published threshold)."""
    data: dict = {f: {"enabled": f == rule.family} for f in FAMILIES}
    fam_cfg = getattr(QualityConfig(), rule.family)
    fam = data[rule.family]
    for other in RULES:
        if other.family == rule.family and other.field != rule.field and other.field in type(fam_cfg).model_fields:
            fam[other.field] = False if other.switch is not None else None
    fam.update(settings or {})
    return QualityConfig(**data)


def test_every_rule_has_a_case() -> None:
    text_rules = {r.reason for r in RULES if r.family != "classifier"}
    assert text_rules == set(CASES), "add a crafted case for each new rule"


# Worked out by hand from each case's construction and the published threshold (datatrove's defaults;
# a case's own settings where it has them): reason -> (threshold, the first k whose document drops,
# the attribute of document k - 1, of document k). A pair's documents are k = 0 and 1.
# sentence(i, n) is n five-letter words and a full stop: 6n characters, n + 1 tokens.
FLIPS: dict[str, tuple[float, int, float, float]] = {
    "gopher_repetition.empty": (1, 1, 1, 0),  # characters: "x", ""
    # k copies of paragraph (line) 0 after 20 distinct ones: k / (20 + k) > 0.3 from k = 9
    "gopher_repetition.dup_para_frac": (0.3, 9, 8 / 28, 9 / 29),
    "gopher_repetition.dup_line_frac": (0.3, 9, 8 / 28, 9 / 29),
    # k repeated 120-character paragraphs after 40, "\n\n" between: 120k / (122 (40 + k) - 2) > 0.2
    "gopher_repetition.dup_para_char_frac": (0.2, 11, 1200 / 6098, 1320 / 6220),
    # the same with lines, "\n" between: 120k / (121 (40 + k) - 1) > 0.2
    "gopher_repetition.dup_line_char_frac": (0.2, 11, 1200 / 6049, 1320 / 6170),
    # an n-word phrase inserted k times into 200 words: 200 + kn words, 6 (200 + kn) - 1 characters;
    # the top n-gram is the phrase, k (6n - 1) characters with its spaces
    "gopher_repetition.top_2gram": (0.2, 28, 27 * 11 / 1523, 28 * 11 / 1535),
    "gopher_repetition.top_3gram": (0.18, 16, 15 * 17 / 1469, 16 * 17 / 1487),
    "gopher_repetition.top_4gram": (0.16, 11, 10 * 23 / 1439, 11 * 23 / 1463),
    # duplicated n-grams: the phrase's k - 1 repeats, 5n characters each (without spaces)
    "gopher_repetition.dup_5gram": (0.15, 10, 8 * 25 / 1469, 9 * 25 / 1499),
    "gopher_repetition.dup_6gram": (0.14, 8, 6 * 30 / 1451, 7 * 30 / 1487),
    "gopher_repetition.dup_7gram": (0.13, 7, 5 * 35 / 1451, 6 * 35 / 1493),
    "gopher_repetition.dup_8gram": (0.12, 6, 4 * 40 / 1439, 5 * 40 / 1487),
    "gopher_repetition.dup_9gram": (0.11, 5, 3 * 45 / 1415, 4 * 45 / 1469),
    "gopher_repetition.dup_10gram": (0.10, 4, 2 * 50 / 1379, 3 * 50 / 1439),
    "gopher_quality.min_word_count": (50, 11, 50, 49),  # 60 - k words
    "gopher_quality.max_word_count": (100_000, 1, 100_000, 100_001),
    "gopher_quality.min_mean_word_length": (3, 1, 3, 2.99),  # (2k + 3 (100 - k)) / 100
    "gopher_quality.max_mean_word_length": (10, 1, 10, 10.01),  # (11k + 10 (100 - k)) / 100
    "gopher_quality.max_hash_ratio": (0.1, 12, 11 / 111, 12 / 112),  # k / (100 + k) tokens
    "gopher_quality.max_ellipsis_ratio": (0.1, 12, 11 / 111, 12 / 112),
    "gopher_quality.max_bullet_lines": (0.9, 19, 18 / 20, 19 / 20),
    "gopher_quality.max_ellipsis_lines": (0.3, 7, 6 / 20, 7 / 20),
    "gopher_quality.min_alpha_words": (0.8, 21, 80 / 100, 79 / 100),
    "gopher_quality.min_stop_words": (2, 1, 2, 1),  # {the, of}, {the}
    # a line without terminal punctuation is removed by C4's line rules before these look at it
    "c4.lorem_ipsum": (0, 1, 0, 1),
    "c4.curly_bracket": (0, 1, 0, 1),
    "c4.min_sentences": (5, 4, 5, 4),  # 8 - k one-sentence lines
    "c4.min_terminal_punct_lines": (0.5, 11, 10 / 20, 9 / 20),
    "c4.max_short_lines": (0.5, 11, 10 / 20, 11 / 20),
    "c4.max_javascript_lines": (2, 3, 2, 3),
    "c4.max_policy_lines": (2, 3, 2, 3),
    "fineweb.empty": (1, 1, 1, 0),  # non-blank lines: "x", "\n \n"
    "fineweb.line_punct_ratio": (0.12, 89, 12 / 100, 11 / 100),
    "fineweb.short_line_ratio": (0.67, 68, 67 / 100, 68 / 100),
    # 60 lines of 180 characters, then k "Dup." lines of which k - 1 repeat: 4 (k - 1) / (10800 + 4k)
    "fineweb.char_dup_ratio": (0.01, 29, 27 * 4 / 10912, 28 * 4 / 10916),
    "fineweb.new_line_ratio": (0.3, 31, 30 / 100, 31 / 100),  # k newlines after 100 words
    "pii.found": (0, 1, 0, 1),  # e-mail addresses, IPs and phone numbers: none, one
}
# Language ID is a model's probability, so its flip is pinned to where it can be: langid reads the
# first 1,000 characters (langid.max_chars) and EN is 215, so up to k = 7 it reads only English
# (12 - k >= 5 copies), and at k = 12 only German.
LANGID_FLIPS = range(8, 13)
LANGID_MIN_SCORE = 0.65


@pytest.mark.parametrize("reason", sorted(CASES))
def test_rule_flips_at_its_threshold(reason: str) -> None:
    rule = next(r for r in RULES if r.reason == reason)
    case = CASES[reason]
    cfg = only(rule, case.settings)
    threshold = rule.threshold(cfg)
    assert threshold == (LANGID_MIN_SCORE if reason == "langid.not_allowed" else FLIPS[reason][0])
    if case.pair is not None:
        docs = list(case.pair)
        attrs = score_documents(docs, cfg)
        assert decide(attrs, cfg) == [None, reason]
        flip = 1
    else:
        docs = [case.dial(k) for k in range(case.max_k)]
        attrs = score_documents(docs, cfg)
        reasons = decide(attrs, cfg)
        assert reasons[0] is None, f"{reason}: the first document of the dial must pass"
        assert reason in reasons, f"{reason}: the dial never crosses the threshold"
        flip = reasons.index(reason)
        assert all(r == reason for r in reasons[flip : flip + 3]), "dropping must be monotone past the flip"
    inside, outside = attrs[rule.attribute][flip - 1], attrs[rule.attribute][flip]
    if reason == "langid.not_allowed":
        assert flip in LANGID_FLIPS
    else:
        assert (flip, inside, outside) == pytest.approx(FLIPS[reason][1:], rel=1e-12)
    if rule.op == "gt":
        assert inside <= threshold < outside
    elif rule.op == "lt":
        assert outside < threshold <= inside
    else:  # le
        assert outside <= threshold < inside


@pytest.mark.parametrize("reason", ["gopher_quality.max_hash_ratio", "c4.min_sentences", "fineweb.new_line_ratio"])
def test_switching_a_rule_or_family_off_keeps_the_outside_document(reason: str) -> None:
    rule = next(r for r in RULES if r.reason == reason)
    cfg = only(rule)
    docs = [CASES[reason].dial(k) for k in range(CASES[reason].max_k)]
    attrs = score_documents(docs, cfg)
    assert reason in decide(attrs, cfg)
    family = getattr(cfg, rule.family)
    rule_off = cfg.model_copy(update={rule.family: family.model_copy(update={rule.field: None})})
    assert set(decide(attrs, rule_off)) == {None}
    family_off = cfg.model_copy(update={rule.family: family.model_copy(update={"enabled": False})})
    assert set(decide(attrs, family_off)) == {None}
    assert not any(name.startswith(rule.family + ".") for name in score_documents(docs[:2], family_off))


def test_classifier_rules_use_score_and_noise() -> None:
    cfg = QualityConfig(classifier={"enabled": True, "threshold": 0.5})
    attrs = {"classifier.score": np.array([0.5, np.nextafter(0.5, 0), np.nan]), "classifier.noise": np.ones(3)}
    only_clf = QualityConfig(**{f: {"enabled": f == "classifier"} for f in FAMILIES if f != "classifier"},
                             classifier=cfg.classifier)
    assert decide(attrs, only_clf) == [None, "classifier.min_score", None]
    pareto = only_clf.model_copy(update={"classifier": only_clf.classifier.model_copy(update={"mode": "pareto"})})
    alpha = pareto.classifier.pareto_alpha
    # keep iff exp(noise / alpha) - 1 > 1 - score: with noise = alpha * ln(1.5) the draw is 0.5.
    noise = np.full(2, alpha * np.log(1.5))
    scores = np.array([0.5 + 1e-9, 0.5 - 1e-9])
    assert decide({"classifier.score": scores, "classifier.noise": noise}, pareto) == [None, "classifier.pareto"]


def test_first_failing_rule_wins_in_family_order() -> None:
    cfg = QualityConfig(langid={"enabled": False})
    doc = "lorem ipsum " * 3  # too short for Gopher and C4, repetitive, no punctuation
    reasons = decide(score_documents([doc], cfg), cfg)
    assert reasons == ["gopher_repetition.top_2gram"]
