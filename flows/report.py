"""The run report: what went in, what was dropped and why, what the model gained.

Written as ``report.md`` and ``report.html`` (plots in ``report_files/``) in the run folder and
published as a Prefect markdown artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact

from flows.runtime import RunSpec
from storage import StageMarker
from tasks.report import bar_chart, markdown_table, render_html, s_curve

METRIC_ORDER = ("ndcg@10", "mrr@10", "recall@100")
HISTOGRAMS = 6
HISTOGRAM_DEFAULTS = ("gopher_quality.word_count", "langid.allowed_score", "gopher_quality.stop_word_count",
                      "gopher_quality.mean_word_length")
MODEL_ORDER = ("bm25", "base", "tuned")


def _section(title: str, *parts: str) -> str:
    return f"## {title}\n\n" + "\n".join(parts) + "\n"


def write_report(run: RunSpec) -> Path:
    q = run.catalog.query
    rid = [run.run_id]
    files = run.run_dir / "report_files"
    out: list[str] = []
    (r,) = q("SELECT * FROM runs WHERE run_id = ?", rid).to_pylist()
    finished = "" if r["finished_at"] is None else f", finished {r['finished_at']:%H:%M:%S}"
    out.append(f"# Refinery run {run.run_id}\n\nStatus **{r['status']}**, started "
               f"{r['started_at']:%Y-%m-%d %H:%M:%S %Z}{finished}. Outputs: `{run.run_dir}`.\n")
    out.append(_section("Accounting",
                        "Every record read is kept, dropped (with a reason) or rejected.\n",
                        markdown_table([{k: r[k] for k in ("docs_in", "docs_kept", "docs_dropped", "docs_rejected")}])))
    stages = q("SELECT stage, status, round(seconds, 1) AS seconds FROM stage_runs WHERE run_id = ? ORDER BY started_at", rid).to_pylist()
    out.append(_section("Stages", markdown_table(stages)))

    drops = q("SELECT stage, reason, count(*) AS docs FROM drops WHERE run_id = ? GROUP BY ALL ORDER BY stage, docs DESC", rid).to_pylist()
    rejects = q("SELECT reason, count(*) AS records FROM rejects WHERE run_id = ? GROUP BY reason ORDER BY records DESC", rid).to_pylist()
    out.append(_section("Drops and rejects", "**Dropped, by stage and reason**\n", markdown_table(drops),
                        "\n**Rejected records, by reason**\n", markdown_table(rejects)))

    dedup = StageMarker(run.stage_dir("dedup")).read() or {}
    if dedup:
        figures = {k: v for k, v in dedup.items() if isinstance(v, (int, float)) and not k.startswith("lsh_")}
        lsh = {k.removeprefix("lsh_"): v for k, v in dedup.items() if k.startswith("lsh_")}
        parts = [markdown_table([figures])]
        if lsh:
            png = s_curve(lsh["bands"], lsh["rows"], lsh["threshold"], files / "lsh_s_curve.png")
            parts += ["\n**LSH banding** (derived from the threshold unless set)\n", markdown_table([lsh]),
                      f"![LSH S-curve](report_files/{png.name})\n"]
        out.append(_section("Dedup", *parts))

    out.append(_quality_section(run, files))

    pairs = q("""SELECT generator, count(*) AS generated, count(*) FILTER (kept) AS kept,
                        round(avg(CASE WHEN kept THEN 1 ELSE 0 END), 3) AS keep_rate
                 FROM pairs WHERE run_id = ? GROUP BY generator ORDER BY generator""", rid).to_pylist()
    diversity = q("""SELECT model AS generator, metric, round(value, 4) AS value FROM metrics
                     WHERE run_id = ? AND stage = 'synthesize' ORDER BY model, metric""", rid).to_pylist()
    samples = q("""SELECT generator, query, doc_id, rank FROM pairs WHERE run_id = ? AND kept
                   ORDER BY hash(pair_id) LIMIT 8""", rid).to_pylist()
    out.append(_section("Synthesized pairs", markdown_table(pairs), "\n**Diversity**\n", markdown_table(diversity),
                        "\n**Sample of kept pairs**\n", markdown_table(samples)))

    models = q("SELECT name, path, base FROM models WHERE run_id = ?", rid).to_pylist()
    out.append(_section("Models", markdown_table(models)))

    metrics = q("SELECT model, metric, value FROM metrics WHERE run_id = ? AND task = 'headline'", rid).to_pylist()
    if metrics:
        table = {m: {x["model"]: x["value"] for x in metrics if x["metric"] == m} for m in METRIC_ORDER}
        rows = [{"model": model, **{m: table[m].get(model) for m in METRIC_ORDER}} for model in MODEL_ORDER
                if any(model in table[m] for m in METRIC_ORDER)]
        png = bar_chart(table, files / "evaluation.png", title="headline → article retrieval")
        out.append(_section("Evaluation: headline → article retrieval",
                            "Queries are headlines (never shown to the generator or trainer); every member of "
                            "a dedup cluster counts as relevant.\n", markdown_table(rows),
                            f"![evaluation](report_files/{png.name})\n"))

    text = "\n".join(out)
    md_path = run.run_dir / "report.md"
    md_path.write_text(text)
    (run.run_dir / "report.html").write_text(render_html(text, f"Refinery run {run.run_id}"))
    create_markdown_artifact(key="run-report", markdown=text.replace("![", "[plot: "),
                             description=f"Refinery run {run.run_id}")
    return md_path


def _quality_section(run: RunSpec, files: Path) -> str:
    """Per-rule drop counts, and histograms of the attributes behind the most frequent drops."""
    from tasks.quality import rule_thresholds
    from tasks.quality.plots import plot_attribute_histograms, plot_drop_counts

    q = run.catalog.query
    rid = [run.run_id]
    cfg = run.config.quality
    by_rule = q("SELECT reason, count(*) AS docs FROM drops WHERE run_id = ? AND stage = 'quality'"
                " GROUP BY reason ORDER BY docs DESC, reason", rid).to_pylist()
    (scored,) = q("SELECT count(DISTINCT doc_id) AS n FROM doc_attributes WHERE run_id = ?", rid).to_pylist()
    if not scored["n"]:
        return _section("Quality", "_(no documents scored)_\n")
    reasons = [r["reason"] for r in by_rule for _ in range(r["docs"])] + [None] * (scored["n"] - sum(r["docs"] for r in by_rule))
    bars = plot_drop_counts(reasons, files / "quality_drops.png")
    thresholds = rule_thresholds(cfg)
    names = list(dict.fromkeys(thresholds[r["reason"]][0] for r in by_rule if r["reason"] in thresholds))
    names = (names + [n for n in HISTOGRAM_DEFAULTS if n not in names])[:HISTOGRAMS]
    values = q("SELECT name, list(value ORDER BY doc_id) AS v FROM doc_attributes WHERE run_id = ? AND name IN ("
               + ", ".join("?" * len(names)) + ") GROUP BY name", [run.run_id, *names]).to_pylist()
    attrs = {r["name"]: r["v"] for r in values}
    pngs = plot_attribute_histograms(attrs, files / "quality", cfg=cfg, names=[n for n in names if n in attrs])
    rows = [{"rule": r["reason"], "attribute": thresholds.get(r["reason"], ("", None))[0],
             "threshold": thresholds.get(r["reason"], ("", None))[1], "docs": r["docs"]} for r in by_rule]
    return _section("Quality", f"{scored['n']} documents scored; every value is in `doc_attributes`, every drop in "
                    "`drops` (first failing rule, in family order).\n", markdown_table(rows),
                    f"![drops per rule](report_files/{bars.name})\n",
                    " ".join(f"![{p.stem}](report_files/quality/{p.name})" for p in pngs) + "\n")
