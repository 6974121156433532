"""Report figures: score histograms and the drop-count bar chart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from refinery.tasks.quality import QualityConfig, decide, score_documents
from refinery.tasks.quality.plots import plot_attribute_histograms, plot_drop_counts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_histograms_and_drop_counts(tmp_path: Path, mixed_texts: list[str]) -> None:
    cfg = QualityConfig(langid={"enabled": False})
    attrs = score_documents(mixed_texts[::4], cfg)
    reasons = decide(attrs, cfg)
    names = ["gopher_quality.word_count", "fineweb.new_line_ratio"]
    paths = plot_attribute_histograms(attrs, tmp_path / "hist", cfg=cfg, names=names)
    assert [p.name for p in paths] == [f"{n}.png" for n in names]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)
    dropped = Counter(r for r in reasons if r is not None)
    assert dropped, "the mixed texts should drop some documents"
    assert plot_drop_counts(dropped, len(reasons), tmp_path / "drops.png").read_bytes().startswith(PNG_MAGIC)
    all_nan = {"x": np.full(3, np.nan)}
    assert plot_attribute_histograms(all_nan, tmp_path / "nan")[0].is_file()
