"""``score_documents``: texts in, one float attribute array per rule value out.

Every enabled family is computed in one pass over the documents, a batch at a time: each batch is
split into lines and tokens once (:class:`~tasks.quality.text_stats.ParsedDocs`) and each family
scores the whole batch with a few array operations. Values are what the rules in
:mod:`tasks.quality.rules` compare, so stored attributes are enough to re-decide under new thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from refinery.tasks.quality.c4 import C4_ATTRIBUTES, c4_attributes
from refinery.tasks.quality.classifier import QualityClassifier, classifier_attributes
from refinery.tasks.quality.config import QualityConfig
from refinery.tasks.quality.fineweb import FINEWEB_ATTRIBUTES, fineweb_attributes
from refinery.tasks.quality.gopher import (
    GOPHER_QUALITY_ATTRIBUTES,
    GOPHER_REPETITION_ATTRIBUTES,
    gopher_quality_attributes,
    gopher_repetition_attributes,
)
from refinery.tasks.quality.langid import LanguageIdentifier
from refinery.tasks.quality.pii import PII_ATTRIBUTES, applies_to, pii_attributes
from refinery.tasks.quality.text_stats import ParsedDocs
from refinery.tasks.quality.tokenizer import default_tokenizer

__all__ = ["BATCH_CHARS", "BATCH_DOCS", "attribute_names", "score_documents"]

# A batch is at most this many documents and (past its first document) this many characters: large
# enough that per-batch array calls cost little per document, small enough that the n-gram sort stays
# in cache (1,024 news articles a batch score ~20% slower than 256) and its memory stays small.
BATCH_DOCS = 256
BATCH_CHARS = 1_000_000

_TEXT_FAMILIES: tuple[tuple[str, tuple[str, ...], Callable], ...] = (
    ("gopher_repetition", GOPHER_REPETITION_ATTRIBUTES, lambda docs, cfg: gopher_repetition_attributes(docs)),
    ("gopher_quality", GOPHER_QUALITY_ATTRIBUTES, gopher_quality_attributes),
    ("c4", C4_ATTRIBUTES, c4_attributes),
    ("fineweb", FINEWEB_ATTRIBUTES, fineweb_attributes),
)


def attribute_names(cfg: QualityConfig) -> list[str]:
    """Names ``score_documents`` returns under ``cfg`` (classifier ones only when a model is given)."""
    names = []
    if cfg.langid.enabled:
        names += [f"langid.{lang}" for lang in cfg.langid.languages] + ["langid.allowed_score", "langid.top_score"]
    for family, attrs, _ in _TEXT_FAMILIES:
        if getattr(cfg, family).enabled:
            names += attrs
    if cfg.pii.enabled:
        names += PII_ATTRIBUTES
    return names


def score_documents(
    texts: Sequence[str],
    cfg: QualityConfig,
    *,
    langid: LanguageIdentifier | None = None,
    classifier: QualityClassifier | None = None,
    keys: np.ndarray | None = None,
    has_url: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Attribute name -> float64 array with one value per text (NaN where undefined).

    Only enabled families are computed. ``langid`` defaults to one built from ``cfg.langid`` with
    the bundled model. Classifier attributes (``classifier.score``, ``classifier.noise``) are added
    only when ``cfg.classifier.enabled`` and a trained ``classifier`` is given; ``keys`` (uint64 doc
    hashes) seed the Pareto noise, defaulting to a hash of each text. ``has_url`` (bool per text;
    None: no text has one) says which documents are web pages, for ``pii.apply_to: web``.
    """
    n = len(texts)
    out: dict[str, np.ndarray] = {}
    if cfg.langid.enabled:
        lid = langid if langid is not None else LanguageIdentifier.from_config(cfg.langid)
        out.update(lid.attributes(texts))
    families = [(name, attrs, fn, getattr(cfg, name)) for name, attrs, fn in _TEXT_FAMILIES if getattr(cfg, name).enabled]
    if families:
        tokenizer = default_tokenizer()
        tables = [np.empty((n, len(attrs))) for _, attrs, _, _ in families]
        for lo, hi in _batches(texts):
            tokenizer.maybe_reset()
            docs = ParsedDocs(texts[lo:hi], tokenizer)
            for table, (_, _, fn, fam_cfg) in zip(tables, families):
                table[lo:hi] = fn(docs, fam_cfg)
        for table, (name, attrs, _, _) in zip(tables, families):
            for j, attr in enumerate(attrs):
                out[attr] = np.ascontiguousarray(table[:, j])
    if cfg.classifier.enabled and classifier is not None:
        out.update(classifier_attributes(texts, classifier, keys=keys))
    if cfg.pii.enabled:
        out.update(pii_attributes(texts, cfg.pii, applies_to(cfg.pii, has_url, n)))
    return out


def _batches(texts: Sequence[str]) -> list[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most BATCH_DOCS documents and about BATCH_CHARS characters."""
    out, lo, chars = [], 0, 0
    for i, text in enumerate(texts):
        if i > lo and (i - lo == BATCH_DOCS or chars + len(text) > BATCH_CHARS):
            out.append((lo, i))
            lo, chars = i, 0
        chars += len(text)
    if lo < len(texts):
        out.append((lo, len(texts)))
    return out
