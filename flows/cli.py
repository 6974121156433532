"""The `refinery` command line.

Every error Refinery raises on purpose (:mod:`refinery.tasks.exceptions`) ends a command with its
message on stderr (one line; a config with several problems, a line each), no traceback, and the
exit code of its branch of the error tree (``EXIT_CODES``; also in ``refinery --help``):

    code  error (refinery.tasks.exceptions)              what to do
    0     -                                              (done)
    1     RefineryError, AccountingError, anything else  read the message (a run's is also in its report)
          DropRateError (quality.guard.action: fail)     refilter the run (the message says how), then --resume
    2     ConfigError; Click's usage errors              fix the config file or the command line
    3     InputError: QuerySetError, RefilterError       fix what the command was asked to read
    4     CatalogError, HomeBusyError                    fix the SQL, or wait for the run holding the home
    5     ClusterError: WorkerPreflightError             fix the Dask cluster (reachable, workers, Refinery)
    6     ModelError: GenerationError, OnnxExportError   fix the model or the LLM endpoint
"""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

import refinery.flows  # noqa: F401  (sets Prefect's offline defaults before Prefect is imported)
from refinery.storage import Catalog, DataHome
from refinery.storage.exports import DEFAULT_ROWS_PER_SHARD
from refinery.tasks.books import NO_CORPUS
from refinery.tasks.budget.config import DEFAULT_NIGHTLY_MINUTES
from refinery.tasks.selection import DEFAULT_TEMPERATURE, SelectionConfig
from refinery.tasks.config import RefineryConfig, config_reference, dump_config, load_config, parse_config
from refinery.tasks.exceptions import (
    CatalogError,
    ClusterError,
    ConfigError,
    HomeBusyError,
    InputError,
    ModelError,
    RefineryError,
)

# The exit code of each branch of the error tree (the table in this module's docstring); a class
# takes the code of its nearest listed ancestor, anything else exits 1.
EXIT_CODES: dict[type[BaseException], int] = {
    ConfigError: 2, InputError: 3, CatalogError: 4, ClusterError: 5, ModelError: 6}
EXIT_HELP = ("Exit codes: 0 done; 1 failed (see the message); 2 config or usage error; 3 input error (a query set, "
             "a run that cannot be refiltered); 4 catalog error or the data home busy; 5 Dask cluster error; "
             "6 model or LLM endpoint error.")

# piped output is not wrapped at 80 columns: tables stay one row per line
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def exit_code(exc: BaseException) -> int:
    """The exit code of ``exc``'s branch of the error tree; 1 for anything else."""
    return next((EXIT_CODES[c] for c in type(exc).__mro__ if c in EXIT_CODES), 1)


def _fail(exc: BaseException, doing: str = "") -> typer.Exit:
    """Print ``exc``'s message (after ``doing``: what failed), no traceback, and give the Exit to raise.

    A message is one line, but for a config with several problems (a line each) or SQL that DuckDB
    points into (its own lines).
    """
    message = str(exc).strip() or type(exc).__name__
    err.print(escape(f"{doing}: {message}" if doing else message), style="red", soft_wrap=True, highlight=False)
    return typer.Exit(exit_code(exc))


class _Commands(TyperGroup):
    """Every command: a RefineryError ends it with one line and its exit code, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RefineryError as exc:
            raise _fail(exc) from None


app = typer.Typer(
    cls=_Commands,
    help="Refinery: raw text in; a deduplicated, quality-filtered corpus and a domain-tuned "
    "embedding model out, every decision queryable in SQL.",
    epilog=EXIT_HELP,
    no_args_is_help=True,
    add_completion=False,
)


class Overlap(str, Enum):
    wait = "wait"
    skip = "skip"


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _config(path: Optional[Path]) -> RefineryConfig:
    """The validated config (a ConfigError, naming the bad key, exits 2)."""
    return load_config(path)


def _home(cfg: RefineryConfig) -> DataHome:
    return DataHome.resolve(cfg.home, cfg.catalog)


def _home_is_free(cfg: RefineryConfig) -> None:
    """Refuse at once, before a flow starts (and logs the error with a traceback), when another
    process holds the data home's run lock; the flow still takes the lock itself."""
    home = _home(cfg)
    holder = home.lock_holder()
    if holder is not None:
        raise HomeBusyError(f"{holder} is running in {home.root}; wait for it to finish, or use another data home")


def _catalog(config: Optional[Path]) -> Catalog:
    return Catalog(_home(_config(config)).catalog_path)


def _print_rows(rows: list[dict], fmt: Format, title: str | None = None) -> None:
    if fmt is Format.json:
        sys.stdout.write(json.dumps(rows, default=str, indent=2) + "\n")
    elif fmt is Format.csv:
        if rows:
            # "\n", not the csv module's "\r\n": a shell reading `$(refinery sql -f csv ...)` gets no stray "\r"
            w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    else:
        table = Table(title=title)
        for col in rows[0] if rows else ["(no rows)"]:
            table.add_column(str(col))
        for row in rows:
            table.add_row(*(f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row.values()))
        console.print(table)


@app.command()
def run(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file (default: bundled BBC corpus)."),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="Existing Dask scheduler, e.g. tcp://host:8786."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Run id of a killed run to finish."),
    stages: Optional[str] = typer.Option(None, "--stages", help="Comma-separated stages, a prefix of the chain "
                                         "(e.g. ingest,dedup,quality to curate only); default: the config's."),
    from_run: Optional[str] = typer.Option(None, "--from-run", help="Start a new run from this run's curated corpus: "
                                           "its finished ingest/dedup/quality are reused (linked, not redone)."),
) -> None:
    """Run the nightly flow: ingest → dedup → quality → synthesize → train → evaluate."""
    cfg = _config(config)
    chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    if chosen is not None:
        parse_config({**cfg.model_dump(mode="json"), "stages": chosen}, "--stages")
    _home_is_free(cfg)
    from refinery.flows.nightly import nightly

    try:
        stats = nightly(config_path=str(config) if config else None, dask_address=dask_address, run_id=resume,
                        stages=chosen, from_run=from_run)
    except Exception as exc:  # the flow logged the traceback; the run's row and report hold the error
        sys.stderr.write(f"\nrefinery run failed: {type(exc).__name__}: {exc}\n"
                         "(if the run started, `refinery runs` shows it and its report.md says what finished)\n")
        raise typer.Exit(exit_code(exc))
    _summary(stats, Catalog(_home(cfg).catalog_path))


def _print_warnings(warnings: list[dict]) -> None:
    """The quality drop-rate guard's warnings, a line each (``runs.warnings`` and the report hold them too)."""
    from refinery.tasks.quality.guard import warning_line

    for warning in warnings:
        console.print(f"  [yellow]warning:[/yellow] {escape(warning_line(warning))}", soft_wrap=True, highlight=False)


def _summary(stats: dict, catalog: Catalog) -> None:
    from refinery.tasks.evaluate.query_sets import describe

    run_dir = stats["run_dir"]
    books = stats["books"]
    console.print(f"\n[bold]Run {stats['run_id']} completed[/bold]")
    console.print(f"  docs in {books['docs_in']} = kept {books['docs_kept']} + dropped {books['docs_dropped']}"
                  f" + rejected {books['docs_rejected']}")
    _print_warnings((stats.get("quality") or {}).get("warnings") or [])
    published = stats.get("publish") or {}
    if published.get("published"):
        console.print(f"  dataset {published['dataset']}: version {published['version']}, "
                      f"+{published['docs_added']} -{published['docs_retired']} = {published['docs_total']} documents"
                      "   (in SQL: the curated view)")
        for warning in published.get("id_reuse") or []:
            console.print(f"  [yellow]warning:[/yellow] {escape(warning['message'])}")
    elif published:
        console.print(f"  dataset {published['dataset']}: no new version ({published['why']})")
    console.print(f"  outputs:  {run_dir}")
    console.print(f"  report:   {stats['report']}")
    console.print(f"  catalog:  {catalog.path}   (try: refinery runs, or refinery sql with a query of your own)")
    trained = stats.get("train") or {}
    if trained.get("skipped") and trained["skipped"] != NO_CORPUS:  # (no corpus: evaluation says so below)
        console.print(f"  [yellow]no model trained:[/yellow] {escape(trained['skipped'])}")
    evaluation = stats.get("evaluate") or {}
    if evaluation.get("skipped"):
        console.print(f"  evaluation skipped: {evaluation['skipped']}")
        return
    if "evaluate" not in stats:
        return
    for task in evaluation.get("tasks") or [evaluation.get("task", "headline")]:  # one table per query set
        rows = catalog.evaluation_table(stats["run_id"], task)
        _print_rows(rows, Format.table, title=describe(task))


@app.command()
def ablate(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file (default: bundled BBC corpus); "
                                          "its synthesize/train/evaluate are what the variants run."),
    from_run: Optional[str] = typer.Option(None, "--from-run", help="Reference run whose curation every variant "
                                           "reuses; default: a curation-only run made first."),
    only: Optional[str] = typer.Option(None, "--only", help="One comparison: 'curation' (curated vs uncurated "
                                       "corpus), 'generators' (each generator alone vs the mix), 'hard_negatives' "
                                       "(pairs vs triplets with a mined negative), 'losses' (MNRL vs MarginMSE with "
                                       "each teacher vs both), 'teacher_filtered_negatives' (hard negatives as mined "
                                       "vs with the teacher's false negatives dropped), 'nights' (a night from the "
                                       "base model vs one from the dataset's promoted model) or 'choosing' (uniform "
                                       "passages vs each configured way of choosing them, alone and together); "
                                       "default: every one "
                                       "the config allows."),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="Existing Dask scheduler, e.g. tcp://host:8786."),
) -> None:
    """Ablations as runs at equal pair budgets: curated vs uncurated, each generator vs the mix, hard
    negatives, MNRL vs MarginMSE per teacher, teacher-filtered negatives, a night from base vs from the
    promoted model."""
    _home_is_free(_config(config))
    from refinery.flows.ablate import ablate_flow

    try:
        result = ablate_flow(config_path=str(config) if config else None, from_run=from_run, only=only,
                             dask_address=dask_address)
    except Exception as exc:
        sys.stderr.write(f"\nrefinery ablate failed: {type(exc).__name__}: {exc}\n")
        raise typer.Exit(exit_code(exc))
    keys = ("comparison", "variant", "run_id", "task", "pairs", "steps", "loss", "teacher_used", "ndcg@10",
            "ndcg@10_delta", "ndcg@10_vs_baseline")
    _print_rows([{k: r.get(k) for k in keys} for r in result["rows"]], Format.table,
                title=f"ablations of run {result['run_id']}")
    for line in result.get("skipped") or []:
        console.print(f"  skipped:  {line}")
    console.print(f"  report:   {result['report']}")


@app.command()
def sql(
    query: str = typer.Argument(..., help="SQL to run read-only on the catalog."),
    format: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config naming the data home."),
) -> None:
    """Run a read-only SQL query on the catalog (tables: runs, documents, corpus, drops, ...)."""
    rows = _catalog(config).user_query(query).to_pylist()
    _print_rows(rows, format)


@app.command()
def runs(
    limit: int = typer.Option(10, "--limit", "-n", help="How many recent runs."),
    format: Format = typer.Option(Format.table, "--format", "-f"),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
) -> None:
    """Recent runs with status, books (so far, for a failed run) and evaluation figures (a row per
    evaluation task when a run was scored on several)."""
    home = _home(_config(config))
    rows = Catalog(home.catalog_path).recent_runs(limit)
    if home.lock_holder() is None:  # no live run in this home: a `running` row is a killed run
        rows = [{**r, "status": "interrupted" if r["status"] == "running" else r["status"]} for r in rows]
    _print_rows(rows, format)


@app.command()
def datasets(
    name: Optional[str] = typer.Argument(None, help="A dataset: list its versions (default: list the datasets)."),
    format: Format = typer.Option(Format.table, "--format", "-f"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config naming the data home."),
) -> None:
    """The datasets in the data home with their newest version, or one dataset's versions (nights)."""
    catalog = _catalog(config)
    if name is None:
        rows = catalog.datasets_overview()
        if not rows and format is Format.table:
            console.print("no dataset has a version yet: `refinery run` publishes one each night")
            return
        _print_rows(rows, format, title="datasets" if format is Format.table else None)
    else:
        _print_rows(catalog.dataset_history(name), format, title=f"versions of dataset {name}")


@app.command()
def models(
    dataset: Optional[str] = typer.Argument(None, help="A dataset (default: every dataset's models)."),
    format: Format = typer.Option(Format.table, "--format", "-f"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config naming the data home."),
) -> None:
    """Each night's fine-tuned model: what it trained from, the promotion gate's figures and decision,
    and where the dataset's promoted model is (SQL: `models`, column `promoted`)."""
    home = _home(_config(config))
    rows = Catalog(home.catalog_path).model_rows(dataset)
    if not rows and format is Format.table:
        console.print("no model yet: `refinery run` trains one each night")
        return
    if format is not Format.table:
        _print_rows(rows, format)
        return
    _print_rows([_model_line(r) for r in rows], format, title="models")
    if format is Format.table:
        for name in dict.fromkeys(r["dataset"] for r in rows if r["promoted"]):
            console.print(f"dataset {name}: promoted model at {home.promoted_model_dir(name)}")


def _model_line(row: dict) -> dict:
    """A model's row as the table shows it: the gate's figure in one cell (every field: --format json)."""
    decided = "promoted" if row["promoted"] else ("candidate" if row["promoted"] is False else "not decided")
    figure = (f"{row['delta']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]" if row["delta"] is not None
              else (row["reason"] or ""))
    return {"dataset": row["dataset"], "run": row["run_id"], "trained from": row["base"], "gate": decided,
            "task": row["task"], "nDCG@10 vs": row["compared_with"], "difference [95% CI]": figure}


@app.command()
def export(
    out: Path = typer.Argument(..., help="Folder to write: new or empty (or an earlier export, with --force)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="The dataset (default: the config's `dataset`)."),
    version: Optional[str] = typer.Option(None, "--version", help="A version: the run id that published it "
                                          "(`refinery datasets NAME` lists them); default: the newest."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier export in OUT (a folder holding only "
                               "README.md and data/)."),
    rows_per_shard: int = typer.Option(DEFAULT_ROWS_PER_SHARD, "--rows-per-shard", min=1, help="Documents per Parquet file, at most."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config naming the data home (and dataset)."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="A mixture: only this many documents, drawn "
                                         "by --weight/--cap (uniform without them)."),
    weight: Optional[str] = typer.Option(None, "--weight", help="With --sample: draw by this score as logits (an "
                                         "attribute such as classifier.score, a field, or a SQL expression)."),
    temperature: float = typer.Option(DEFAULT_TEMPERATURE, "--temperature", min=1e-9,
                                      help="With --weight: exp(weight / temperature) sets the odds."),
    cap_by: Optional[str] = typer.Option(None, "--cap-by", help="With --cap: the field or attribute to group by "
                                         "(label, source, domain, semantic_cluster, ...)."),
    cap: Optional[int] = typer.Option(None, "--cap", min=1, help="With --sample: at most this many per --cap-by group."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sample's draw."),
) -> None:
    """Write a dataset version as Parquet shards (OUT/data/) and a dataset card (OUT/README.md),
    loadable without Refinery (pyarrow, Hugging Face datasets, DuckDB); with --sample, a mixture."""
    cfg = _config(config)
    if sample is None and (weight or cap or cap_by):
        raise InputError("--weight, --cap and --cap-by choose a sample: give its size with --sample")
    try:
        selection = SelectionConfig(weight=weight, temperature=temperature, cap_by=cap_by, cap=cap, seed=seed)
    except ValidationError as exc:
        raise InputError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    catalog = Catalog(_home(cfg).catalog_path)
    done = catalog.export_dataset(dataset or cfg.dataset, out, version=version, force=force,
                                  rows_per_shard=rows_per_shard, sample=sample, selection=selection)
    shards = len(done["shards"])
    of = f" (a sample of {done['of']})" if "of" in done else ""
    console.print(f"exported dataset {done['dataset']} version {done['version']} (night {done['night']} of "
                  f"{done['nights']}): {done['documents']} documents{of} in {shards} Parquet file{'s' * (shards != 1)}",
                  soft_wrap=True, highlight=False)
    console.print(f"  data:  {Path(done['out']) / 'data'}", soft_wrap=True, highlight=False)
    console.print(f"  card:  {done['card']}", soft_wrap=True, highlight=False)


@app.command()
def gc(
    keep: int = typer.Option(..., "--keep", min=0, help="How many of the most recent completed runs to keep."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be deleted."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config naming the data home."),
) -> None:
    """Delete every run but the N most recent completed ones (and those whose model is a dataset's
    promoted one): catalog rows, shards, models, reports.

    Refuses while a run is live in the data home (it holds the home's run lock).
    """
    from refinery.tasks.runs import collect_garbage

    home = _home(_config(config))
    if not home.catalog_path.exists():
        err.print(f"[red]no catalog at {home.catalog_path}: nothing to collect[/red]")
        raise typer.Exit(1)
    try:
        with home.run_lock("refinery gc"):
            done = collect_garbage(home, keep, dry_run=dry_run)
    except HomeBusyError as exc:
        raise _fail(exc, "refusing to collect") from None
    verb = "would delete" if dry_run else "deleted"
    console.print(f"kept {len(done.kept)} run(s): {', '.join(done.kept) or '-'}")
    console.print(f"{verb} {len(done.deleted)} run(s): {', '.join(done.deleted) or '-'}")
    if done.orphans:
        console.print(f"{verb} {len(done.orphans)} folder(s) of runs the catalog does not know: {', '.join(done.orphans)}")


@app.command("config")
def show_config(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Validate and print this file instead."),
    reference: bool = typer.Option(False, "--reference", help="Print every option as Markdown tables."),
) -> None:
    """Print the effective config as YAML (the defaults when no file is given)."""
    sys.stdout.write(config_reference() if reference else dump_config(_config(config)))


@app.command()
def refilter(
    run_id: Optional[str] = typer.Argument(None, help="A run whose quality stage finished (or --dataset)."),
    config: Path = typer.Option(..., "--config", "-c", help="Config with the new quality thresholds."),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="Re-decide this whole dataset instead of a run, and publish a version: documents that "
        "now fail are retired, documents that now pass come back (this name wins over the config's `dataset`)."),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="Existing Dask scheduler."),
) -> None:
    """Re-decide a run's quality drops, or a dataset's documents, under new thresholds from stored
    scores (no rule re-runs)."""
    from refinery.flows.quality import refilter_run

    if (run_id is None) == (dataset is None):
        err.print("give a run id or --dataset NAME, not both", style="red", highlight=False)
        raise typer.Exit(2)
    new = _config(config)
    _home_is_free(new)
    if dataset is not None:
        return _refilter_dataset(dataset, new, config, dask_address)
    catalog = Catalog(_home(new).catalog_path)
    before = catalog.drops_by_reason(run_id, "quality")
    try:
        stats = refilter_run(run_id, new, dask_address)
    except ValueError as exc:  # no such run, or one that cannot be re-decided (InputError, RefilterError: 3)
        raise _fail(exc) from None
    old = {r["reason"]: r["docs"] for r in before}
    rows = [{"reason": k, "before": old.get(k, 0), "after": stats["drops_by_reason"].get(k, 0)}
            for k in sorted(set(old) | set(stats["drops_by_reason"]))]
    _print_rows(rows, Format.table, title=f"quality drops of run {run_id}")
    _print_warnings(stats.get("warnings") or [])
    console.print(f"kept {stats['kept']}; books: {stats['books']}.\n"
                  f"Later stages are now unfinished: `refinery run --resume {run_id}` redoes them on the new corpus.")


dataset_app = typer.Typer(cls=_Commands, no_args_is_help=True, help="Work on a dataset as a whole (see `refinery datasets` to list them).")
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("reindex")
def dataset_reindex(
    name: str = typer.Argument(..., help="The dataset whose dedup index is rebuilt."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config with the dedup settings to index with."),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="Existing Dask scheduler."),
) -> None:
    """Rebuild a dataset's dedup index under the config's dedup settings (after changing them)."""
    from refinery.flows.reindex import reindex_dataset

    cfg = _config(config)
    _home_is_free(cfg)
    try:
        stats = reindex_dataset(name, cfg, dask_address)
    except ValueError as exc:  # no such dataset (InputError: 3)
        raise _fail(exc) from None
    console.print(f"dataset {name}: index rebuilt from {stats['files']} files of {stats['versions']} versions; "
                  "its nights now dedup with these settings.")


def _refilter_dataset(dataset: str, new: RefineryConfig, config: Path, dask_address: Optional[str]) -> None:
    """`refinery refilter --dataset`: checked first (a one-line error), then the flow, then its summary."""
    from refinery.flows.refilter_dataset import refilter_dataset, refilter_sources

    refilter_sources(_home(new), dataset, new)
    if new.dataset != dataset:
        console.print(f"{config} names dataset {new.dataset}; refiltering dataset {dataset}, as --dataset says")
    try:
        stats = refilter_dataset(dataset, new, dask_address)
    except Exception as exc:  # the flow logged the traceback
        raise _fail(exc, f"refinery refilter --dataset {dataset} failed") from None
    if not stats["published"]:
        console.print(f"dataset {dataset}: no decision changed under these thresholds; no new version "
                      f"({stats['docs_total']} documents).")
        return
    if stats["retired_by_reason"]:
        _print_rows([{"reason": k, "retired": v} for k, v in stats["retired_by_reason"].items()], Format.table,
                    title=f"documents of dataset {dataset} that now fail")
    left_out = sum(stats["left_out_as_duplicates"].values())
    console.print(f"dataset {dataset}: version {stats['version']} published: retired {stats['docs_retired']}, "
                  f"came back {stats['docs_added']}, {stats['docs_total']} documents"
                  + (f" ({left_out} that now pass stayed out as duplicates)" if left_out else "") + ".")


def _schedule(config: Optional[Path], cron: Optional[str], interval: Optional[float], timezone: Optional[str]):
    """The options given, else the config's `schedule` section (its defaults without a config)."""
    from prefect.schedules import Cron, Interval

    default = _config(config).schedule
    timezone = timezone or default.timezone
    # an interval is anchored a moment from now, so the first run is due after one interval
    return Interval(interval, timezone=timezone) if interval else Cron(cron or default.cron, timezone=timezone)


def _concurrency(config: Optional[Path], overlap: Optional[Overlap]):
    """One run of the deployment at a time; a run due meanwhile waits (ENQUEUE) or is skipped (CANCEL_NEW)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    strategy = {"wait": ConcurrencyLimitStrategy.ENQUEUE, "skip": ConcurrencyLimitStrategy.CANCEL_NEW}
    return ConcurrencyLimitConfig(limit=1, collision_strategy=strategy[overlap.value if overlap else _config(config).schedule.overlap])


def _deployment_parameters(config: Optional[Path], dask_address: Optional[str],
                           budget_minutes: Optional[float] = None) -> dict:
    """The nightly flow's parameters for every scheduled run: the config, the cluster, and the budget
    of a run whose config sets no ``budget.minutes`` (``--budget-minutes``, default the nightly window;
    0: none). A config that sets one keeps it, read when each run starts."""
    _config(config)
    default = DEFAULT_NIGHTLY_MINUTES if budget_minutes is None else budget_minutes
    return {"config_path": str(config.resolve()) if config else None, "dask_address": dask_address,
            "default_budget_minutes": default or None}


# the options `serve` and `deploy` share
CronOption = Annotated[Optional[str], typer.Option(
    "--cron", help="When to run the nightly flow (cron, in --timezone); default: the config's schedule.cron.")]
IntervalOption = Annotated[Optional[float], typer.Option(
    "--interval", min=1, help="Run every SECONDS instead of by cron (first run one interval from now).")]
TimezoneOption = Annotated[Optional[str], typer.Option(
    "--timezone", help="Time zone of the cron schedule (IANA name); default: the config's schedule.timezone.")]
DeploymentConfigOption = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="Config file every scheduled run uses.")]
DaskAddressOption = Annotated[Optional[str], typer.Option("--dask-address", help="Existing Dask scheduler.")]
OverlapOption = Annotated[Optional[Overlap], typer.Option(
    "--overlap",
    help="A run due while the last is still going waits for it, or is skipped; default: the config's "
    "schedule.overlap (wait).")]
AlertWebhookOption = Annotated[Optional[str], typer.Option(
    "--alert-webhook",
    help="A failed or crashed run POSTs its error and report link here: a saved Prefect Webhook block's name, or "
    "an http(s) URL; default: the config's schedule.alert_webhook (none).")]
DeploymentNameOption = Annotated[str, typer.Option("--name", help="Deployment name shown in the Prefect UI.")]
BudgetMinutesOption = Annotated[Optional[float], typer.Option(
    "--budget-minutes", min=0,
    help=f"Minutes for the model half of each run whose config sets no budget.minutes (default "
    f"{DEFAULT_NIGHTLY_MINUTES:.0f}, a nightly window; 0: no budget, the config's sizes).")]


@app.command()
def serve(
    cron: CronOption = None,
    interval: IntervalOption = None,
    timezone: TimezoneOption = None,
    config: DeploymentConfigOption = None,
    dask_address: DaskAddressOption = None,
    name: DeploymentNameOption = "refinery-nightly",
    overlap: OverlapOption = None,
    budget_minutes: BudgetMinutesOption = None,
    alert_webhook: AlertWebhookOption = None,
) -> None:
    """Serve the nightly flow from this process: runs by schedule and from the UI's Run button.

    Needs a Prefect server (PREFECT_API_URL); stops serving on Ctrl-C.
    """
    from prefect.types.entrypoint import EntrypointType

    from refinery.flows.nightly import nightly

    parameters = _deployment_parameters(config, dask_address, budget_minutes)
    settings = dict(name=name, schedule=_schedule(config, cron, interval, timezone), parameters=parameters,
                    entrypoint_type=EntrypointType.MODULE_PATH)
    limit = _concurrency(config, overlap)
    webhook = _webhook(config, alert_webhook)
    if webhook:  # the automation names the deployment by id: register it first (serve registers it again, unchanged)
        deployment_id = nightly.to_deployment(**settings, concurrency_limit=limit).apply()
        _alert(deployment_id, name, webhook)
    nightly.serve(**settings, global_limit=limit)


@app.command()
def deploy(
    pool: str = typer.Option("refinery", "--pool", help="Prefect work pool (a process pool; created if missing)."),
    cron: CronOption = None,
    interval: IntervalOption = None,
    timezone: TimezoneOption = None,
    config: DeploymentConfigOption = None,
    dask_address: DaskAddressOption = None,
    name: DeploymentNameOption = "refinery-nightly",
    overlap: OverlapOption = None,
    budget_minutes: BudgetMinutesOption = None,
    alert_webhook: AlertWebhookOption = None,
) -> None:
    """Register the nightly deployment on a work pool; `prefect worker start --pool POOL` runs it.

    The worker imports the flow from the installed package (entrypoint refinery.flows.nightly.nightly),
    so it needs Refinery installed, not this checkout.
    """
    from prefect import deploy as prefect_deploy
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.types.entrypoint import EntrypointType
    from prefect.utilities.asyncutils import run_coro_as_sync

    from refinery.flows.nightly import nightly

    parameters = _deployment_parameters(config, dask_address, budget_minutes)
    webhook = _webhook(config, alert_webhook)

    async def ensure_pool() -> None:
        async with get_client() as client:
            try:
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
                console.print(f"created process work pool {pool!r}")
            except ObjectAlreadyExists:
                pass

    run_coro_as_sync(ensure_pool())
    deployment = nightly.to_deployment(name=name, schedule=_schedule(config, cron, interval, timezone),
                                       parameters=parameters, concurrency_limit=_concurrency(config, overlap),
                                       entrypoint_type=EntrypointType.MODULE_PATH)
    (deployment_id,) = prefect_deploy(deployment, work_pool_name=pool, build=False, push=False, print_next_steps_message=False)
    console.print(f"deployment nightly/{name} ({deployment_id}) on work pool {pool!r}; "
                  f"start a worker with: prefect worker start --pool {pool}")
    if webhook:
        _alert(deployment_id, name, webhook)


def _webhook(config: Optional[Path], alert_webhook: Optional[str]) -> Optional[str]:
    """The webhook failed runs are reported to (option, else config), checked before anything is registered."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    from refinery.flows.alerts import check_webhook

    webhook = alert_webhook or _config(config).schedule.alert_webhook
    if webhook:
        try:
            run_coro_as_sync(check_webhook(webhook))
        except ValueError as exc:
            raise _fail(exc) from None
    return webhook


def _alert(deployment_id, name: str, webhook: str) -> None:
    """Create the automation that calls ``webhook`` when a run of the deployment fails (one-line error)."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    from refinery.flows.alerts import alert_on_failure

    try:
        console.print(f"deployment {name}: " + run_coro_as_sync(alert_on_failure(deployment_id, name, webhook)))
    except ValueError as exc:
        raise _fail(exc) from None


if __name__ == "__main__":
    app()
