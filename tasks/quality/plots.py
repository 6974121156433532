"""Report figures: per-attribute score histograms (with the thresholds in force) and drop counts.

Uses matplotlib's object API (``Figure``, rendered by Agg), so no display or global pyplot state is
needed and workers can plot concurrently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from refinery.storage import write_bytes_atomic
from refinery.storage.location import location
from refinery.tasks.quality.config import QualityConfig
from refinery.tasks.report.plots import png_bytes
from refinery.tasks.quality.rules import active_rules

__all__ = ["plot_attribute_histograms", "plot_drop_counts"]

DEFAULT_BINS = 50


def plot_attribute_histograms(
    attrs: Mapping[str, np.ndarray],
    out_dir: str | Path,
    *,
    cfg: QualityConfig | None = None,
    names: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
) -> list[Path]:
    """One ``<attribute>.png`` per attribute in ``out_dir``: histogram of its finite values, with a
    dashed line at each threshold ``cfg`` applies to it. Returns the paths written."""
    from matplotlib.figure import Figure

    out = location(out_dir)
    thresholds: dict[str, list[tuple[str, float]]] = {}
    for rule, threshold, _ in active_rules(cfg) if cfg is not None else []:
        if rule.op != "pareto":
            thresholds.setdefault(rule.attribute, []).append((rule.name, threshold))
    paths = []
    for name in names if names is not None else sorted(attrs):
        values = np.asarray(attrs[name], dtype=np.float64)
        finite = values[np.isfinite(values)]
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        if len(finite):
            ax.hist(finite, bins=bins, color="#4C72B0")
        for rule_name, threshold in thresholds.get(name, []):
            ax.axvline(threshold, color="#C44E52", linestyle="--", label=f"{rule_name} = {threshold:g}")
        if name in thresholds:
            ax.legend(fontsize=8)
        ax.set_title(f"{name} ({len(finite)} of {len(values)} documents defined)", fontsize=10)
        ax.set_ylabel("documents")
        fig.tight_layout()
        paths.append(write_bytes_atomic(png_bytes(fig, dpi=100), out / f"{name}.png"))
    return paths


def plot_drop_counts(dropped: Mapping[str, int], total: int, path: str | Path) -> Path:
    """Horizontal bar chart of documents per drop reason, out of ``total`` documents decided."""
    from matplotlib.figure import Figure

    counts = {k: v for k, v in sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])) if k != "kept"}
    fig = Figure(figsize=(7, 0.35 * max(len(counts), 1) + 1.2))
    ax = fig.subplots()
    labels = list(counts)[::-1]
    ax.barh(labels, [counts[k] for k in labels], color="#C44E52")
    ax.set_xlabel("documents dropped")
    ax.set_title(f"{sum(counts.values())} of {total} documents dropped", fontsize=10)
    fig.tight_layout()
    return write_bytes_atomic(png_bytes(fig, dpi=100), path)
