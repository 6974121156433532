"""Small matplotlib plots for the run report, written as PNG files."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from refinery.storage import write_bytes_atomic  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    png = png_bytes(fig, dpi=110)
    plt.close(fig)
    return write_bytes_atomic(png, path)


def png_bytes(fig, *, dpi: int) -> bytes:
    """``fig`` as a PNG file's bytes (written where the report lives: a folder or a bucket)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


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


def interval_chart(values: Mapping[str, Mapping[str, float]],
                   intervals: Mapping[str, Mapping[str, tuple[float, float, float]]], path: Path, *,
                   metric: str = "nDCG@10", whiskers: str | None = "tuned − base") -> Path:
    """Two panels over the tasks. Left: ``values[task][model]`` as grouped bars, the tuned bar with
    the ``whiskers`` comparison's interval (``base + [low, high]``: where the paired interval puts
    tuned). Right: each ``intervals[task][comparison] = (delta, low, high)`` as a point with its
    interval beside a zero line: an interval wholly above it is a difference the queries bear out."""
    tasks = list(values)
    models = [m for m in ("bm25", "base", "tuned") if any(m in values[t] for t in tasks)]
    models += sorted({m for t in tasks for m in values[t]} - set(models))
    comparisons = list(dict.fromkeys(c for t in tasks for c in intervals.get(t, {})))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4 + 0.3 * len(tasks)),
                                      gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(tasks))
    for i, model in enumerate(models):
        heights = [values[t].get(model, np.nan) for t in tasks]
        err = None
        if model == "tuned" and whiskers:
            ivs = [intervals.get(t, {}).get(whiskers) for t in tasks]  # tuned = base + delta
            err = np.array([[v[0] - v[1] if v else 0 for v in ivs], [v[2] - v[0] if v else 0 for v in ivs]])
        bars = left.bar(x + i * width - 0.4 + width / 2, heights, width, label=model, yerr=err, capsize=4,
                        error_kw={"elinewidth": 1})
        left.bar_label(bars, fmt="%.3f", fontsize=7, label_type="center", color="white")
    left.set_xticks(x, tasks, fontsize=8)
    left.set_ylim(0, 1.1)
    left.set_ylabel(metric)
    left.set_title(f"{metric} per task and model" + (f" (whiskers: {whiskers}, 95%)" if whiskers else ""),
                   fontsize=9)
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(models))
    step = 0.8 / max(len(comparisons), 1)
    for j, comparison in enumerate(comparisons):
        ys = x + j * step - 0.4 + step / 2
        rows = [intervals.get(t, {}).get(comparison, (np.nan, np.nan, np.nan)) for t in tasks]
        delta = np.array([r[0] for r in rows])
        err = np.array([[r[0] - r[1] for r in rows], [r[2] - r[0] for r in rows]])
        right.errorbar(delta, ys, xerr=err, fmt="o", capsize=3, label=comparison)
        for y, (d, lo, hi) in zip(ys, rows):
            if not np.isnan(d):
                right.annotate(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]", (d, y), xytext=(0, 6), ha="center",
                               textcoords="offset points", fontsize=6)
    right.axvline(0, color="#888888", linewidth=0.8)
    right.set_yticks(x, tasks, fontsize=8)
    right.set_ylim(len(tasks) - 0.5, -0.5)
    right.set_xlabel(f"difference in {metric}")
    right.set_title("paired bootstrap 95% intervals", fontsize=9)
    if comparisons:
        right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(comparisons))
        right.margins(x=0.25)
    return _save(fig, path)


def night_chart(nights: list[dict], path: Path, *, title: str) -> Path:
    """nDCG@10 night over night: each night's model (filled where it was promoted) and the base model.
    ``nights``: dicts with ``run_id``, ``tuned``, ``base``, ``promoted``, oldest first."""
    x = np.arange(len(nights))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(x, [n["base"] if n["base"] is not None else np.nan for n in nights], color="#999999",
            linestyle="--", marker=".", label="base")
    ax.plot(x, [n["tuned"] if n["tuned"] is not None else np.nan for n in nights], color="#4477aa", label="night's model")
    for promoted, marker, label in ((True, "o", "promoted"), (False, "x", "kept as candidate")):
        at = [i for i, n in enumerate(nights) if bool(n["promoted"]) is promoted and n["tuned"] is not None]
        if at:
            ax.scatter(at, [nights[i]["tuned"] for i in at], marker=marker, color="#4477aa", zorder=3, label=label)
    ax.set_xticks(x, [n["run_id"][-8:] for n in nights], rotation=30, fontsize=7)
    ax.set_ylabel("nDCG@10")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


# The data map's regions, in the colours of the paper's figures (Swayamdipta et al. 2020).
REGION_COLOURS = {"easy_to_learn": "#4477aa", "ambiguous": "#ee7733", "hard_to_learn": "#cc3311"}


def data_map_chart(rows: list[dict], path: Path, *, hard_max_confidence: float, ambiguous_min_variability: float,
                   title: str) -> Path:
    """The data map: each pair at (variability, confidence), coloured by ``region`` and counted in the
    legend, with the two thresholds that bound the regions as dashed lines. ``rows``: dicts with
    ``variability``, ``confidence``, ``region``."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for region, colour in REGION_COLOURS.items():
        at = [r for r in rows if r["region"] == region]
        ax.scatter([r["variability"] for r in at], [r["confidence"] for r in at], s=14, color=colour, alpha=0.75,
                   label=f"{region} ({len(at)})")
    ax.axvline(ambiguous_min_variability, color="#888888", linestyle="--", linewidth=0.8)
    ax.plot([0, ambiguous_min_variability], [hard_max_confidence] * 2, color="#888888", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, max([0.5] + [r["variability"] for r in rows]))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("variability (std of confidence over checkpoints)")
    ax.set_ylabel("confidence (mean probability of the positive)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
