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

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from refinery.flows.nightly import check_deployment_config, prepare_run, run_chain
from refinery.flows.runtime import dask_cluster
from refinery.tasks.runs import RunSpec
from refinery.storage import DataHome
from refinery.storage.shards import write_text_atomic
from refinery.tasks.config import CURATION_STAGES, STAGES, RefineryConfig, dump_config, load_config, parse_config
from refinery.tasks.evaluate.query_sets import SYNTHETIC_HELDOUT
from refinery.tasks.exceptions import ConfigError, InputError
from refinery.tasks.report.ablation import (
    COMPARISONS,
    CURATION,
    GENERATORS,
    HARD_NEGATIVES,
    MIX,
    ablation_markdown,
    artifact_table,
    comparison_rows,
    merge_earlier,
    store_rows,
    variant_results,
)


def plan(config: RefineryConfig, only: str | None = None) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """comparison → variant → config section (``synthesize``, ``train``) → its overrides."""
    if only is not None and only not in COMPARISONS:
        raise ConfigError(f"--only must be one of {', '.join(COMPARISONS)}, got {only!r}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if only in (None, CURATION):
        out[CURATION] = {"curated": {"synthesize": {"corpus": "curated"}},
                         "uncurated": {"synthesize": {"corpus": "uncurated"}}}
    if only in (None, GENERATORS):
        generators = config.synthesize.generators
        if len(generators) < 2:
            if only == GENERATORS:
                raise ConfigError(f"the generator ablation needs two or more synthesize.generators, got {generators}")
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
    task = run_chain(run, address)["synthesize"].get("evaluation_task")
    if task == SYNTHETIC_HELDOUT:
        raise InputError("an ablation compares variants on the same queries; held-out synthetic pairs differ per "
                         "variant: give the documents titles, or evaluate.queries with evaluate.task 'none'")
    return run


def _train_and_evaluate(run: RunSpec, max_pairs: int, address: str) -> RunSpec:
    """The variant's train and evaluate, on ``max_pairs`` training pairs (set in its config first)."""
    # every variant trains from the base model on its own pairs, and none is promoted: the variants
    # are compared with each other, not with what the dataset's nights built
    config = parse_config({**(data := run.config.model_dump(mode="json")),
                           "train": {**data["train"], "max_pairs": max_pairs, "init": "base", "replay_ratio": 0}},
                          "an ablation variant")
    write_text_atomic(dump_config(config), run.run_dir / "config.yaml")  # train has not run: nothing to invalidate
    run = prepare_run(config, run_id=run.run_id, stages=list(STAGES)).model_copy(update={"promotes": False})
    run_chain(run, address)
    return run


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
        raise ConfigError("nothing to ablate: the generator ablation needs two or more synthesize.generators "
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
            budget = {name: run.catalog.kept_training_pairs(run.run_id) for name, run in variants.items()}
            if (empty := [n for n, k in budget.items() if not k]):
                raise InputError(f"ablation variant(s) {', '.join(empty)} kept no training pair: give synthesize "
                                 "more passages")
            cap = min(budget.values())
            logger.info("ablation %s: kept training pairs %s; each variant trains on %d", comparison, budget, cap)
            results = {name: variant_results(_train_and_evaluate(run, cap, address)) for name, run in variants.items()}
            rows += comparison_rows(comparison, results, config.evaluate.bootstrap_samples, config.evaluate.seed)
        store_rows(reference.catalog, reference.run_id, rows)
        merged = merge_earlier(reference.run_dir, rows)
        text = ablation_markdown(reference.run_id, merged)
        path = write_text_atomic(text, reference.run_dir / "ablation.md")
        create_markdown_artifact(key="ablation-report", markdown=text,
                                 description=f"Ablations of run {reference.run_id}")
        create_table_artifact(key="ablation", table=artifact_table(merged),
                              description=f"Ablations of run {reference.run_id}: tuned nDCG@10 per variant, with "
                                          "paired intervals over base and over the comparison's baseline variant.")
    return {"run_id": from_run, "rows": rows, "report": str(path)}
