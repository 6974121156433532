"""Report figures, and keep/drop agreement with datatrove's filters (when the bench extra is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.quality import agreement, run_datatrove, run_refinery
from refinery.tasks.quality import QualityConfig, decide, score_documents
from refinery.tasks.quality.plots import drop_counts, plot_attribute_histograms, plot_drop_counts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_histograms_and_drop_counts(tmp_path: Path, mixed_texts: list[str]) -> None:
    cfg = QualityConfig(langid={"enabled": False})
    attrs = score_documents(mixed_texts[::4], cfg)
    reasons = decide(attrs, cfg)
    names = ["gopher_quality.word_count", "fineweb.new_line_ratio"]
    paths = plot_attribute_histograms(attrs, tmp_path / "hist", cfg=cfg, names=names)
    assert [p.name for p in paths] == [f"{n}.png" for n in names]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)
    counts = drop_counts(reasons)
    assert sum(counts.values()) == len(reasons) and counts["kept"] == reasons.count(None)
    dropped = {k: v for k, v in counts.items() if k != "kept"}
    assert plot_drop_counts(dropped, len(reasons), tmp_path / "drops.png").read_bytes().startswith(PNG_MAGIC)
    all_nan = {"x": np.full(3, np.nan)}
    assert plot_attribute_histograms(all_nan, tmp_path / "nan")[0].is_file()


@pytest.mark.slow
def test_agrees_with_datatrove_on_real_and_crafted_documents(mixed_texts: list[str]) -> None:
    pytest.importorskip("datatrove")
    pytest.importorskip("spacy")
    texts = mixed_texts[::3]
    cfg = QualityConfig()
    ours, _, _ = run_refinery(texts, cfg)
    theirs, _ = run_datatrove(texts, cfg.langid.languages)
    for family in ("gopher_repetition", "gopher_quality", "c4", "fineweb", "langid"):
        assert agreement(ours[family], theirs[family]) >= 0.99, family
        assert 0 < sum(not k for k in theirs[family]) < len(texts), f"{family} never fires on the test set"
