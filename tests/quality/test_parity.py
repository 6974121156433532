"""Refinery's quality rules make datatrove's keep/drop decisions, family by family, on real BBC
articles and crafted junk: the "100% agreement with datatrove" that bench.quality measures at scale.

datatrove and spaCy are in the locked test set (pyproject's `dev` extra), so this runs in every
`make test`; without them it fails rather than skips.
"""

from __future__ import annotations

import pytest

from refinery.tasks.quality import QualityConfig
from tests.fixtures.parity import FAMILY_FILTERS, disagreements, run_datatrove, run_refinery


@pytest.mark.slow
def test_agrees_with_datatrove_on_real_and_crafted_documents(mixed_texts: list[str]) -> None:
    texts = mixed_texts[::3]
    cfg = QualityConfig()
    ours, _, _ = run_refinery(texts, cfg)
    theirs, _ = run_datatrove(texts, cfg.langid.languages)
    for family in (*FAMILY_FILTERS, "all"):
        assert ours[family] == theirs[family], (family, disagreements(texts, ours[family], theirs[family]))
        assert 0 < theirs[family].count(False) < len(texts), f"{family} never fires on the test set"
