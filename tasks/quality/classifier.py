"""A fastText classifier of "good" documents, trained on the user's positives vs corpus negatives.

Used as DCLM / FineWeb-Edu do: score every document with the positive-class probability, then keep
by threshold, or by GPT-3's Pareto-noise sampling (keep when ``pareto(alpha) > 1 - score``), which
keeps some lower-scored documents for diversity. The noise is derived from each document's uint64
key, so the same document gets the same draw in every run and in SQL.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xxhash

from refinery.storage import write_bytes_atomic
from refinery.storage.location import local_copy, location
from refinery.tasks.quality.config import ClassifierConfig

__all__ = [
    "ClassifierReport",
    "QualityClassifier",
    "classifier_attributes",
    "document_keys",
    "exponential_noise",
    "normalize_for_classifier",
    "pareto_keep",
    "read_text_source",
    "roc_auc",
    "train_classifier",
]

POSITIVE = "__label__pos"
NEGATIVE = "__label__neg"
TEXT_SUFFIXES = (".txt", ".md")
_SPLIT_PUNCT = re.compile(r"([^\w\s])")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ClassifierReport:
    """Held-out quality of a trained classifier (the flow stores these in ``metrics``)."""

    accuracy: float  # at probability 0.5
    auc: float
    n_train: int
    n_test: int
    path: str

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def normalize_for_classifier(text: str, *, max_chars: int) -> str:
    """One lower-cased line with punctuation split off words (fastText splits on spaces only)."""
    text = _SPLIT_PUNCT.sub(r" \1 ", text[:max_chars].lower())
    return _WHITESPACE.sub(" ", text).strip()


def read_text_source(path: str | Path) -> list[str]:
    """Documents from a folder (one per .txt / .md file, sorted by path), a .jsonl file (its
    ``text`` fields) or any other text file (one document per non-blank line)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES)
        return [f.read_text(encoding="utf-8", errors="replace") for f in files]
    if not p.is_file():
        raise FileNotFoundError(f"positives source {p} is neither a file nor a folder")
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    if p.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in lines if line.strip()]
    return [line for line in lines if line.strip()]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores sharing their mean rank)."""
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    _, inverse, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(mean_rank[inverse][labels].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _split(n: int, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    n_test = min(n - 1, max(1, round(n * holdout)))
    return order[n_test:], order[:n_test]


def train_classifier(
    positives: Sequence[str],
    negatives: Sequence[str],
    *,
    out_path: Path,
    cfg: ClassifierConfig,
    seed: int | None = None,
    holdout: float | None = None,
) -> ClassifierReport:
    """Train on a stratified split, save the model to ``out_path``, report held-out accuracy / AUC.

    ``seed`` and ``holdout`` default to ``cfg.seed`` / ``cfg.holdout``. Training uses one thread, so
    the same inputs and seed give the same model.
    """
    import fasttext  # heavy import, only needed here

    if len(positives) < 2 or len(negatives) < 2:
        raise ValueError("need at least 2 positives and 2 negatives to train and hold out")
    seed = cfg.seed if seed is None else seed
    holdout = cfg.holdout if holdout is None else holdout
    rng = np.random.default_rng(seed)
    pos_train, pos_test = _split(len(positives), holdout, rng)
    neg_train, neg_test = _split(len(negatives), holdout, rng)
    train = [(POSITIVE, positives[i]) for i in pos_train] + [(NEGATIVE, negatives[i]) for i in neg_train]
    train = [train[i] for i in rng.permutation(len(train))]
    test_texts = [positives[i] for i in pos_test] + [negatives[i] for i in neg_test]
    test_labels = np.array([True] * len(pos_test) + [False] * len(neg_test))

    out_path = location(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        with train_file.open("w", encoding="utf-8") as f:
            for label, text in train:
                f.write(f"{label} {normalize_for_classifier(text, max_chars=cfg.max_chars)}\n")
        model = fasttext.train_supervised(
            input=str(train_file),
            epoch=cfg.epochs,
            lr=cfg.lr,
            wordNgrams=cfg.word_ngrams,
            dim=cfg.dim,
            minCount=cfg.min_count,
            loss="softmax",
            thread=1,
            seed=seed,
            verbose=0,
        )
        saved = Path(tmp) / out_path.name  # fastText writes local files; the run's folder may be a bucket
        model.save_model(str(saved))
        write_bytes_atomic(saved.read_bytes(), out_path)
    scores = QualityClassifier(out_path, max_chars=cfg.max_chars).score(test_texts)
    return ClassifierReport(
        accuracy=float(np.mean((scores >= 0.5) == test_labels)),
        auc=roc_auc(test_labels, scores),
        n_train=len(train),
        n_test=len(test_texts),
        path=str(out_path),
    )


class QualityClassifier:
    """A trained model: ``score(texts)`` is each text's probability of being a positive."""

    def __init__(self, path: str | Path, *, max_chars: int = ClassifierConfig.model_fields["max_chars"].default) -> None:
        from fasttext.FastText import _FastText

        self.path = location(path)
        self.max_chars = max_chars
        self._model = _FastText(model_path=str(local_copy(self.path)))

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros(0)
        lines = [normalize_for_classifier(t, max_chars=self.max_chars) for t in texts]
        labels, probs = self._model.predict(lines, k=-1, threshold=0.0)
        out = np.empty(len(lines))
        for i, (lab, p) in enumerate(zip(labels, probs)):
            out[i] = p[0] if lab[0] == POSITIVE else 1.0 - p[0]
        return np.clip(out, 0.0, 1.0)


def document_keys(texts: Sequence[str]) -> np.ndarray:
    """A stable uint64 per text (xxh3 of its UTF-8 bytes), for when no doc hash is at hand."""
    return np.fromiter((xxhash.xxh3_64_intdigest(t.encode("utf-8")) for t in texts), dtype=np.uint64, count=len(texts))


def exponential_noise(keys: np.ndarray) -> np.ndarray:
    """A standard-exponential draw per uint64 key (splitmix64 -> uniform -> -log(1 - u))."""
    x = np.asarray(keys, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    u = (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return -np.log1p(-u)


def pareto_keep(scores: np.ndarray, keys: np.ndarray, *, alpha: float) -> np.ndarray:
    """Keep mask: ``pareto(alpha) > 1 - score``, the draw fixed by each document's key.

    ``pareto`` is numpy's Lomax draw ``exp(E / alpha) - 1`` with ``E = exponential_noise(key)``;
    the same formula is the ``classifier.pareto`` rule, so SQL re-decisions agree. NaN scores keep.
    """
    noise = exponential_noise(keys)
    with np.errstate(invalid="ignore", over="ignore"):
        return ~(np.exp(noise / alpha) - 1.0 <= 1.0 - np.asarray(scores, dtype=np.float64))


def classifier_attributes(
    texts: Sequence[str], classifier: QualityClassifier, *, keys: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """``classifier.score`` and ``classifier.noise`` (the Pareto draw's exponential) per text."""
    keys = document_keys(texts) if keys is None else np.asarray(keys, dtype=np.uint64)
    return {"classifier.score": classifier.score(texts), "classifier.noise": exponential_noise(keys)}
