"""ablate: what curation, each generator, hard negatives, teachers and nights are worth, measured as
runs (``refinery ablate``).

Seven comparisons, each a set of variants. ``curation``: the same synthesize/train/evaluate on the
curated corpus (``curated``) and on every ingested document (``uncurated``,
``synthesize.corpus: uncurated``). ``generators``: each of ``synthesize.generators`` alone
(``<generator>_only``) and all of them (``mix``). ``hard_negatives``: training on (query, passage)
pairs (``no_hard_negatives``) vs on triplets with a mined hard negative (``hard_negatives``:
``synthesize.hard_negatives``), on the same pairs. ``losses``: MNRL (``mnrl``) vs MarginMSE with
each teacher (``marginmse_<teacher>``; the cross-encoder only when one is configured) vs both
(``mnrl+marginmse_<teacher>``, the config's teacher, else fusion). ``teacher_filtered_negatives``:
the same teacher and loss with the hard negatives as mined (``unfiltered``,
``train.teacher.false_negative_margin: null``) vs with the teacher's likely false negatives
dropped (``teacher_filtered``). ``nights``: a night from the base model (``from_base``: ``train.init:
base``, no replay) vs one from the dataset's promoted model (``from_promoted``: ``train.init:
promoted`` with replay), when the dataset has one. ``choosing``: uniform passages (``uniform``) vs
each configured method of choosing the data alone and the synthesizing ones together
(:func:`choosing_methods`); its ``cartography`` variant trains on ``uniform``'s pairs less those
``uniform``'s map put in hard_to_learn (:func:`_train_comparison` keeps the budgets equal).

Every variant is its own run started from the reference run's curation, as ``refinery run
--from-run`` does (linked, not redone), so all of them are evaluated on the same query sets and
pool. A variant of the first three first synthesizes. The last three differ in the train section
only: one run synthesizes (with hard negatives: MarginMSE and the teacher's filter need triplets;
the ``hard_negatives`` variant's run when that comparison runs too) and each of their variants is
a run that links that run's synthesize stage (:func:`refinery.tasks.runs.reuse_synthesis`), so they
train on the very same pairs. Then every variant of a comparison trains on the same number of
pairs (``train.max_pairs``: the comparison's smallest count of kept training pairs, a seeded
choice) and so the same steps (MarginMSE alone: the triplets the teacher gave a margin), and is
evaluated. No variant is promoted. The results go to the reference run: ``metrics`` rows of stage
'ablate' (model: the variant), ``ablation.md`` beside its report, and artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from refinery.flows.nightly import check_deployment_config, prepare_run, run_chain
from refinery.flows.runtime import dask_cluster
from refinery.tasks.runs import RunSpec, reuse_synthesis
from refinery.storage import Catalog, DataHome
from refinery.storage.shards import write_text_atomic
from refinery.tasks.config import CURATION_STAGES, STAGES, RefineryConfig, dump_config, load_config, parse_config
from refinery.tasks.evaluate.query_sets import SYNTHETIC_HELDOUT
from refinery.tasks.exceptions import ConfigError, InputError
from refinery.tasks.train.cartography import HARD
from refinery.tasks.train.config import DEFAULT_REPLAY_RATIO, TeacherConfig
from refinery.tasks.report.ablation import (
    BASELINES,
    CHOOSING,
    COMPARISONS,
    CURATION,
    GENERATORS,
    HARD_NEGATIVES,
    LOSSES,
    MIX,
    NIGHTS,
    TEACHER_FILTERED,
    TRAIN_ONLY,
    ablation_markdown,
    artifact_table,
    comparison_rows,
    merge_earlier,
    store_rows,
    variant_results,
)


@dataclass(frozen=True)
class Plan:
    """comparison → variant → config section (``synthesize``, ``train``) → its overrides, and a line
    per comparison or variant left out, with the reason."""

    comparisons: dict[str, dict[str, dict[str, dict[str, Any]]]]
    skipped: list[str] = field(default_factory=list)


def _teacher(config: RefineryConfig, kind: str) -> dict[str, Any]:
    """The config's teacher section as kind ``kind`` (its path only where the config's teacher is that kind)."""
    teacher = config.train.teacher
    return {**teacher.model_dump(mode="json"), "kind": kind, "path": teacher.path if teacher.kind == kind else None}


def plan(config: RefineryConfig, only: str | None = None, *, promoted: str | None = None) -> Plan:
    """The comparisons to run (all, or ``only``) under ``config``; ``promoted``: the run whose model is
    the dataset's promoted one (None: none, so no ``nights`` comparison)."""
    if only is not None and only not in COMPARISONS:
        raise ConfigError(f"--only must be one of {', '.join(COMPARISONS)}, got {only!r}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    skipped: list[str] = []
    if only in (None, CURATION):
        out[CURATION] = {"curated": {"synthesize": {"corpus": "curated"}},
                         "uncurated": {"synthesize": {"corpus": "uncurated"}}}
    if only in (None, GENERATORS):
        generators = config.synthesize.generators
        if len(generators) < 2:
            if only == GENERATORS:
                raise ConfigError(f"the generator ablation needs two or more synthesize.generators, got {generators}")
            skipped.append(f"{GENERATORS}: needs two or more synthesize.generators, got {generators}")
        else:
            out[GENERATORS] = {f"{g}_only": {"synthesize": {"generators": [g]}} for g in generators} | {MIX: {}}
    if only in (None, HARD_NEGATIVES):
        out[HARD_NEGATIVES] = {
            name: {"synthesize": {"hard_negatives": on}}
            for name, on in (("no_hard_negatives", False), ("hard_negatives", True))}
    teacher = config.train.teacher
    if only in (None, LOSSES):
        losses: dict[str, dict[str, Any]] = {"mnrl": {"train": {"loss": "mnrl", "teacher": _teacher(config, "none")}}}
        for kind in ("cross_encoder", "query_likelihood", "fusion"):
            if kind == "cross_encoder" and teacher.kind != kind:
                skipped.append(f"{LOSSES}: no marginmse_cross_encoder: no cross-encoder is configured "
                               "(train.teacher.kind: cross_encoder, train.teacher.path: a CrossEncoder folder)")
                continue
            losses[f"marginmse_{kind}"] = {"train": {"loss": "marginmse", "teacher": _teacher(config, kind)}}
        both = teacher.kind if teacher.kind != "none" else "fusion"
        losses[f"mnrl+marginmse_{both}"] = {"train": {"loss": "mnrl+marginmse", "teacher": _teacher(config, both)}}
        out[LOSSES] = losses
    if only in (None, TEACHER_FILTERED):
        kind = teacher.kind if teacher.kind != "none" else "fusion"
        margin = teacher.false_negative_margin
        if margin is None:
            margin = TeacherConfig.model_fields["false_negative_margin"].default
        out[TEACHER_FILTERED] = {
            name: {"train": {"loss": config.train.loss, "teacher": {**_teacher(config, kind), "false_negative_margin": m}}}
            for name, m in (("unfiltered", None), ("teacher_filtered", margin))}
    if only in (None, CHOOSING):
        methods = choosing_methods(config)
        if not methods:
            reason = ("no method of choosing the data is configured: set synthesize.selection.weight, "
                      "synthesize.selection.cap_by + cap and/or synthesize.rephrase.styles")
            if only == CHOOSING:
                raise ConfigError(f"the choosing ablation needs a method to compare: {reason}")
            skipped.append(f"{CHOOSING}: {reason}")
        else:
            # every variant starts from none of them: a method the config sets is off in the others
            off = {"synthesize": {"selection": {}, "rephrase": {"styles": []}},
                   "train": {"cartography": {"enabled": False, "drop_hard_to_learn": False}}}
            synthesizing = {n: m for n, m in methods.items() if n != CARTOGRAPHY}
            baseline = off
            if CARTOGRAPHY in methods:  # the baseline maps its pairs; the cartography variant trains on them
                baseline = _together({"off": off, "map": {"train": {"cartography": {**methods[CARTOGRAPHY]["train"][
                    "cartography"], "drop_hard_to_learn": False}}}})
            variants = {"uniform": baseline} | {name: _together({"off": off, name: m}) for name, m in methods.items()}
            if len(synthesizing) > 1:
                variants["together"] = _together({"off": off, **synthesizing})
            out[CHOOSING] = variants
    if only in (None, NIGHTS):
        if promoted is None:
            reason = (f"dataset {config.dataset!r} has no promoted model to train a night from: run a night on it "
                      "(`refinery run`); its model is promoted when the gate finds it not worse than the base model "
                      f"(`refinery models {config.dataset}` lists the nights and the gate's decisions)")
            if only == NIGHTS:
                raise InputError(f"the nights ablation needs a promoted model: {reason}")
            skipped.append(f"{NIGHTS}: {reason}")
        else:
            replay = config.train.replay_ratio or DEFAULT_REPLAY_RATIO
            out[NIGHTS] = {"from_base": {"train": {"init": "base", "replay_ratio": 0}},
                           "from_promoted": {"train": {"init": "promoted", "replay_ratio": replay}}}
    return Plan(out, skipped)


# The choosing variant that trains on its baseline's pairs, less those the baseline's map found hard.
CARTOGRAPHY = "cartography"


def choosing_methods(config: RefineryConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Each method of choosing the data the config sets, alone: variant → section overrides
    (``weighted``: its selection's weight; ``balanced``: its selection's cap; ``rephrased``: its
    rephrasing styles, WRAP; ``cartography``: with ``train.cartography.drop_hard_to_learn``, the
    baseline's pairs less those the baseline's own data map put in hard-to-learn, so it trains
    after the baseline, on its synthesis). Semantic dedup is curation: it is the reference run's."""
    selection = config.synthesize.selection
    methods: dict[str, dict[str, dict[str, Any]]] = {}
    if selection.weight is not None:
        methods["weighted"] = {"synthesize": {"selection": {"weight": selection.weight, "seed": selection.seed,
                                                            "temperature": selection.temperature}}}
    if selection.cap is not None:
        methods["balanced"] = {"synthesize": {"selection": {"cap_by": selection.cap_by, "cap": selection.cap,
                                                            "seed": selection.seed}}}
    if config.synthesize.rephrase.styles:
        methods["rephrased"] = {"synthesize": {"rephrase": config.synthesize.rephrase.model_dump(mode="json")}}
    if config.train.cartography.drop_hard_to_learn:
        methods[CARTOGRAPHY] = {"train": {"cartography": {**config.train.cartography.model_dump(mode="json"),
                                                          "enabled": True}}}
    return methods


def _together(methods: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The overrides of every method at once (their sections and sub-sections merged)."""
    merged: dict[str, dict[str, Any]] = {}
    for overrides in methods.values():
        for section, values in overrides.items():
            for key, value in values.items():
                current = merged.setdefault(section, {}).get(key)
                merged[section][key] = {**current, **value} if isinstance(current, dict) else value
    return merged


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


def _linked(config: RefineryConfig, reference: str, source: RunSpec) -> RunSpec:
    """A new run from ``reference``'s curation with ``source``'s synthesize stage linked in (its
    pairs, split and evaluation queries): a train-only variant trains on the very pairs of its
    comparison's other variants, synthesized once."""
    run = prepare_run(config, stages=[*CURATION_STAGES, "synthesize"], from_run=reference)
    reuse_synthesis(run.data_home, run.run_id, source.run_id)
    return run


def _train_and_evaluate(run: RunSpec, max_pairs: int, address: str, train: dict[str, Any]) -> RunSpec:
    """The variant's train and evaluate, on ``max_pairs`` training pairs (set in its config first)."""
    # every variant trains from the base model on its own pairs (unless it is the nights variant
    # that trains from the promoted one: ``train``, its overrides), and none is promoted: the
    # variants are compared with each other, not with what the dataset's nights built
    data = run.config.model_dump(mode="json")
    config = parse_config({**data, "train": {**data["train"], "max_pairs": max_pairs, "init": "base",
                                             "replay_ratio": 0, **train}}, "an ablation variant")
    write_text_atomic(dump_config(config), run.run_dir / "config.yaml")  # train has not run: nothing to invalidate
    run = prepare_run(config, run_id=run.run_id, stages=list(STAGES)).model_copy(update={"promotes": False})
    run_chain(run, address)
    return run


def _promoted(home: DataHome, dataset: str) -> str | None:
    """The run whose model is ``dataset``'s promoted one, when its folder is there to train from."""
    promoted = Catalog(home.catalog_path).ensure_schema().promoted_model(dataset)
    return promoted["run_id"] if promoted and home.promoted_model_dir(dataset).is_dir() else None


@flow(name="ablate", log_prints=True)
def ablate_flow(config_path: str | None = None, from_run: str | None = None, only: str | None = None,
                dask_address: str | None = None) -> dict[str, Any]:
    """The ablations of ``from_run``'s curation (without it: a curation-only run made first) under the
    config's synthesize/train/evaluate. Returns the rows, the comparisons skipped (with reasons) and
    the report's path."""
    check_deployment_config(config_path)
    logger = get_run_logger()
    config = load_config(config_path)
    home = DataHome.resolve(config.home, config.catalog)
    with home.run_lock("an ablation"):
        chosen = plan(config, only, promoted=_promoted(home.ensure(), config.dataset))
        for line in chosen.skipped:
            logger.warning("ablation skipped: %s", line)
        if not chosen.comparisons:
            raise ConfigError("nothing to ablate: " + "; ".join(chosen.skipped))
        with dask_cluster(config.dask, dask_address) as address:
            if from_run is None:
                curation = prepare_run(config, stages=list(CURATION_STAGES))
                run_chain(curation, address)
                from_run = curation.run_id
            reference = RunSpec(run_id=from_run, home=str(home.root),
                                config=load_config(home.run_dir(from_run) / "config.yaml"))
            runs = _variant_runs(config, chosen.comparisons, from_run, address)
            rows = []
            for comparison, variants in runs.items():
                budget = {name: run.catalog.kept_training_pairs(run.run_id) for name, run in variants.items()}
                if (empty := [n for n, k in budget.items() if not k]):
                    raise InputError(f"ablation variant(s) {', '.join(empty)} kept no training pair: give synthesize "
                                     "more passages")
                cap = min(budget.values())
                logger.info("ablation %s: kept training pairs %s; each variant trains on %d", comparison, budget, cap)
                results = _train_comparison(comparison, variants, chosen.comparisons[comparison], budget, cap,
                                            from_run, address)
                for name, result in results.items():
                    if result["teacher_used"] is False:
                        logger.warning("ablation %s: variant %s trained with MNRL, its teacher not used: %s",
                                       comparison, name, result["teacher_reason"])
                rows += comparison_rows(comparison, results, config.evaluate.bootstrap_samples, config.evaluate.seed)
            store_rows(reference.catalog, reference.run_id, rows)
            merged = merge_earlier(reference.run_dir, rows)
            text = ablation_markdown(reference.run_id, merged, chosen.skipped)
            path = write_text_atomic(text, reference.run_dir / "ablation.md")
            create_markdown_artifact(key="ablation-report", markdown=text,
                                     description=f"Ablations of run {reference.run_id}")
            create_table_artifact(key="ablation", table=artifact_table(merged),
                                  description=f"Ablations of run {reference.run_id}: tuned nDCG@10 per variant, with "
                                              "paired intervals over base and over the comparison's baseline variant.")
    return {"run_id": from_run, "rows": rows, "skipped": chosen.skipped, "report": str(path)}


def _train_comparison(comparison: str, variants: dict[str, RunSpec], overrides: dict[str, dict[str, Any]],
                      budget: dict[str, int], cap: int, reference: str, address: str) -> dict[str, dict[str, Any]]:
    """Each variant trained and evaluated on ``cap`` pairs, in the plan's order. With a cartography
    variant the baseline trains first and maps its pairs; when the pairs its map puts in
    hard_to_learn leave the cartography variant fewer than ``cap``, every variant trains on what
    is left, the baseline again in a new run on the same pairs (its first training was the map),
    so that pairs and steps stay equal."""
    def train(name: str, run: RunSpec, pairs: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return variant_results(_train_and_evaluate(run, pairs, address, {**overrides[name].get("train", {}),
                                                                        **(extra or {})}))

    results: dict[str, dict[str, Any]] = {}
    if CARTOGRAPHY in variants:
        base, carto = BASELINES[comparison], variants[CARTOGRAPHY]
        results[base] = train(base, variants[base], cap)
        left = budget[CARTOGRAPHY] - len(carto.catalog.latest_map_region(carto.run_id, HARD))
        if left < cap:
            get_run_logger().info("ablation %s: the %s map put %d of its pairs in %s; every variant trains on %d "
                                  "(%s again, in a new run)", comparison, base, budget[CARTOGRAPHY] - left, HARD,
                                  left, base)
            cap = left
            again = _linked(variants[base].config, reference, variants[base])
            results[base] = train(base, again, cap, {"cartography": {"enabled": False, "drop_hard_to_learn": False}})
    for name, run in variants.items():
        if name not in results:
            results[name] = train(name, run, cap)
    return {name: results[name] for name in variants}


def _variant_runs(config: RefineryConfig, comparisons: dict[str, dict[str, dict[str, Any]]], reference: str,
                  address: str) -> dict[str, dict[str, RunSpec]]:
    """comparison → variant → its run, synthesized: a synthesis per variant of the comparisons that
    change synthesize; one for all the train-only ones (the ``hard_negatives`` variant's, when that
    comparison runs: the same synthesize config), linked into a run per variant."""
    runs: dict[str, dict[str, RunSpec]] = {}
    source: RunSpec | None = None
    pairs_config = _variant_config(config, {"synthesize": {"hard_negatives": True}})
    for comparison, variants in comparisons.items():
        if comparison not in TRAIN_ONLY:
            runs[comparison] = {name: _synthesize(_variant_config(config, o), reference, address)
                                for name, o in variants.items() if name != CARTOGRAPHY}
            if CARTOGRAPHY in variants:  # the baseline's pairs, trained after it (dict order) and its map
                baseline = runs[comparison][BASELINES[comparison]]
                runs[comparison][CARTOGRAPHY] = _linked(_variant_config(config, variants[CARTOGRAPHY]), reference,
                                                        baseline)
            continue
        if source is None:
            source = runs.get(HARD_NEGATIVES, {}).get("hard_negatives") or _synthesize(pairs_config, reference, address)
        runs[comparison] = {name: _linked(_variant_config(pairs_config, o), reference, source)
                            for name, o in variants.items()}
    return runs
