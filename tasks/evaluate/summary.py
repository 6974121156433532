"""What the evaluate stage records of its scores: ``metrics`` rows, the Prefect artifact, the stage's stats."""

from __future__ import annotations

from typing import Any

from refinery.tasks.evaluate.bootstrap import COMPARISONS
from refinery.tasks.evaluate.config import EvaluateConfig
from refinery.tasks.evaluate.fusion import HYBRID
from refinery.tasks.evaluate.query_sets import QUERY_COUNTS, describe


def metric_rows(tasks: list[str], sets: dict[str, dict[str, Any]], scores: dict[str, dict[str, dict[str, float]]]
                ) -> list[tuple[str, str, str, float]]:
    """(model, task, metric, value) per task: its query counts (model :data:`QUERY_COUNTS`), then
    each model's figures."""
    rows = []
    for task in tasks:
        rows += [(QUERY_COUNTS, task, k, float(v)) for k, v in sets[task]["counts"].items()]
        rows += [(model, task, k, v) for model, values in scores.get(task, {}).items() for k, v in values.items()]
    return rows


def evaluation_artifact(run_id: str, tasks: list[str], sets: dict[str, dict[str, Any]],
                        scores: dict[str, dict[str, dict[str, float]]], skipped: dict[str, str], *,
                        pool_docs: int, corpus_docs: int, cfg: EvaluateConfig,
                        fusion: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``table`` and ``description`` of the stage's table artifact: one row per (task, model);
    ``fusion``: the hybrid's fitted weight (:func:`tasks.evaluate.shard_tasks.fit_fusion_weight`)
    or why it was not scored (``skipped``)."""
    table = [{"task": t, "model": m, **v} for t in tasks for m, v in scores.get(t, {}).items()]
    columns = list(dict.fromkeys(k for row in table for k in row))  # the tuned/hybrid rows have the intervals too
    scored = {m for t in tasks for m in scores.get(t, {})}
    compared = [f"{model} − {other}" for model, against in COMPARISONS.items() if model in scored
                for other in against.values() if other in scored]
    description = (
        f"Run {run_id}: " + "; ".join(f"{describe(t)}, {sets[t]['counts']['scored']} queries" for t in tasks)
        + f"; over a pool of {pool_docs} of the {corpus_docs} documents of the curated corpus"
        + "".join(f"; {t} not scored: {why}" for t, why in skipped.items())
        + (f"; {' and '.join(compared)} with paired bootstrap 95% intervals ({cfg.bootstrap_samples} "
           "resamples of the queries)" if cfg.bootstrap_samples and compared else "")
        + (f"; {fusion_caption(fusion)}" if fusion else "") + ".")
    return {"table": [{c: row.get(c) for c in columns} for row in table], "description": description}


def fusion_caption(fusion: dict[str, Any]) -> str:
    """One sentence on the hybrid: its weight and the dev figures it was chosen by, or why it was not scored."""
    if "skipped" in fusion:
        return f"{HYBRID} not scored: {fusion['skipped']}"
    metric = fusion.get("metric", "ndcg@10")
    dev = [f"{fusion[f'dev_{metric}']:.4f} at that weight"]
    dev += [f"{fusion[k]:.4f} {name} alone" for k, name in ((f"dev_{metric}_tuned", "tuned"),
                                                            (f"dev_{metric}_bm25", "bm25")) if fusion.get(k) is not None]
    return (f"{HYBRID} = w × tuned + (1 − w) × bm25 of scores normalized {fusion.get('normalization', 'min-max per query')}"
            f", w = {fusion['weight']:.2f} fitted on the train stage's dev split ({fusion['dev_queries']} queries"
            + (f" ranking {fusion['dev_candidates']} training passages" if fusion.get("dev_candidates") else "")
            + f", dev {metric} {', '.join(dev)}), never on an evaluation set")


def stage_stats(tasks: list[str], sets: dict[str, dict[str, Any]], scored: dict[str, Any], skipped: dict[str, str],
                *, pool: tuple[str, list[str]], pool_docs: int, corpus_docs: int,
                corpus_of: str | None = None, fusion: dict[str, Any] | None = None,
                frozen: dict[str, Any] | None = None) -> dict[str, Any]:
    """The evaluate stage's stats (its marker, ``stage_runs.stats``): the first task's figures at
    the top, every task's under ``by_task``; ``corpus_of``: the dataset whose version was the corpus;
    ``fusion``: the hybrid's weight and dev figures, or ``{"skipped": why}``; ``frozen``: the
    dataset's frozen sets ({task: {queries, frozen_by}})."""
    scores = scored["metrics"]
    by_task = {t: {"queries": sets[t]["counts"]["scored"], "counts": sets[t]["counts"], "metrics": scores.get(t, {})}
               for t in tasks}
    first = tasks[0]
    return {"task": first, "tasks": tasks, "queries": by_task[first]["queries"], "metrics": by_task[first]["metrics"],
            "by_task": by_task, "skipped_tasks": skipped, "per_query": scored["per_query"], "pool_docs": pool_docs,
            "corpus_docs": corpus_docs, "corpus_of": corpus_of, "pool": pool[0], "pool_parts": pool[1],
            "fusion": fusion or {}, "frozen": frozen or {}}
