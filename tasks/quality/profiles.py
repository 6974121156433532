"""Rule profiles: presets of the quality thresholds for kinds of corpus (``quality.profile``).

The published Gopher / C4 / FineWeb thresholds were tuned on web crawls; on other text some of them
drop most of a good corpus (docs/curation.md has the figures). A profile is a preset of
*thresholds only* -- never a scoring parameter -- so every profile reads the same stored attributes
and ``refinery refilter`` can move a finished run from any profile to any other without scoring a
document again. Fields a config sets explicitly win over the profile's preset
(:func:`apply_profile`, called once when a ``QualityConfig`` is validated).

* ``web``: datatrove's published thresholds, unchanged (the default; datatrove parity).
* ``prose``: edited prose that may be hard-wrapped (books, manuals, e-mails, tickets). C4 counts
  sentences only on lines that end in terminal punctuation and FineWeb wants 12% of lines to end in
  one: prose wrapped at a fixed width ends most lines mid-sentence, so both rules drop it.
* ``technical``: documentation with code (API references, docstrings, tutorials with ``>>>``
  examples): code tokens are not words, code lines are short and end without punctuation, code
  repeats n-grams and lines, holds braces, and confuses language ID.
* ``custom``: no preset: every threshold is what the config sets, its default being web's.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["PRESETS", "PROFILES", "Profile", "apply_profile", "describe_profiles"]

Profile = Literal["web", "prose", "technical", "custom"]
PROFILES: tuple[str, ...] = ("web", "prose", "technical", "custom")

# Per profile, per rule family: the thresholds that differ from the family's defaults (web's).
# Measured on the corpora of bench/quality_profiles.py; the reasons are in docs/curation.md.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "web": {},
    "prose": {
        # books run past 100,000 words
        "gopher_quality": {"max_doc_words": None},
        # hard-wrapped lines: few end in punctuation, so C4 sees few sentences and FineWeb few ended lines
        "c4": {"min_num_sentences": 1},
        "fineweb": {"min_line_punct_ratio": None},
    },
    "technical": {
        # fastText's English score of a docstring with a parameter list or a table is often 0.3-0.6
        "langid": {"min_score": 0.25},
        # code repeats names and idioms (">>> np.array", "array([[") where spam repeats phrases
        "gopher_repetition": {
            "max_top_2gram_char_frac": 0.3, "max_top_3gram_char_frac": 0.28, "max_top_4gram_char_frac": 0.26,
            "max_dup_5gram_char_frac": 0.25, "max_dup_6gram_char_frac": 0.24, "max_dup_7gram_char_frac": 0.23,
            "max_dup_8gram_char_frac": 0.22, "max_dup_9gram_char_frac": 0.21, "max_dup_10gram_char_frac": 0.2,
        },
        # operators, brackets and numbers are tokens without a letter; an API entry is short
        "gopher_quality": {"min_alpha_words_ratio": 0.25, "min_doc_words": 30},
        # code blocks hold braces; code lines end without punctuation, so C4 sees few sentences
        "c4": {"filter_curly_bracket": False, "min_num_sentences": 1},
        # code and parameter lists: short lines without punctuation, repeated lines ("...", "-------")
        "fineweb": {"min_line_punct_ratio": None, "max_short_line_ratio": 0.8, "max_char_dup_ratio": 0.15},
    },
    "custom": {},
}


def apply_profile(data: Any) -> Any:
    """The raw ``quality`` section with its profile's preset filled in under what it sets itself.

    ``data``: a mapping (from YAML or keyword arguments) or an already validated config (returned
    as it is). A family given as a model counts only the fields it was given explicitly.
    """
    if not isinstance(data, dict):
        return data
    preset = PRESETS.get(data.get("profile", "web"))
    if not preset:  # web, custom, or an unknown name (the field's validation names the valid ones)
        return data
    out = dict(data)
    for family, values in preset.items():
        given = out.get(family)
        if given is None:
            given = {}
        elif hasattr(given, "model_dump"):
            given = given.model_dump(exclude_unset=True)
        elif not isinstance(given, dict):
            continue  # let validation report it
        out[family] = {**values, **given}
    return out


def describe_profiles() -> str:
    """One line per profile: what its preset changes (for the config reference)."""
    parts = []
    for name in PROFILES:
        preset = PRESETS[name]
        changes = ", ".join(f"{family}.{field}={'off' if value is None else value}"
                            for family, values in preset.items() for field, value in values.items())
        parts.append(f"`{name}`: {changes or ('datatrove’s published thresholds' if name == 'web' else 'no preset')}")
    return "; ".join(parts)
