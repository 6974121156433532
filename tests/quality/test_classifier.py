"""fastText quality classifier on real text, Pareto sampling, and positive sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refinery.tasks.quality import (
    ClassifierConfig,
    QualityClassifier,
    QualityConfig,
    pareto_keep,
    read_text_source,
    score_documents,
    train_classifier,
)
from refinery.tasks.quality.classifier import roc_auc
from tests.fixtures.crafted import bbc_files


@pytest.fixture(scope="module")
def sport_vs_business() -> tuple[list[str], list[str]]:
    bbc = bbc_files()
    sport = [t for label, t in bbc if label == "sports"][::2]
    business = [t for label, t in bbc if label == "business"][::2]
    return sport, business


def test_separates_two_real_sources(tmp_path: Path, sport_vs_business: tuple[list[str], list[str]]) -> None:
    sport, business = sport_vs_business
    report = train_classifier(sport, business, out_path=tmp_path / "clf.bin", cfg=ClassifierConfig())
    assert report.auc > 0.95 and report.accuracy > 0.85
    assert report.n_test == round(len(sport) * 0.2) + round(len(business) * 0.2)
    assert report.n_train + report.n_test == len(sport) + len(business)
    clf = QualityClassifier(report.path)
    scores = clf.score([sport[0], business[0]])
    assert scores[0] > scores[1] and ((0 <= scores) & (scores <= 1)).all()


def test_training_is_deterministic(tmp_path: Path, sport_vs_business: tuple[list[str], list[str]]) -> None:
    sport, business = sport_vs_business
    cfg = ClassifierConfig(epochs=2, dim=16)
    texts = sport[:5] + business[:5]
    sport, business = sport[:60], business[:60]
    a = train_classifier(sport, business, out_path=tmp_path / "a.bin", cfg=cfg, seed=3)
    b = train_classifier(sport, business, out_path=tmp_path / "b.bin", cfg=cfg, seed=3)
    assert a.auc == b.auc
    assert np.array_equal(QualityClassifier(a.path).score(texts), QualityClassifier(b.path).score(texts))


def test_score_documents_adds_classifier_attributes(tmp_path: Path, sport_vs_business: tuple[list[str], list[str]]) -> None:
    sport, business = sport_vs_business
    cfg = QualityConfig(classifier={"enabled": True, "epochs": 2, "dim": 16})
    report = train_classifier(sport[:40], business[:40], out_path=tmp_path / "c.bin", cfg=cfg.classifier)
    clf = QualityClassifier(report.path)
    keys = np.arange(4, dtype=np.uint64)
    attrs = score_documents(sport[:2] + business[:2], cfg, classifier=clf, keys=keys)
    assert np.array_equal(attrs["classifier.score"], clf.score(sport[:2] + business[:2]))
    again = score_documents(sport[:2] + business[:2], cfg, classifier=clf, keys=keys)
    assert np.array_equal(attrs["classifier.noise"], again["classifier.noise"])
    assert "classifier.score" not in score_documents(sport[:1], cfg)  # no model yet: nothing to score


def test_pareto_keep_is_deterministic_and_follows_the_score() -> None:
    keys = np.arange(200_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    np.random.seed(1)
    first = pareto_keep(np.full(len(keys), 0.5), keys, alpha=9.0)
    np.random.seed(2)  # global RNG state must not matter
    assert np.array_equal(first, pareto_keep(np.full(len(keys), 0.5), keys, alpha=9.0))
    # P(keep) = P(exp(E / alpha) > 2 - s) = (2 - s) ** -alpha for a standard exponential E.
    for score in (0.0, 0.5, 0.9):
        rate = pareto_keep(np.full(len(keys), score), keys, alpha=9.0).mean()
        assert rate == pytest.approx((2 - score) ** -9.0, abs=0.005)
    assert pareto_keep(np.ones(len(keys)), keys, alpha=9.0).all()
    assert pareto_keep(np.array([np.nan]), keys[:1], alpha=9.0).all()


def test_roc_auc_counts_ties_as_half() -> None:
    assert roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.4, 0.4])) == pytest.approx(3.5 / 4)


def test_read_text_source(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.txt").write_text("second doc\nline two")
    (tmp_path / "docs" / "a.md").write_text("first doc")
    (tmp_path / "docs" / "skip.bin").write_text("not text")
    assert read_text_source(tmp_path / "docs") == ["first doc", "second doc\nline two"]
    (tmp_path / "pos.jsonl").write_text(json.dumps({"text": "x\ny"}) + "\n\n" + json.dumps({"text": "z"}) + "\n")
    assert read_text_source(tmp_path / "pos.jsonl") == ["x\ny", "z"]
    (tmp_path / "pos.txt").write_text("one\n\ntwo\n")
    assert read_text_source(tmp_path / "pos.txt") == ["one", "two"]
    with pytest.raises(FileNotFoundError):
        read_text_source(tmp_path / "missing")
