"""ablate: what curation and each generator are worth, measured as runs (``refinery ablate``).

Three comparisons, each a set of variants. ``curation``: the same synthesize/train/evaluate on the
curated corpus (``curated``) and on every ingested document (``uncurated``,
``synthesize.corpus: uncurated``). ``generators``: each of ``synthesize.generators`` alone
(``<generator>_only``) and all of them (``mix``). ``hard_negatives``: training on (query, passage)
pairs (``no_hard_negatives``) vs on triplets with a mined hard negative (``hard_negatives``:
``synthesize.hard_negatives``), on the same pairs.

Every variant is its own run started from the reference run's curation, as ``refinery run
--from-run`` does (linked, not redone), so all of them are evaluated on the same query sets and
pool. A variant first synthesizes; then every variant of a comparison trains on the same number of
pairs (``train.max_pairs``: the comparison's smallest count of kept training pairs, a seeded
choice) and so the same steps, and is evaluated. The results go to the reference run: ``metrics``
rows of stage 'ablate' (model: the variant), ``ablation.md`` beside its report, and artifacts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from refinery.flows.evaluate import SYNTHETIC_HELDOUT, describe
from refinery.flows.nightly import check_deployment_config, prepare_run, run_chain
from refinery.flows.runtime import RunSpec, dask_cluster
from refinery.storage import DataHome, StageMarker, read_shard
from refinery.tasks.config import CURATION_STAGES, STAGES, RefineryConfig, dump_config, load_config, parse_config
from refinery.tasks.evaluate.bootstrap import INTERVAL_METRIC, TUNED, paired_bootstrap
from refinery.tasks.report import markdown_table

CURATION = "curation"
GENERATORS = "generators"
HARD_NEGATIVES = "hard_negatives"
COMPARISONS = (CURATION, GENERATORS, HARD_NEGATIVES)
ABLATE = "ablate"
MIX = "mix"
# The variant each other variant of a comparison is measured against (paired bootstrap).
BASELINES = {CURATION: "curated", GENERATORS: "inverse_cloze_only", HARD_NEGATIVES: "no_hard_negatives"}
# `metrics` rows of each variant's training budget (task 'train').
TRAIN_TASK = "train"
TRAIN_PAIRS_SQL = ("SELECT count(*) AS n FROM pairs WHERE run_id = ? AND kept"
                   " AND coalesce(split, 'train') = 'train'")
EVALUATION_SQL = ("SELECT task, model, metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate'"
                  " AND model IN ('base', 'bm25', 'tuned') AND metric LIKE 'ndcg@10%'")


def plan(config: RefineryConfig, only: str | None = None) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """comparison → variant → config section (``synthesize``, ``train``) → its overrides."""
    if only is not None and only not in COMPARISONS:
        raise ValueError(f"--only must be one of {', '.join(COMPARISONS)}, got {only!r}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if only in (None, CURATION):
        out[CURATION] = {"curated": {"synthesize": {"corpus": "curated"}},
                         "uncurated": {"synthesize": {"corpus": "uncurated"}}}
    if only in (None, GENERATORS):
        generators = config.synthesize.generators
        if len(generators) < 2:
            if only == GENERATORS:
                raise ValueError(f"the generator ablation needs two or more synthesize.generators, got {generators}")
        else:
            out[GENERATORS] = {f"{g}_only": {"synthesize": {"generators": [g]}} for g in generators} | {MIX: {}}
    if only in (None, HARD_NEGATIVES):
        out[HARD_NEGATIVES] = {
            name: {"synthesize": {"hard_negatives": on}}
            for name, on in (("no_hard_negatives", False), ("hard_negatives", True))}
    return out


def _variant_config(config: RefineryConfig, overrides: dict[str, dict[str, Any]]) -> RefineryConfig:
    data = config.model_dump(mode="json")
    return parse_config({**data, "stages": list(STAGES),
                         **{section: {**data[section], **values} for section, values in overrides.items()}},
                        "an ablation variant")


def _synthesize(config: RefineryConfig, reference: str, address: str) -> RunSpec:
    """A new run from ``reference``'s curation, through synthesize."""
    run = prepare_run(config, stages=[*CURATION_STAGES, "synthesize"], from_run=reference)
    run_chain(run, address)
    task = StageMarker(run.stage_dir("synthesize")).read().get("evaluation_task")
    if task == SYNTHETIC_HELDOUT:
        raise ValueError("an ablation compares variants on the same queries; held-out synthetic pairs differ per "
                         "variant: give the documents titles, or evaluate.queries with evaluate.task 'none'")
    return run


def _train_and_evaluate(run: RunSpec, max_pairs: int, address: str) -> RunSpec:
    """The variant's train and evaluate, on ``max_pairs`` training pairs (set in its config first)."""
    config = parse_config({**(data := run.config.model_dump(mode="json")),
                           "train": {**data["train"], "max_pairs": max_pairs}}, "an ablation variant")
    (run.run_dir / "config.yaml").write_text(dump_config(config))  # train has not run: nothing to invalidate
    run = prepare_run(config, run_id=run.run_id, stages=list(STAGES))
    run_chain(run, address)
    return run


def _results(run: RunSpec) -> dict[str, Any]:
    train = StageMarker(run.stage_dir("train")).read()
    evaluation = StageMarker(run.stage_dir("evaluate")).read()
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for r in run.catalog.query(EVALUATION_SQL, [run.run_id]).to_pylist():
        metrics.setdefault(r["task"], {}).setdefault(r["model"], {})[r["metric"]] = r["value"]
    per_query = {}
    for task, path in (evaluation.get("per_query") or {}).items():
        table = read_shard(path).to_pylist()
        per_query[task] = ([r["query"] for r in table if r["model"] == TUNED],
                           np.array([r[INTERVAL_METRIC] for r in table if r["model"] == TUNED]))
    return {"run_id": run.run_id, "pairs": train["examples"], "train_pairs": train.get("train_pairs"),
            "steps": train.get("steps"), "with_negatives": train.get("with_negatives"), "metrics": metrics,
            "per_query": per_query}


def _rows(comparison: str, variants: dict[str, dict[str, Any]], samples: int, seed: int) -> list[dict[str, Any]]:
    """One row per (variant, task): tuned nDCG@10, its interval over base, and over the comparison's baseline."""
    baseline = variants.get(BASELINES[comparison])
    rows = []
    for name, v in variants.items():
        for task, models in v["metrics"].items():
            tuned = models.get(TUNED, {})
            row = {"comparison": comparison, "variant": name, "run_id": v["run_id"], "task": task,
                   "pairs": v["pairs"], "train_pairs": v["train_pairs"], "steps": v["steps"],
                   "with_negatives": v["with_negatives"],
                   "base_ndcg@10": models.get("base", {}).get(INTERVAL_METRIC),
                   "bm25_ndcg@10": models.get("bm25", {}).get(INTERVAL_METRIC),
                   "ndcg@10": tuned.get(INTERVAL_METRIC)}
            for key in ("delta", "delta_ci_low", "delta_ci_high"):
                row[f"ndcg@10_{key}"] = tuned.get(f"{INTERVAL_METRIC}_{key}")
            if baseline is not None and name != BASELINES[comparison] and samples:
                mine, theirs = v["per_query"].get(task), baseline["per_query"].get(task)
                if mine and theirs and mine[0] == theirs[0]:  # the same queries in the same order
                    iv = paired_bootstrap(mine[1], theirs[1], samples=samples, seed=seed)
                    row |= {"ndcg@10_vs_baseline": iv.delta, "ndcg@10_vs_baseline_ci_low": iv.low,
                            "ndcg@10_vs_baseline_ci_high": iv.high}
            rows.append(row)
    return rows


METRIC_COLUMNS = ("pairs", "train_pairs", "steps", "ndcg@10", "ndcg@10_delta", "ndcg@10_delta_ci_low",
                  "ndcg@10_delta_ci_high", "ndcg@10_vs_baseline", "ndcg@10_vs_baseline_ci_low",
                  "ndcg@10_vs_baseline_ci_high")


def _store(reference: RunSpec, rows: list[dict[str, Any]]) -> None:
    """The ``metrics`` rows of each variant (stage 'ablate', model the variant): its budget under task
    'train', its figures under each evaluation task. A variant measured again replaces its rows."""
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        out = [(TRAIN_TASK, k, mine[0][k]) for k in ("pairs", "train_pairs", "steps", "with_negatives")
               if mine[0].get(k) is not None]
        out += [(r["task"], k, r[k]) for r in mine for k in METRIC_COLUMNS[3:] if r.get(k) is not None]
        reference.catalog.replace("metrics", reference.run_id, where={"stage": ABLATE, "model": variant},
                                  rows=pa.table({"stage": [ABLATE] * len(out), "model": [variant] * len(out),
                                                 "task": [t for t, _, _ in out], "metric": [m for _, m, _ in out],
                                                 "value": [float(v) for _, _, v in out]}))


def _interval(row: dict[str, Any], key: str) -> str:
    if row.get(key) is None:
        return ""
    return "{:+.4f} [{:+.4f}, {:+.4f}]".format(row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"])


def _merged(reference: RunSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """These rows and those of the reference's earlier ablations of other comparisons (``ablation.json``)."""
    path = reference.run_dir / "ablation.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    measured = {r["comparison"] for r in rows}
    merged = [r for r in earlier if r["comparison"] not in measured] + rows
    path.write_text(json.dumps(merged, indent=1))
    return merged


def _report(reference: RunSpec, rows: list[dict[str, Any]]) -> Path:
    """``ablation.md`` beside the reference run's report: one table per comparison and task."""
    out = [f"# Ablations of run {reference.run_id}\n",
           "Every variant is a run started from this run's curation, trained on the same number of pairs as the "
           "other variants of its comparison (a seeded choice of the smallest variant's kept training pairs) and "
           "evaluated on the same queries and pool. Intervals: paired bootstrap 95% over the queries.\n"]
    titles = {CURATION: "Curation: curated vs uncurated corpus",
              GENERATORS: "Generators: each alone vs the mix",
              HARD_NEGATIVES: "Hard negatives: pairs vs triplets with a mined negative"}
    for comparison in dict.fromkeys(r["comparison"] for r in rows):
        mine = [r for r in rows if r["comparison"] == comparison]
        out.append(f"## {titles[comparison]}\n")
        for task in dict.fromkeys(r["task"] for r in mine):
            table = [{"variant": r["variant"], "run": r["run_id"], "pairs": r["pairs"], "steps": r["steps"],
                      "nDCG@10": r["ndcg@10"], "tuned − base": _interval(r, "ndcg@10_delta"),
                      f"variant − {BASELINES[comparison]}": _interval(r, "ndcg@10_vs_baseline")}
                     for r in mine if r["task"] == task]
            base = next((r["base_ndcg@10"] for r in mine if r["task"] == task), None)
            bm25 = next((r["bm25_ndcg@10"] for r in mine if r["task"] == task), None)
            out.append(f"**{describe(task)}** (base {base:.4f}" + (f", BM25 {bm25:.4f}" if bm25 is not None else "")
                       + ")\n" if base is not None else f"**{describe(task)}**\n")
            out.append(markdown_table(table))
    text = "\n".join(out)
    path = reference.run_dir / "ablation.md"
    path.write_text(text)
    create_markdown_artifact(key="ablation-report", markdown=text, description=f"Ablations of run {reference.run_id}")
    columns = list(dict.fromkeys(k for r in rows for k in r))  # only compared variants have the _vs_baseline ones
    create_table_artifact(key="ablation", table=[{c: r.get(c) for c in columns} for r in rows],
                          description=f"Ablations of run {reference.run_id}: tuned nDCG@10 per variant, with paired "
                                      "intervals over base and over the comparison's baseline variant.")
    return path


@flow(name="ablate", log_prints=True)
def ablate_flow(config_path: str | None = None, from_run: str | None = None, only: str | None = None,
                dask_address: str | None = None) -> dict[str, Any]:
    """The ablations of ``from_run``'s curation (without it: a curation-only run made first) under the
    config's synthesize/train/evaluate. Returns the rows and the report's path."""
    check_deployment_config(config_path)
    logger = get_run_logger()
    config = load_config(config_path)
    comparisons = plan(config, only)
    if not comparisons:
        raise ValueError("nothing to ablate: the generator ablation needs two or more synthesize.generators "
                         "and --only excluded the curation one")
    home = DataHome.resolve(config.home)
    with home.run_lock("an ablation"), dask_cluster(config.dask, dask_address) as address:
        if from_run is None:
            curation = prepare_run(config, stages=list(CURATION_STAGES))
            run_chain(curation, address)
            from_run = curation.run_id
        reference = RunSpec(run_id=from_run, home=str(home.root),
                            config=load_config(home.run_dir(from_run) / "config.yaml"))
        runs = {c: {name: _synthesize(_variant_config(config, o), from_run, address) for name, o in variants.items()}
                for c, variants in comparisons.items()}
        rows = []
        for comparison, variants in runs.items():
            budget = {name: run.catalog.query(TRAIN_PAIRS_SQL, [run.run_id]).to_pylist()[0]["n"]
                      for name, run in variants.items()}
            if (empty := [n for n, k in budget.items() if not k]):
                raise ValueError(f"ablation variant(s) {', '.join(empty)} kept no training pair: give synthesize "
                                 "more passages")
            cap = min(budget.values())
            logger.info("ablation %s: kept training pairs %s; each variant trains on %d", comparison, budget, cap)
            results = {name: _results(_train_and_evaluate(run, cap, address)) for name, run in variants.items()}
            rows += _rows(comparison, results, config.evaluate.bootstrap_samples, config.evaluate.seed)
        _store(reference, rows)
        path = _report(reference, _merged(reference, rows))
    return {"run_id": from_run, "rows": rows, "report": str(path)}
