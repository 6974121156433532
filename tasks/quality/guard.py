"""The drop-rate guard: which rules dropped more than ``quality.guard.max_drop_share`` of the
documents that reached them, and how to change that.

A document is dropped by the first rule it fails (:func:`tasks.quality.rules.decide`), so a rule
*reaches* the documents no earlier rule (in decision order) dropped: its share is
``dropped / reached``. Each warning names the rule, its share, an example dropped document, the
config path of its threshold and the profiles under which that document would pass the rule.

With several sources the shares are taken per source (:func:`drop_rate_warnings_by_source`): a
source of documentation mixed into a bigger web crawl can lose nearly all of itself to one rule
while the run's overall share of that rule stays small.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from refinery.tasks.quality.config import QualityConfig
from refinery.tasks.quality.profiles import PRESETS, PROFILES
from refinery.tasks.quality.rules import Rule, active_rules

__all__ = ["SNIPPET_CHARS", "UNJUDGED_FAMILIES", "drop_rate_warnings", "drop_rate_warnings_by_source", "guard_message",
           "warning_line"]

# The trained classifier drops what it was trained to (DCLM keeps a tenth): its share says nothing
# about whether the rules fit the corpus.
UNJUDGED_FAMILIES = ("classifier",)

# Characters of the example document a warning quotes.
SNIPPET_CHARS = 120

# (reason, attribute) -> (doc_id, text, attribute value) of one document the rule dropped, or None.
ExampleLookup = Callable[[str, str], "tuple[str, str, float | None] | None"]


def drop_rate_warnings(docs: int, drops_by_reason: Mapping[str, int], cfg: QualityConfig,
                       example: ExampleLookup | None = None) -> list[dict[str, Any]]:
    """One warning per rule whose drops exceed ``cfg.guard.max_drop_share`` of the documents that
    reached it (``docs``: documents the quality stage decided), in decision order.

    ``example(reason, attribute)`` gives a dropped document for the warning; without it the
    warning has no example and names no profile.
    """
    limit = cfg.guard.max_drop_share
    if limit is None:
        return []
    out = []
    reached = docs
    for rule, _, _ in active_rules(cfg):
        dropped = int(drops_by_reason.get(rule.reason, 0))
        judged = rule.family not in UNJUDGED_FAMILIES
        if judged and reached >= cfg.guard.min_reached and dropped > limit * reached:
            out.append(_warning(rule, dropped, reached, limit, cfg, example))
        reached -= dropped
    return out


def drop_rate_warnings_by_source(
    reached: Mapping[str, int], drops: Mapping[str, Mapping[str, int]], cfg: QualityConfig,
    example: Callable[[str, str, str], "tuple[str, str, float | None] | None"] | None = None,
) -> list[dict[str, Any]]:
    """drop_rate_warnings() for each source (``reached``: documents the quality stage decided per
    source; ``drops``: its drops per source and reason), each warning naming its ``source``; a run
    of one source gets the run's warnings, without a source. ``example(reason, attribute, source)``."""
    if len(reached) <= 1:
        ((source, docs),) = reached.items() if reached else ((None, 0),)
        lookup = None if example is None else (lambda r, a: example(r, a, source))
        return drop_rate_warnings(docs, drops.get(source, {}), cfg, lookup)
    out = []
    for source in sorted(reached):
        lookup = None if example is None else (lambda r, a, s=source: example(r, a, s))
        out += [{"source": source, **w} for w in drop_rate_warnings(reached[source], drops.get(source, {}), cfg, lookup)]
    return out


def _warning(rule: Rule, dropped: int, reached: int, limit: float, cfg: QualityConfig,
             example: ExampleLookup | None) -> dict[str, Any]:
    found = example(rule.reason, rule.attribute) if example is not None else None
    doc_id, text, value = found if found is not None else (None, "", None)
    return {
        "rule": rule.reason, "dropped": dropped, "reached": reached, "share": round(dropped / reached, 4),
        "limit": limit, "setting": f"quality.{rule.family}.{rule.field}",
        "value": getattr(getattr(cfg, rule.family), rule.field),
        "profile": cfg.profile, "profiles_that_keep": _keeping_profiles(rule, value, cfg.profile),
        "example_doc_id": doc_id, "example": " ".join(text[: SNIPPET_CHARS * 2].split())[:SNIPPET_CHARS],
    }


def _keeping_profiles(rule: Rule, value: float | None, current: str) -> list[str]:
    """The profiles (other than ``current`` and ``custom``) under which a document with this
    attribute value passes ``rule``."""
    if value is None or rule.op == "pareto" or np.isnan(value):
        return []
    if not any(rule.family in PRESETS[name] for name in PROFILES):
        # no profile presets this family (pii): its rules are the config's own under every profile,
        # and a default config of another profile, with the family's defaults, proves nothing
        return []
    out = []
    for name in PROFILES:
        if name in (current, "custom"):
            continue
        threshold = rule.threshold(QualityConfig(profile=name))
        if threshold is None or not rule.fails({rule.attribute: np.array([value])}, threshold)[0]:
            out.append(name)
    return out


def warning_line(w: Mapping[str, Any]) -> str:
    """One warning as one line: the rule, its share, the example, the setting and the profiles."""
    example = f'; e.g. {w["example_doc_id"]} "{w["example"]}"' if w.get("example_doc_id") else ""
    fix = f"change {w['setting']} (now {w['value']})"
    if w.get("profiles_that_keep"):
        fix += f" or set quality.profile: {' or '.join(w['profiles_that_keep'])} (the example passes there)"
    where = f" of source {w['source']}" if w.get("source") else ""
    return (f"{w['rule']} dropped {w['dropped']} of the {w['reached']} documents{where} that reached it "
            f"({w['share']:.0%} > {w['limit']:.0%}){example}; {fix}")


def guard_message(run_id: str, warnings: list[Mapping[str, Any]]) -> str:
    """The one-line error of a run the guard fails (``quality.guard.action: fail``)."""
    rules = " | ".join(warning_line(w) for w in warnings)
    return (f"quality.guard: {rules}. The quality stage's outputs are written: `refinery refilter {run_id} -c CONFIG` "
            f"re-decides from the stored scores, then `refinery run --resume {run_id}` goes on "
            "(or set quality.guard.action: warn)")
