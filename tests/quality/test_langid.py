"""Language ID with the bundled lid.176.ftz on English and non-English text."""

from __future__ import annotations

import numpy as np
import pytest

from refinery.tasks.quality import LanguageIdentifier, QualityConfig, decide, default_model_path, score_documents
from tests.fixtures.crafted import FOREIGN_SENTENCES

GERMAN = "\n".join(FOREIGN_SENTENCES["de"])
FRENCH = " ".join(FOREIGN_SENTENCES["fr"])


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier(languages=["en"])


def test_model_ships_with_the_environment() -> None:
    assert default_model_path().name == "lid.176.ftz"
    assert default_model_path().is_file()


def test_english_and_other_languages(lid: LanguageIdentifier, bbc: list[tuple[str, str]]) -> None:
    english = bbc[0][1]
    pred = lid.predict([english, GERMAN, FRENCH])  # texts with newlines are fine
    assert pred.labels == ["en", "de", "fr"]
    assert pred.scores[0] > 0.9 and pred.probs["en"][0] == pred.scores[0]
    assert pred.probs["en"][1] < 0.1 and pred.probs["en"][2] < 0.1


def test_language_rule_keeps_allowed_languages(bbc: list[tuple[str, str]]) -> None:
    texts = [bbc[0][1], GERMAN]
    only_langid = {f: {"enabled": False} for f in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
    cfg = QualityConfig(**only_langid)
    assert decide(score_documents(texts, cfg), cfg) == [None, "langid.not_allowed"]
    both = QualityConfig(**only_langid, langid={"languages": ["en", "de"]})
    attrs = score_documents(texts, both)
    assert decide(attrs, both) == [None, None]
    assert attrs["langid.de"][1] > 0.65 and attrs["langid.allowed_score"][1] == attrs["langid.de"][1]


def test_per_paragraph_weights_paragraphs_by_length(bbc: list[tuple[str, str]]) -> None:
    english = bbc[5][1].split("\n\n")[1]
    german = " ".join(FOREIGN_SENTENCES["de"])
    doc = english + "\n\n" + german
    whole = LanguageIdentifier(languages=["en", "de"]).attributes([doc])
    paras = LanguageIdentifier(languages=["en", "de"], per_paragraph=True).attributes([doc, "", english])
    w_en, w_de = len(english), len(german)
    # Each paragraph is nearly certain of its language, so the mix approaches the length shares.
    assert paras["langid.en"][0] == pytest.approx(w_en / (w_en + w_de), abs=0.05)
    assert paras["langid.de"][0] == pytest.approx(w_de / (w_en + w_de), abs=0.05)
    assert np.isnan(paras["langid.allowed_score"][1])  # no paragraph, no score, no rule fires
    assert paras["langid.en"][2] > 0.9
    assert whole["langid.allowed_score"][0] >= max(whole["langid.en"][0], whole["langid.de"][0])


def test_max_chars_only_reads_the_start() -> None:
    lid = LanguageIdentifier(languages=["en"], max_chars=200)
    english = "The government said on Monday that it would publish the report later this year. " * 3
    pred = lid.predict([english + GERMAN * 5])
    assert pred.labels == ["en"]


def test_top_label_shortcut_gives_the_probabilities_of_the_full_prediction(
    lid: LanguageIdentifier, bbc: list[tuple[str, str]]
) -> None:
    # One configured language: texts whose top label it is take its probability from the top-1 call.
    # Two: every text gets all labels' probabilities. Both must give the same numbers.
    texts = [text for _, text in bbc[:40]] + [GERMAN, FRENCH, bbc[0][1][:300] + " " + FRENCH, "", "12 34"]
    one = lid.predict(texts)
    both = LanguageIdentifier(languages=["en", "de"]).predict(texts)
    assert one.labels == both.labels and "en" in one.labels and "de" in one.labels
    np.testing.assert_array_equal(one.scores, both.scores)
    np.testing.assert_array_equal(one.probs["en"], both.probs["en"])
    assert (one.probs["en"][one.labels.index("de")] > 0) and one.probs["en"][one.labels.index("de")] < 0.1
