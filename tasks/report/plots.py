"""Small matplotlib plots for the run report, written as PNG files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_chart(groups: Mapping[str, Mapping[str, float]], path: Path, *, title: str, ylabel: str = "") -> Path:
    """Grouped bars: ``groups[metric][model] = value``."""
    metrics = list(groups)
    models = sorted({m for g in groups.values() for m in g})
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(metrics))
    for i, model in enumerate(models):
        vals = [groups[m].get(model, np.nan) for m in metrics]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, metrics)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def s_curve(bands: int, rows: int, threshold: float, path: Path) -> Path:
    """Probability that a pair of Jaccard similarity s becomes an LSH candidate: 1-(1-s^r)^b."""
    s = np.linspace(0, 1, 201)
    p = 1 - (1 - s**rows) ** bands
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    ax.plot(s, p, color="#4477aa")
    ax.axvline(threshold, color="#cc3311", linestyle="--")
    at = 1 - (1 - threshold**rows) ** bands
    ax.set_title(f"LSH S-curve: b={bands}, r={rows}; P(candidate | s={threshold:g}) = {at:.3f}", fontsize=8)
    ax.set_xlabel("Jaccard similarity")
    ax.set_ylabel("P(candidate)")
    return _save(fig, path)
