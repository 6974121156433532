"""Choosing documents rather than taking every survivor: quality-weighted sampling with a temperature
(QuRating, Wettig et al. 2024) and a cap per group (MetaCLIP's per-concept balancing, Xu et al. 2024).

A selection draws ``n`` documents without replacement with probabilities proportional to
``exp(weight / temperature)``: the Gumbel-top-k trick, each document's key ``weight / temperature +
Gumbel noise`` (the noise a seeded hash of its doc id), the ``n`` largest keys chosen. A high
temperature is a uniform sample, a low one takes the best-scored documents. With ``cap`` no group
(``cap_by``: a label, a source, a domain, or any attribute such as semantic dedup's
``semantic_cluster``) gives more than ``cap`` documents: the walk down the keys skips a group's
documents past its cap. The draw runs in SQL over the corpus shards and the attribute shards
(:mod:`storage.selection`); synthesize uses it for its passages (``synthesize.selection``) and
``refinery export --sample`` for a mixture.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_TEMPERATURE = 1.0
# Document columns a selection may weigh or group by, besides attributes.
DOCUMENT_FIELDS = ("label", "source", "domain", "lang", "n_chars")
# Groups the report lists by name (the largest before the selection); the rest are counted.
REPORTED_GROUPS = 12
# An attribute in a weight expression: a double-quoted SQL identifier, e.g. "classifier.score".
QUOTED_NAME = re.compile(r'"((?:[^"]|"")+)"')


class SelectionConfig(BaseModel):
    """How documents are chosen when not all of them are taken. Off while neither ``weight`` nor
    ``cap`` is set: a uniform seeded sample, as before."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: str | None = Field(
        default=None,
        description="The score documents are sampled by, as logits: an attribute name (`classifier.score`, "
        "`fineweb.line_punct_ratio`, any `doc_attributes.name`), a document field (`n_chars`), or a SQL "
        "expression over them with attributes double-quoted (`ln(\"classifier.score\" + 1e-6) - "
        "ln(1 - \"classifier.score\" + 1e-6)`). A document the weight is NULL for comes after every scored "
        "one. null: every document weighs the same.",
    )
    temperature: float = Field(
        default=DEFAULT_TEMPERATURE, gt=0,
        description="Divides the weight: documents are drawn with probability proportional to "
        "exp(weight / temperature), without replacement. Large: close to uniform; small: the top-scored.",
    )
    cap_by: str | None = Field(
        default=None,
        description="Group documents by this field (`label`, `source`, `domain`, `lang`) or attribute "
        "(`semantic_cluster` from `quality.semdedup`, any attribute name) for `cap`.",
    )
    cap: int | None = Field(
        default=None, ge=1,
        description="At most this many documents from any one `cap_by` group (MetaCLIP's per-concept cap); "
        "null: no cap.",
    )
    seed: int = Field(default=0, description="Seeds the Gumbel noise: the same seed, corpus and scores draw the same sample.")

    @field_validator("weight", "cap_by")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (null turns it off)")
        return value

    @model_validator(mode="after")
    def _cap_needs_group(self) -> SelectionConfig:
        if (self.cap is None) != (self.cap_by is None):
            raise ValueError("cap and cap_by go together: the cap is per cap_by group")
        return self

    @property
    def active(self) -> bool:
        """Whether this selection differs from a uniform sample."""
        return self.weight is not None or self.cap is not None

    def attribute_names(self) -> list[str]:
        """The attributes the weight and the group read (document fields are not attributes)."""
        names = []
        if self.weight is not None:
            quoted = [m.replace('""', '"') for m in QUOTED_NAME.findall(self.weight)]
            names += quoted or ([] if self.weight in DOCUMENT_FIELDS or not _is_name(self.weight) else [self.weight])
        if self.cap_by is not None and self.cap_by not in DOCUMENT_FIELDS:
            names.append(self.cap_by)
        return list(dict.fromkeys(names))

    def weight_sql(self) -> str:
        """The weight as a SQL expression over the candidates' columns (attributes by their quoted names)."""
        if self.weight is None:
            return "0.0"
        if self.weight in DOCUMENT_FIELDS:
            return f"CAST({self.weight} AS DOUBLE)"
        if _is_name(self.weight) and not QUOTED_NAME.search(self.weight):
            return '"' + self.weight.replace('"', '""') + '"'
        return f"CAST(({self.weight}) AS DOUBLE)"

    def describe(self) -> str:
        """One line for a log, a report or a dataset card."""
        parts = [f"weight {self.weight} at temperature {self.temperature:g}" if self.weight else "uniform"]
        if self.cap is not None:
            parts.append(f"at most {self.cap:,} per {self.cap_by}")
        return ", ".join(parts) + f" (seed {self.seed})"


def _is_name(text: str) -> bool:
    """Whether ``text`` reads as one attribute name (``classifier.score``), not an expression."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]*", text) is not None


def selection_summary(cfg: SelectionConfig, drawn: dict[str, Any]) -> dict[str, Any]:
    """The stats a stage keeps of a selection: its settings, how many candidates and chosen, and
    the counts per group before and after (the largest :data:`REPORTED_GROUPS` groups by name)."""
    return {"settings": cfg.model_dump(mode="json"), "described": cfg.describe(), **drawn}


def selection_markdown(summary: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]]]:
    """The report's words on a selection (a stage's :func:`selection_summary`) and its groups as
    table rows (group, before, after); nothing for a night that took a uniform sample."""
    if not summary:
        return "", []
    text = (f"**Passage selection**: {summary['chosen']:,} of {summary['candidates']:,} candidate documents chosen, "
            f"{summary['described']}")
    if summary.get("unscored"):
        text += f"; {summary['unscored']:,} had no weight and came last"
    if summary["settings"].get("cap") is not None:
        text += (f". The cap cut {summary['groups_capped']:,} of {summary['groups_total']:,} groups; the largest, "
                 "before and after")
    rows = [{"group": g["group"], "before": g["before"], "after": g["after"]} for g in summary.get("groups", [])]
    return text + ".\n", rows
