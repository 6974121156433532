"""The rule table: one row per keep/drop rule, and ``decide``, the one implementation of the rules:
the quality stage decides with it while scoring, and a refilter with it on the stored attributes.

A rule compares one stored attribute with a threshold read from the config. Families run in
:data:`FAMILIES` order and rules in table order; a document's drop reason is the first rule it
fails, written ``"<family>.<rule>"``. No rule fails on a missing or NaN attribute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from refinery.tasks.quality.config import QualityConfig

__all__ = [
    "ATTRIBUTES_VERSION",
    "FAMILIES",
    "RULES",
    "Rule",
    "active_rules",
    "decide",
    "family_fingerprints",
    "required_attributes",
    "rule_thresholds",
]

# Bump when an attribute's definition changes, so attributes stored by older code stop matching.
ATTRIBUTES_VERSION = "refinery-quality-1"

FAMILIES = ("langid", "gopher_repetition", "gopher_quality", "c4", "fineweb", "classifier", "pii")

Op = Literal["lt", "le", "gt", "pareto"]
_NUMPY_OPS = {"lt": np.less, "le": np.less_equal, "gt": np.greater}


@dataclass(frozen=True)
class Rule:
    """Drop a document when ``attribute <op> threshold``.

    ``field`` names the threshold on the family's config model: a number (``None`` = rule off) or,
    when ``switch`` is set, a bool that turns the rule on with the fixed threshold ``switch``.
    ``exempt_zero_field`` names a bool that, when true, spares documents whose value is exactly 0.
    ``mode`` makes the rule apply only when the family's ``mode`` equals it. The ``pareto`` op keeps
    a document when ``exp(noise / alpha) - 1 > 1 - score`` (``attribute`` = score, ``noise`` =
    attribute holding a standard-exponential draw, ``field`` = alpha).
    """

    family: str
    name: str
    attribute: str
    op: Op
    field: str
    switch: float | None = None
    exempt_zero_field: str | None = None
    mode: str | None = None
    noise: str | None = None

    @property
    def reason(self) -> str:
        return f"{self.family}.{self.name}"

    @property
    def attributes(self) -> tuple[str, ...]:
        return (self.attribute,) if self.noise is None else (self.attribute, self.noise)

    def threshold(self, cfg: QualityConfig) -> float | None:
        """The threshold in force under ``cfg``, or None if the rule is off."""
        fam = getattr(cfg, self.family)
        if not fam.enabled or (self.mode is not None and fam.mode != self.mode):
            return None
        value = getattr(fam, self.field)
        if self.switch is not None:
            return self.switch if value else None
        return None if value is None else float(value)

    def exempt_zero(self, cfg: QualityConfig) -> bool:
        return self.exempt_zero_field is not None and bool(getattr(getattr(cfg, self.family), self.exempt_zero_field))

    def fails(self, attrs: Mapping[str, np.ndarray], threshold: float, *, exempt_zero: bool = False) -> np.ndarray:
        """Boolean mask of documents failing this rule (NaN never fails)."""
        value = np.asarray(attrs[self.attribute], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.op == "pareto":
                noise = np.asarray(attrs[self.noise], dtype=np.float64)
                return np.exp(noise / threshold) - 1.0 <= 1.0 - value
            out = _NUMPY_OPS[self.op](value, threshold)
        if exempt_zero:
            out &= value != 0
        return out


def _top(n: int) -> Rule:
    return Rule("gopher_repetition", f"top_{n}gram", f"gopher_repetition.top_{n}gram_char_frac", "gt", f"max_top_{n}gram_char_frac")


def _dup(n: int) -> Rule:
    return Rule("gopher_repetition", f"dup_{n}gram", f"gopher_repetition.dup_{n}gram_char_frac", "gt", f"max_dup_{n}gram_char_frac")


RULES: tuple[Rule, ...] = (
    Rule("langid", "not_allowed", "langid.allowed_score", "le", "min_score"),
    Rule("gopher_repetition", "empty", "gopher_repetition.char_count", "lt", "drop_empty", switch=1.0),
    Rule("gopher_repetition", "dup_para_frac", "gopher_repetition.dup_para_frac", "gt", "max_dup_para_frac"),
    Rule("gopher_repetition", "dup_para_char_frac", "gopher_repetition.dup_para_char_frac", "gt", "max_dup_para_char_frac"),
    Rule("gopher_repetition", "dup_line_frac", "gopher_repetition.dup_line_frac", "gt", "max_dup_line_frac"),
    Rule("gopher_repetition", "dup_line_char_frac", "gopher_repetition.dup_line_char_frac", "gt", "max_dup_line_char_frac"),
    *(_top(n) for n in (2, 3, 4)),
    *(_dup(n) for n in (5, 6, 7, 8, 9, 10)),
    Rule("gopher_quality", "min_word_count", "gopher_quality.word_count", "lt", "min_doc_words"),
    Rule("gopher_quality", "max_word_count", "gopher_quality.word_count", "gt", "max_doc_words"),
    Rule("gopher_quality", "min_mean_word_length", "gopher_quality.mean_word_length", "lt", "min_avg_word_length"),
    Rule("gopher_quality", "max_mean_word_length", "gopher_quality.mean_word_length", "gt", "max_avg_word_length"),
    Rule("gopher_quality", "max_hash_ratio", "gopher_quality.hash_word_ratio", "gt", "max_symbol_word_ratio"),
    Rule("gopher_quality", "max_ellipsis_ratio", "gopher_quality.ellipsis_word_ratio", "gt", "max_symbol_word_ratio"),
    Rule("gopher_quality", "max_bullet_lines", "gopher_quality.bullet_lines_frac", "gt", "max_bullet_lines_ratio"),
    Rule("gopher_quality", "max_ellipsis_lines", "gopher_quality.ellipsis_lines_frac", "gt", "max_ellipsis_lines_ratio"),
    Rule("gopher_quality", "min_alpha_words", "gopher_quality.alpha_words_frac", "lt", "min_alpha_words_ratio"),
    Rule("gopher_quality", "min_stop_words", "gopher_quality.stop_word_count", "lt", "min_stop_words"),
    Rule("c4", "lorem_ipsum", "c4.lorem_ipsum_lines", "gt", "filter_lorem_ipsum", switch=0.0),
    Rule("c4", "curly_bracket", "c4.curly_bracket_lines", "gt", "filter_curly_bracket", switch=0.0),
    Rule("c4", "min_sentences", "c4.num_sentences", "lt", "min_num_sentences"),
    Rule("c4", "min_terminal_punct_lines", "c4.lines_with_terminal_punct_frac", "lt", "min_terminal_punct_lines_ratio"),
    Rule("c4", "max_short_lines", "c4.short_lines_frac", "gt", "max_short_lines_ratio"),
    Rule("c4", "max_javascript_lines", "c4.javascript_lines", "gt", "max_javascript_lines"),
    Rule("c4", "max_policy_lines", "c4.policy_lines", "gt", "max_policy_lines"),
    Rule("fineweb", "empty", "fineweb.non_empty_lines", "lt", "drop_empty", switch=1.0),
    Rule(
        "fineweb", "line_punct_ratio", "fineweb.line_punct_frac", "lt", "min_line_punct_ratio",
        exempt_zero_field="line_punct_exclude_zero",
    ),
    Rule("fineweb", "short_line_ratio", "fineweb.short_line_frac", "gt", "max_short_line_ratio"),
    Rule("fineweb", "char_dup_ratio", "fineweb.char_dup_frac", "gt", "max_char_dup_ratio"),
    Rule("fineweb", "new_line_ratio", "fineweb.new_line_ratio", "gt", "max_new_line_ratio"),
    Rule("classifier", "min_score", "classifier.score", "lt", "threshold", mode="threshold"),
    Rule("classifier", "pareto", "classifier.score", "pareto", "pareto_alpha", mode="pareto", noise="classifier.noise"),
    Rule("pii", "found", "pii.count", "gt", "max_count", mode="drop"),
)

# Fields that shape how kept documents are written, not attribute values: a refilter applies them
# (the kept documents are redacted from their text each time they are written).
_WRITING_FIELDS = {"pii": {"email_placeholder", "ip_placeholder", "phone_placeholder"}}


def active_rules(cfg: QualityConfig) -> list[tuple[Rule, float, bool]]:
    """(rule, threshold, exempt_zero) for every rule switched on in ``cfg``, in decision order."""
    out = []
    for rule in RULES:
        threshold = rule.threshold(cfg)
        if threshold is not None:
            out.append((rule, threshold, rule.exempt_zero(cfg)))
    return out


def rule_thresholds(cfg: QualityConfig) -> dict[str, tuple[str, float]]:
    """Drop reason -> (attribute it reads, threshold in force), for rules switched on in ``cfg``.

    For the Pareto rule the "threshold" is alpha, not a cut on the score.
    """
    return {rule.reason: (rule.attribute, threshold) for rule, threshold, _ in active_rules(cfg)}


def required_attributes(cfg: QualityConfig) -> list[str]:
    """Attributes the rules switched on in ``cfg`` read (what must be stored to re-decide)."""
    return list(dict.fromkeys(a for rule, _, _ in active_rules(cfg) for a in rule.attributes))


def decide(attrs: Mapping[str, np.ndarray], cfg: QualityConfig) -> list[str | None]:
    """Per document, the reason of the first rule it fails (None = keep).

    ``attrs`` maps attribute names to equal-length arrays, as returned by ``score_documents``.
    Raises KeyError naming the missing attributes if a switched-on rule has nothing to read.
    """
    rules = active_rules(cfg)
    missing = [a for a in required_attributes(cfg) if a not in attrs]
    if missing:
        raise KeyError(f"attributes missing for enabled rules: {missing}; re-score or disable their families")
    n = len(next(iter(attrs.values()))) if attrs else 0
    reasons = np.full(n, None, dtype=object)
    undecided = np.ones(n, dtype=bool)
    for rule, threshold, exempt_zero in rules:
        hit = rule.fails(attrs, threshold, exempt_zero=exempt_zero) & undecided
        reasons[hit] = rule.reason
        undecided &= ~hit
    return reasons.tolist()


def _threshold_fields(family: str) -> set[str]:
    fields = {"enabled", *_WRITING_FIELDS.get(family, ())}
    for rule in RULES:
        if rule.family == family:
            fields.add(rule.field)
            if rule.exempt_zero_field:
                fields.add(rule.exempt_zero_field)
            if rule.mode:
                fields.add("mode")
    return fields


def family_fingerprints(cfg: QualityConfig) -> dict[str, str]:
    """Per enabled family, a hash of everything that shapes its attribute values (not thresholds).

    Stored attributes of a family can be reused for a new config exactly when its fingerprint is
    unchanged; a config that only moves thresholds keeps every fingerprint. The classifier's
    fingerprint covers its training parameters, not the trained model: version that separately.
    """
    out = {}
    for family in FAMILIES:
        fam = getattr(cfg, family)
        if not fam.enabled:
            continue
        params: dict[str, Any] = {
            k: v for k, v in fam.model_dump(mode="json").items() if k not in _threshold_fields(family)
        }
        blob = json.dumps({"version": ATTRIBUTES_VERSION, "family": family, "params": params}, sort_keys=True)
        out[family] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out
