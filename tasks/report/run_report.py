"""The run report: what went in, what was dropped and why, what the model gained, and for a
failed run where it failed.

Written as ``report.md`` and ``report.html`` (plots in ``report_files/``) in the run folder and
published as a Prefect markdown artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact

from refinery.tasks.books import NO_CORPUS, corpus_is_empty
from refinery.tasks.budget.plan import BudgetPlan, below_minimum_line
from refinery.tasks.budget.record import budget_table
from refinery.tasks.runs import RunSpec
from refinery.storage import StageMarker
from refinery.storage.shards import write_text_atomic
from refinery.tasks.config import STAGES
from refinery.tasks.evaluate.bootstrap import COMPARISONS, INTERVAL_METRIC
from refinery.tasks.evaluate.labels import SAME_LABEL
from refinery.tasks.evaluate.query_sets import HEADLINE, QUERY_COUNTS, SYNTHETIC_HELDOUT, describe
from refinery.tasks.evaluate.summary import fusion_caption
from refinery.tasks.report.plots import REGION_COLOURS, bar_chart, data_map_chart, interval_chart, night_chart, s_curve
from refinery.tasks.report.render import markdown_table, render_html
from refinery.tasks.selection import selection_markdown
from refinery.tasks.synthesize.plan import decontamination_summary

METRIC_ORDER = ("ndcg@10", "mrr@10", "recall@100")
HISTOGRAMS = 6
# Documents whose values the histograms show (a seeded sample, the same every time).
HISTOGRAM_SAMPLE = 20_000
HISTOGRAM_DEFAULTS = ("gopher_quality.word_count", "langid.allowed_score", "gopher_quality.stop_word_count",
                      "gopher_quality.mean_word_length")
MODEL_ORDER = ("bm25", "base", "promoted", "tuned", "hybrid")
# Kept pairs the report shows as examples (chosen by a hash of their id, the same every time).
PAIR_SAMPLE = 8
# A paired interval's comparison, (model, metric name part) as tasks.evaluate.bootstrap names it:
# its label ("tuned − base") and the other model.
COMPARED = {(model, name): (f"{model} − {other}", other)
            for model, against in COMPARISONS.items() for name, other in against.items()}


def _section(title: str, *parts: str) -> str:
    return f"## {title}\n\n" + "\n".join(parts) + "\n"


def write_report(run: RunSpec, *, failed_stage: str | None = None, error: str | None = None) -> Path:
    """Write and publish the report of a finished run, or of a failed one (``failed_stage``).

    Sections cover the stages that finished; a failed run's report opens with where it failed,
    the error (``error``, else the one stored in ``runs``) and which stages finished before.
    """
    catalog = run.catalog
    files = run.run_dir / "report_files"
    markers = {stage: StageMarker(run.stage_dir(stage)).read() for stage in STAGES}
    out: list[str] = []
    r = catalog.run_record(run.run_id)
    status = "failed" if failed_stage else r["status"]
    finished = "" if r["finished_at"] is None else f", finished {r['finished_at']:%H:%M:%S}"
    out.append(f"# Refinery run {run.run_id}\n\nStatus **{status}**, started "
               f"{r['started_at']:%Y-%m-%d %H:%M:%S %Z}{finished}. Outputs: `{run.run_dir}`.\n")
    if failed_stage:
        out.append(_failure_section(run, markers, failed_stage, error or r["error"]))
    warnings = catalog.run_warnings(run.run_id)
    id_scope = (markers["ingest"] or {}).get("id_scope_warnings") or []
    if warnings or id_scope:
        out.append(_warnings_section(run, warnings, id_scope))
    quality = markers["quality"]
    if quality is not None and corpus_is_empty(quality):
        out.append(_empty_corpus_section(run, [s for s in STAGES if (markers[s] or {}).get("skipped")]))
    out.append(_section("Accounting",
                        "Every record read is kept, dropped (with a reason) or rejected"
                        + (" (figures so far: the run failed)" if failed_stage else "") + ".\n",
                        markdown_table([{k: r[k] for k in ("docs_in", "docs_kept", "docs_dropped", "docs_rejected")}])))
    out.append(_section("Stages", markdown_table(catalog.stage_timings(run.run_id))))
    budget = StageMarker(run.stage_dir("budget")).read()
    if budget is not None and budget.get("plan"):
        out.append(_budget_section(run, budget))

    drops = catalog.drops_by_stage_and_reason(run.run_id)
    rejects = catalog.rejects_by_reason(run.run_id)
    out.append(_section("Drops and rejects", "**Dropped, by stage and reason**\n", markdown_table(drops),
                        "\n**Rejected records, by reason**\n", markdown_table(rejects)))

    dedup = markers["dedup"] or {}
    if dedup:
        figures = {k: v for k, v in dedup.items() if isinstance(v, (int, float)) and not k.startswith("lsh_")}
        lsh = {k.removeprefix("lsh_"): v for k, v in dedup.items() if k.startswith("lsh_")}
        parts = [_clustering_note(dedup), markdown_table([figures])]
        if lsh:
            png = s_curve(lsh["bands"], lsh["rows"], lsh["threshold"], files / "lsh_s_curve.png")
            parts += ["\n**LSH banding** (derived from the threshold unless set)\n", markdown_table([lsh]),
                      f"![LSH S-curve](report_files/{png.name})\n"]
        out.append(_section("Dedup", *parts))

    if quality is not None and run.config.quality.semdedup.enabled:
        out.append(_section("Semantic dedup", _semdedup_note(run, quality)))
    if quality is not None:
        out.append(_quality_section(run, files))
    publish = StageMarker(run.stage_dir("publish")).read()
    if publish is not None:
        out.append(_dataset_section(run, publish, markers["ingest"] or {}))

    synth = markers["synthesize"]
    if synth is not None and not synth.get("skipped"):
        out.append(_pairs_section(run, synth))
    trained = markers["train"] or {}
    if trained.get("skipped") and trained["skipped"] != NO_CORPUS:
        out.append(_section("No model tonight", f"The train stage trained no model: {trained['skipped']}. "
                            "Evaluate scored the models it could without one; nothing was promoted.\n"))
    models = catalog.run_models(run.run_id)
    if models:
        out.append(_section("Models", markdown_table(models)))
    if trained.get("cartography") and (data_map := _data_map_section(run, files)):
        out.append(data_map)
    evaluation = markers["evaluate"]
    if evaluation is not None and not evaluation.get("skipped"):
        tasks = evaluation.get("tasks") or [evaluation.get("task", HEADLINE)]
        out.append(_evaluation_summary(run, tasks, evaluation, files))
        out += [_evaluation_section(run, task, evaluation, synth or {}, files, first=i == 0)
                for i, task in enumerate(tasks)]

    promotion = StageMarker(run.stage_dir("promote")).read()
    if promotion is not None and not promotion.get("skipped"):
        out.append(_promotion_section(run, promotion, files))

    text = "\n".join(out)
    md_path = run.run_dir / "report.md"
    write_text_atomic(text, md_path)
    write_text_atomic(render_html(text, f"Refinery run {run.run_id}"), run.run_dir / "report.html")
    create_markdown_artifact(key="run-report", markdown=text.replace("![", "[plot: "),
                             description=f"Refinery run {run.run_id} ({status})")
    return md_path


def _budget_section(run: RunSpec, budget: dict[str, Any]) -> str:
    """The plan the budget gave the model half against what its stages did."""
    plan = budget["plan"]
    rates = plan["rates"]
    llm = "".join(f", {g} {s:.2f} s a passage" for g, s in rates["llm_s_per_passage"].items())
    rows = budget_table(run.catalog.budget_plan_and_actual(run.run_id))
    return _section(
        "Budget",
        f"The model half was planned to **{plan['minutes']:g} minutes** (`budget.minutes`; "
        f"{plan['reserve_minutes']:g} of them in reserve) from rates measured at its start in "
        f"{rates['calibration_s']:.0f} s on {rates['slots']} worker slots: a training step "
        f"{rates['train_step_s']:.1f} s, {rates['encode_docs_per_s']:.0f} documents/s embedded per slot{llm}. "
        "Plan against actual (an actual the run has not reached is –; SQL: `metrics` of stage `budget`):\n",
        *([f"**{line[0].upper() + line[1:]}.**\n"] if (line := below_minimum_line(BudgetPlan.from_dict(plan))) else []),
        markdown_table(rows))


def _failure_section(run: RunSpec, markers: dict[str, Any], failed_stage: str, error: str | None) -> str:
    done = [s for s in run.config.stages if markers.get(s) is not None]
    later = [s for s in run.config.stages if markers.get(s) is None and s != failed_stage]
    return _section(
        "Failure",
        f"The run **failed in stage {failed_stage}**.\n",
        f"- finished before it: {', '.join(done) or 'none'}",
        f"- not finished: {', '.join(later) or 'none'}\n",
        "**Error**\n", f"```\n{error or '(not recorded)'}\n```\n",
        "The sections below show what the finished stages wrote. `refinery run --resume "
        f"{run.run_id}` redoes only the unfinished stages, with the config the run started with "
        f"(`runs/{run.run_id}/config.yaml`).\n",
    )


def _warnings_section(run: RunSpec, warnings: list[dict[str, Any]], id_scope: list[dict[str, Any]]) -> str:
    """Ingest's id-scope warnings (tasks/ingest/duplicates.py) and the quality drop-rate guard's
    (each rule that dropped too much, an example, the fix)."""
    parts = [_id_scope_warnings(id_scope)] if id_scope else []
    if warnings:
        parts += _quality_warnings(run, warnings)
    return _section("Warnings", *parts)


def _id_scope_warnings(id_scope: list[dict[str, Any]]) -> str:
    """The sources whose duplicate_id rejects look like ids numbered per file, with the setting."""
    rows = [{"source": w["source"], "duplicate_id rejects": w["rejects"],
             "another text, in another file": f"{w['other_file']} ({w['share']:.0%})",
             "example": f"`{w['example']}` (id first at `{w['example_first']}`)",
             "setting": ", ".join(f"`{s}: file`" for s in w["settings"])} for w in id_scope]
    return (f"**{len(id_scope)} source(s) lost records to `duplicate_id` whose text differs from the record "
            f"that kept the id, in another file** (more than {id_scope[0]['limit']:.0%} of their duplicate ids): "
            "their ids look numbered per file (as `split` or a per-shard export makes them). With "
            "`id_scope: file` a record's file is part of its identity, so each file's ids are its own: set it "
            "and run again (the records lost are in `rejects`, their text kept).\n\n" + markdown_table(rows))


def _quality_warnings(run: RunSpec, warnings: list[dict[str, Any]]) -> list[str]:
    by_source = any(w.get("source") for w in warnings)  # a run of several sources judges each apart
    rows = [{**({"source": w.get("source", "")} if by_source else {}),
             "rule": w["rule"], "dropped / reached": f"{w['dropped']} / {w['reached']} ({w['share']:.0%})",
             "example": f"`{w['example_doc_id']}`: {w['example']}" if w.get("example_doc_id") else "",
             "setting": f"`{w['setting']}` (now {w['value']})",
             "profiles that keep the example": ", ".join(w.get("profiles_that_keep") or []) or "none"}
            for w in warnings]
    limit = warnings[0]["limit"]
    return [
        f"**{len(warnings)} quality rule(s) dropped more than {limit:.0%} of the documents"
        f"{' of a source' if by_source else ''} that reached them** "
        f"(`quality.guard.max_drop_share`; reached = not dropped by an earlier rule, profile "
        f"`{warnings[0].get('profile') or run.config.quality.profile}`). The rules may not fit this corpus: "
        "read the example, then change the setting or `quality.profile` and re-decide from the stored scores "
        f"with `refinery refilter {run.run_id} -c CONFIG` (no rule is scored again).\n",
        markdown_table(rows),
    ]


def _empty_corpus_section(run: RunSpec, skipped: list[str]) -> str:
    reasons = sorted(run.catalog.drops_by_stage_and_reason(run.run_id), key=lambda r: (-r["docs"], r["reason"]))
    rejects = run.catalog.rejects_by_reason(run.run_id)
    why = ", ".join(f"{r['reason']} ({r['docs']})" for r in reasons) or "none"
    rejected = ", ".join(f"{r['reason']} ({r['records']})" for r in rejects) or "none"
    return _section(
        "No new document survived curation",
        "Every document the night read was dropped or rejected, or it read nothing new"
        + (f", so {', '.join(skipped)} recorded that they were skipped ({NO_CORPUS})" if skipped else "") + ".\n",
        f"- dropped, by reason: {why}",
        f"- rejected records, by reason: {rejected}\n",
    )


def _pairs_section(run: RunSpec, synth: dict[str, Any]) -> str:
    catalog = run.catalog
    pairs = catalog.pairs_by_generator(run.run_id)
    diversity = catalog.synthesis_diversity(run.run_id)
    samples = catalog.kept_pair_sample(run.run_id, PAIR_SAMPLE)
    held = (f"{synth.get('heldout_pairs', 0)} kept pairs of {synth.get('heldout_passages', 0)} passages are held out "
            f"for evaluation and never trained on; {synth.get('train_pairs', synth.get('kept', 0))} train.\n"
            if synth.get("evaluation_task") == SYNTHETIC_HELDOUT else
            "Every kept pair trains (the evaluation queries are the titles).\n"
            if synth.get("evaluation_task", HEADLINE) == HEADLINE else
            "Every kept pair trains (the evaluation queries are your query sets).\n")
    decontaminated, examples = decontamination_summary(synth)
    selected, groups = selection_markdown(synth.get("selection"))
    rephrasings = catalog.rephrasing_outcomes(run.run_id) if synth.get("rephrasings") else []
    wrap = ["\n**Rephrasings (WRAP)**: every attempt by style and outcome, the kept pairs of the rephrased "
            "passages, and the diversity of the kept rephrasings beside that of their originals (as shown to the "
            "generator).\n", markdown_table(rephrasings), "\n", markdown_table(catalog.rephrasing_diversity(run.run_id))]
    return _section("Synthesized pairs", held, *([selected] if selected else []),
                    *([markdown_table(groups)] if groups else []), markdown_table(pairs), "\n**Diversity**\n", markdown_table(diversity),
                    "\n**Sample of kept pairs**\n", markdown_table(samples),
                    *(["\n" + decontaminated] if decontaminated else []),
                    *([markdown_table(examples)] if examples else []),
                    *(wrap if rephrasings else []))


COUNT_LABELS = {"in_source": "queries in the set", "sampled": "sampled (evaluate.max_queries)",
                "scored": "scored", "all_relevant_dropped": "every relevant document dropped by curation",
                "not_ingested": "no relevant document among the ingested records",
                "alone_in_label": "no other pool document has its label",
                "unlabelled": "pool documents without a label (never relevant)"}


def _intervals(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(delta, low, high) per comparison (model, name) found among one task's metrics rows."""
    got = {(x["model"], x["metric"]): x["value"] for x in rows}
    out = {}
    for model, name in COMPARED:
        key = f"{INTERVAL_METRIC}_{name}"
        if all((model, k) in got for k in (key, f"{key}_ci_low", f"{key}_ci_high")):
            out[model, name] = (got[model, key], got[model, f"{key}_ci_low"], got[model, f"{key}_ci_high"])
    return out


def _interval_text(interval: tuple[float, float, float] | None) -> str | None:
    return None if interval is None else "{:+.4f} [{:+.4f}, {:+.4f}]".format(*interval)


def _interval_columns(models: set[str]) -> dict[tuple[str, str], str]:
    """The table column of each comparison whose two models are among ``models``."""
    return {key: f"{label} (95% CI)" for key, (label, other) in COMPARED.items() if key[0] in models and other in models}


def _evaluation_summary(run: RunSpec, tasks: list[str], evaluation: dict[str, Any], files: Path) -> str:
    """Every task's nDCG@10 per model with the paired intervals (tuned − base, tuned − bm25,
    hybrid − tuned, hybrid − bm25), as a table and a plot; the hybrid's weight; and the tasks
    that could not be scored, with why."""
    rows = run.catalog.evaluation_metrics(run.run_id)
    values, intervals, scored_queries = {}, {}, {}
    for task in tasks:
        mine = [x for x in rows if x["task"] == task]
        ndcg = {x["model"]: x["value"] for x in mine if x["metric"] == INTERVAL_METRIC and x["model"] in MODEL_ORDER}
        if not ndcg:
            continue
        scored_queries[task] = next((int(x["value"]) for x in mine
                                     if x["model"] == QUERY_COUNTS and x["metric"] == "scored"), None)
        values[task], intervals[task] = ndcg, _intervals(mine)
    models = [m for m in MODEL_ORDER if any(m in v for v in values.values())]
    columns = _interval_columns(set(models))
    table = [{"task": task, "queries": scored_queries[task], **{m: values[task].get(m) for m in models},
              **{col: _interval_text(intervals[task].get(key)) for key, col in columns.items()}} for task in values]
    samples = run.config.evaluate.bootstrap_samples
    parts = [f"{INTERVAL_METRIC} of every task and model. A difference's interval is a paired bootstrap: "
             f"{samples} resamples of the task's queries with replacement (seeded by `evaluate.seed`), the "
             "2.5th and 97.5th percentiles of the mean per-query difference; an interval wholly above 0 is a "
             "gain the queries bear out, not one a few lucky queries made. Per-query figures: "
             "`evaluate/per_query-<task>.parquet` in the run folder.\n" if samples else
             f"{INTERVAL_METRIC} of every task and model (`evaluate.bootstrap_samples` is 0: no intervals).\n"]
    fusion = evaluation.get("fusion") or {}
    if fusion and "skipped" not in fusion:
        parts.append(f"The {fusion_caption(fusion)} (metric `fusion_weight` of model `hybrid`): the weight to "
                     "deploy the hybrid with.\n")
    if table:
        png = interval_chart({t: values[t] for t in values},
                             {t: {COMPARED[key][0]: iv for key, iv in ivs.items()} for t, ivs in intervals.items()},
                             files / "evaluation_intervals.png", metric=INTERVAL_METRIC)
        parts += [markdown_table(table), f"![{INTERVAL_METRIC} with paired bootstrap intervals](report_files/{png.name})\n"]
    else:
        parts.append("_No task could be scored._\n")
    parts += _precision_lines(intervals, scored_queries, evaluation)
    for task, why in (evaluation.get("skipped_tasks") or {}).items():
        parts.append(f"- `{task}` ({describe(task)}) was not scored: {why}.")
    if "skipped" in fusion:
        parts.append(f"- Model `hybrid` (BM25 + tuned) was not scored: {fusion['skipped']}.")
    return _section("Evaluation summary", *parts)


def _precision_lines(intervals: dict[str, dict[tuple[str, str], tuple[float, float, float]]],
                     scored: dict[str, int | None], evaluation: dict[str, Any]) -> list[str]:
    """Per task: how many queries decide it, the width of its tuned − base interval (a difference
    smaller than about half of it is no verdict), and whether the set is the dataset's frozen one."""
    frozen, dataset, lines = evaluation.get("frozen") or {}, evaluation.get("corpus_of"), []
    for task in intervals:
        line = f"- `{task}`: {scored.get(task)} queries"
        if (gain := intervals[task].get(("tuned", "delta"))) is not None:
            line += f"; the tuned − base interval is {gain[2] - gain[1]:.4f} wide"
        if task in frozen:
            line += (f"; the frozen evaluation set of dataset `{dataset}` ({frozen[task]['queries']} queries, frozen "
                     f"by night `{frozen[task]['frozen_by']}`): every night of the dataset is scored on it, and none "
                     "trains on its queries" + (" or their passages" if task == SYNTHETIC_HELDOUT else ""))
        lines.append(line + ".")
    return lines


def _evaluation_section(run: RunSpec, task: str, evaluation: dict[str, Any], synth: dict[str, Any], files: Path,
                        *, first: bool) -> str:
    """One task's section: what its queries are, how many were scored (and why not the others), the figures."""
    rows_all = run.catalog.evaluation_metrics(run.run_id, task)
    counts = {x["metric"]: int(x["value"]) for x in rows_all if x["model"] == QUERY_COUNTS}
    metrics = [x for x in rows_all if x["model"] != QUERY_COUNTS]
    table = {m: {x["model"]: x["value"] for x in metrics if x["metric"] == m} for m in METRIC_ORDER}
    intervals = _intervals(metrics)
    models = [model for model in MODEL_ORDER if any(model in table[m] for m in METRIC_ORDER)]
    columns = _interval_columns(set(models)) if intervals else {}
    rows = [{"model": model, **{m: table[m].get(model) for m in METRIC_ORDER},
             **{col: _interval_text(intervals.get(key)) if key[0] == model else None for key, col in columns.items()}}
            for model in models]
    cfg = run.config.evaluate
    sources = {s.name: s for s in cfg.queries}
    if task == HEADLINE:
        about = ("Queries are headlines (never shown to the generator or trainer); every kept member of "
                 "the headline's dedup cluster counts as relevant.\n")
    elif task == SYNTHETIC_HELDOUT:
        why = ("The corpus had no titles, so evaluation used held-out synthetic pairs"
               if cfg.task == "auto" else
               "`evaluate.task` is `synthetic_heldout`, so evaluation used held-out synthetic pairs")
        scored = (evaluation.get("by_task") or {}).get(task, {}).get("queries", evaluation.get("queries"))
        frozen = (evaluation.get("frozen") or {}).get(task)
        held = (f"the {frozen['queries']} frozen by night `{frozen['frozen_by']}` from the passages it held out"
                if frozen else f"the {synth.get('heldout_passages', '?')} passages held out")
        sizing = (f"`synthesize.heldout_passages` {run.config.synthesize.heldout_passages} drawn besides the training "
                  f"passages, at most `heldout_fraction` {run.config.synthesize.heldout_fraction} of the corpus")
        about = (f"{why}: {scored} queries of {held} from training ({sizing}; by passage: no held-out passage is "
                 "trained on). Each query's document and the kept members of its "
                 "dedup cluster are relevant; a query that occurs verbatim in its document (inverse cloze) is cut "
                 "from it first. The queries passed the base model's consistency filter, which favours the base "
                 "model.\n")
    elif task == SAME_LABEL:
        about = ("Each query is a labelled document of the evaluation pool (`documents.label`, from each source's "
                 "`label_field`; a folder of text files: its subfolder), sampled by a seeded hash of its id; every "
                 "other pool document with the same label is relevant, and the query document is left out of its "
                 "ranking. Dense models query with their embedding of the document from the pool (nothing is "
                 "embedded again), BM25 with its text. A label has many documents, so nDCG@10 here is close to a "
                 "rank-discounted precision@10 and Recall@100 is at most 100 over the label's size: compare the "
                 "models, not the tasks.\n")
    else:
        source = sources.get(task)
        where = (f"`{source.path}`" + (f" (qrels split `{source.split}`)" if source.format in ("auto", "beir")
                                       and Path(source.path).expanduser().is_dir() else "")) if source else "the set"
        restricted = f" of ingest source `{source.source}`" if source and source.source else ""
        about = (f"Your queries and judgements from {where}. A judged record id (relevance > 0) is matched to "
                 f"`documents.record_id`{restricted}; the kept members of that document's dedup cluster are "
                 "relevant. A query none of whose relevant documents survived curation is counted, not scored.\n")
    pool = evaluation.get("pool_docs")
    if first and pool is not None:
        of = f" of dataset `{evaluation['corpus_of']}` as this night published it" if evaluation.get("corpus_of") else ""
        about += (f"\nEvery task ranks the same pool of {pool} of the {evaluation.get('corpus_docs', '?')} curated "
                  f"documents{of} (`evaluate.pool_docs` {cfg.pool_docs}: every relevant document of the scored queries "
                  "plus seeded random distractors; the whole corpus when smaller), for every model.\n")
    parts = [about]
    if counts:
        names = COUNT_LABELS | ({"in_source": "labelled pool documents"} if task == SAME_LABEL else {})
        parts.append(markdown_table([{names.get(k, k): v for k, v in counts.items()}]))
    if rows:
        name = "evaluation.png" if first else f"evaluation-{task}.png"
        png = bar_chart(table, files / name, title=describe(task))
        parts += ["", markdown_table(rows), f"![evaluation](report_files/{png.name})\n"]
    else:
        parts.append("\n_No query of this set could be scored._\n")
    return _section(f"Evaluation: {describe(task)}", *parts)


def _dataset_section(run: RunSpec, publish: dict[str, Any], ingest: dict[str, Any]) -> str:
    """What the night did to its dataset: the version it published (or why none), its input files by
    status, what it retired and why, and the dataset's latest versions."""
    dataset = publish["dataset"]
    catalog = run.catalog
    inputs = ingest.get("input_files") or {}
    seen = ", ".join(f"{n} {status}" for status, n in sorted(inputs.items())) or "none"
    if not publish.get("published"):
        head = f"No new version of dataset **{dataset}**: {publish.get('why', 'nothing to publish')}."
    else:
        head = (f"Version `{publish['version']}` of dataset **{dataset}**: {publish['docs_added']} documents added, "
                f"{publish['docs_retired']} retired, {publish['docs_total']} in the dataset.")
    parts = [head + f" Input files: {seen}.\n"]
    parts += [f"- **Warning:** {w['message']}" for w in publish.get("id_reuse") or []]
    if publish.get("published") and publish["docs_retired"]:
        parts += ["**Retired, by reason**\n", markdown_table(catalog.retired_by_reason(dataset, publish["version"]))]
    versions = catalog.dataset_versions_of(dataset)[-10:]
    if versions:
        parts += ["\n**Latest versions** (`SELECT * FROM curated_at('" + dataset + "', version)` reads one)\n",
                  markdown_table([{k: v for k, v in row.items() if k != "seq"} for row in versions])]
    return _section("Dataset", *parts)


def _semdedup_note(run: RunSpec, quality: dict[str, Any]) -> str:
    eps = run.config.quality.semdedup.epsilon
    return (f"The quality stage dropped **{quality.get('semdedup_dropped', 0):,}** of the documents its rules kept "
            f"as semantic near-duplicates (cosine above {1 - eps:.2f} to a kept document of the same k-means "
            "cluster; reason `semdedup`). Each is filed under the document kept in its stead: "
            "`SELECT cluster_id AS kept, doc_id, cosine FROM dedup_clusters WHERE kind = 'semantic' AND NOT is_survivor`.\n")


def _clustering_note(dedup: dict[str, Any]) -> str:
    """What the near-duplicate clusters mean, with the figures that show chaining if it is back."""
    clustering = dedup.get("clustering")
    if clustering is None:
        return ""
    note = (f"Near-duplicate clusters: **{clustering}** "
            + ("(each near drop is a verified pair with the survivor it is filed under)" if clustering == "star"
               else "(connected components: a chain of pairs is one cluster)")
            + f"; the largest cluster holds **{dedup.get('largest_cluster', 0):,}** documents.")
    if "near_survivor_jaccard_median" in dedup:
        note += (" Near drops' estimated Jaccard with their survivor: min {near_survivor_jaccard_min:.2f}, "
                 "p10 {near_survivor_jaccard_p10:.2f}, median {near_survivor_jaccard_median:.2f}.").format(**dedup)
        threshold = dedup.get("lsh_threshold")
        if threshold is not None and dedup["near_survivor_jaccard_min"] < threshold:
            note += (f" **Some near drops share less than the threshold ({threshold}) with their survivor**: "
                     "they were dropped through a chain of pairs; `dedup.clustering: star` files each drop "
                     "under a document it nearly duplicates.")
    return note + "\n"


def _quality_section(run: RunSpec, files: Path) -> str:
    """Per-rule drop counts, and histograms of the attributes behind the most frequent drops."""
    from refinery.tasks.quality import rule_thresholds
    from refinery.tasks.quality.plots import plot_attribute_histograms, plot_drop_counts

    catalog = run.catalog
    cfg = run.config.quality
    by_rule = catalog.drops_by_reason(run.run_id, "quality")
    scored = catalog.scored_documents(run.run_id)
    if not scored:
        return _section("Quality", "_(no documents scored)_\n")
    bars = plot_drop_counts({r["reason"]: r["docs"] for r in by_rule}, scored, files / "quality_drops.png")
    thresholds = rule_thresholds(cfg)
    names = list(dict.fromkeys(thresholds[r["reason"]][0] for r in by_rule if r["reason"] in thresholds))
    names = (names + [n for n in HISTOGRAM_DEFAULTS if n not in names])[:HISTOGRAMS]
    # histograms of a seeded sample of documents: the flow process never holds a value per document
    attrs = catalog.attribute_sample(run.run_id, names, HISTOGRAM_SAMPLE)
    pngs = plot_attribute_histograms(attrs, files / "quality", cfg=cfg, names=[n for n in names if n in attrs])
    rows = [{"rule": r["reason"], "attribute": thresholds.get(r["reason"], ("", None))[0],
             "threshold": thresholds.get(r["reason"], ("", None))[1], "docs": r["docs"]} for r in by_rule]
    sampled = (f" Histograms show a sample of {HISTOGRAM_SAMPLE} documents." if scored > HISTOGRAM_SAMPLE else "")
    return _section("Quality", f"{scored} documents scored, decided under rule profile `{cfg.profile}` "
                    "(`quality.profile`); every value is in `doc_attributes`, every drop in "
                    f"`drops` (first failing rule, in family order).{sampled}\n", markdown_table(rows),
                    f"![drops per rule](report_files/{bars.name})\n",
                    " ".join(f"![{p.stem}](report_files/quality/{p.name})" for p in pngs) + "\n")


def _data_map_section(run: RunSpec, files: Path) -> str | None:
    """The training's data map of its pairs (``pair_map``), plotted with its counts per region, and the
    pairs an earlier map left out of this training (``pair_drops``)."""
    cfg = run.config.train.cartography
    parts = []
    if rows := run.catalog.pair_map(run.run_id):
        counts = {r: sum(1 for row in rows if row["region"] == r) for r in REGION_COLOURS}
        png = data_map_chart(rows, files / "data_map.png", hard_max_confidence=cfg.hard_max_confidence,
                             ambiguous_min_variability=cfg.ambiguous_min_variability,
                             title=f"data map: {len(rows)} training pairs over {rows[0]['checkpoints']} checkpoints")
        parts += [f"{len(rows)} training pairs mapped (`train.cartography`): at each dev scoring, the model's "
                  "probability of each pair's positive among its hard negative and other pairs' positives. "
                  f"`hard_to_learn`: confidence under {cfg.hard_max_confidence:g} and variability under "
                  f"{cfg.ambiguous_min_variability:g}; `ambiguous`: variability from "
                  f"{cfg.ambiguous_min_variability:g}. Every pair is a row of `pair_map`.\n",
                  markdown_table([{"region": r, "pairs": n} for r, n in counts.items()]),
                  f"![data map](report_files/{png.name})\n"]
    if drops := run.catalog.pair_drops_by_reason(run.run_id):
        parts += ["**Left out of this training** (`pair_drops`: an earlier map put them in `hard_to_learn`)\n",
                  markdown_table(drops)]
    return _section("Training data map", *parts) if parts else None


def _promotion_section(run: RunSpec, promotion: dict[str, Any], files: Path) -> str:
    """The gate's decision on the night's model and the dataset's nights so far, plotted."""
    dataset = promotion["dataset"]
    where = (f" It is now the dataset's promoted model: `{promotion['path']}` (with `onnx/` and a model card)."
             if promotion.get("path") else "")
    nights = run.catalog.promotion_history(dataset)
    parts = [f"The promotion gate (`train.promotion`) on dataset `{dataset}`: {promotion['reason']}.{where}\n"]
    if nights:
        png = night_chart(nights, files / "nights.png",
                          title=f"dataset {dataset}: nDCG@10 on the task each night's gate decided on")
        parts += [markdown_table(nights), "\nEach night is scored on its own evaluation set, with the models it "
                  "compares; a night's figure is comparable with its base model's, not across nights.\n",
                  f"![nDCG@10 night over night](report_files/{png.name})\n"]
    return _section("Promotion", *parts)
