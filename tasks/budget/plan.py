"""Size the model half to ``budget.minutes`` from measured rates: a pure function, no Prefect.

How the minutes are spent, in order:

1. **Fixed costs**, whatever the sizes: the calibration itself (already spent), embedding the
   filter pool with the base model (synthesize), embedding the evaluation pool with every model
   evaluate scores (base, tuned, and the promoted model when the night is gated against one), and
   each stage's overhead (loading models, the tuned model's ONNX export, writing).
2. **The reserve**, :data:`RESERVE_SHARE` of the minutes, left unplanned: rates measured in under a
   minute are off by some percent (other load, longer texts), and training may spend it before its
   deadline (``train.max_minutes`` = train's planned minutes + the reserve). Training also re-plans
   its steps from its own first timed steps (``train.fit_minutes`` = train's planned minutes): one
   calibration step misjudged a 2-hour night's step time by 1.7x (71 s against 41 s) and left half
   its training minutes unused.
3. **LLM generation**, :data:`LLM_SHARE` of what is left when an LLM generator runs: as many
   passages as the generators' measured seconds per passage allow on the cluster's slots; once
   every corpus document is a passage, more samples per passage instead (GPL: on small corpora
   more queries per passage keep paying).
4. **Training**, the rest: the steps its measured seconds per step allow (with the dev split's
   scoring every ``train.eval_every`` steps), and inverse-cloze passages enough to feed them, the
   consistency filter's cost of their candidates taken off first. When the corpus cannot give
   pairs for that many steps, the training makes several passes (at most :data:`MAX_EPOCHS`) and
   stops there: the night ends early rather than repeat the same pairs without end.

The plan's ``epochs`` is what it expects from the keep rates below; the run's config gets
``train.epochs: MAX_EPOCHS``, so the planned steps bound the training, not the expected passes:
a night whose synthesize keeps fewer pairs than expected passes over them more often to train its
planned steps (at most MAX_EPOCHS times) instead of ending early with its minutes unused (a 2-hour
night on technical documentation kept 41% of its passages' pairs against 67% planned and left 19
minutes unused, bench/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from refinery.tasks.config import RefineryConfig, parse_config

# Of the minutes, kept out of every stage's plan: the error of a sub-minute calibration.
RESERVE_SHARE = 0.10
# Of the minutes left after fixed costs and the reserve, given to LLM generation when an LLM
# generator runs; the rest trains. A SmolLM2 pair costs ~50x an inverse-cloze pair (seconds of
# generation against a share of the filter), and the bundled run's weakness is too few steps
# (23; GPL's gains saturate after tens of thousands): most of a budget goes to steps.
LLM_SHARE = 0.30
# Kept pairs per passage, measured on the bundled corpus (bench/RESULTS.md, 4294c0f): inverse cloze
# 778 of 1,200 passages at consistency_top_k 3; SmolLM2 48 of 64 passages at max_pairs_per_passage 1.
INVERSE_CLOZE_KEEP_RATE = 0.65
LLM_KEEP_RATE = 0.75
# Embedding a candidate query (a dozen words) costs about a tenth of a passage's embedding (256
# tokens): the consistency filter's cost per candidate, on the one worker that runs it.
QUERY_EMBED_COST = 0.1
# Scoring the dev split (~80 pairs at 256 tokens) costs about half a training step.
DEV_SCORE_STEPS = 0.5
# Fewer steps than this do not move the model (the first dev score is at step 10): the least
# budget is the one that leaves room for them.
MIN_STEPS = 10
# The most passes over the night's pairs a budget plans.
MAX_EPOCHS = 10
# The most samples per passage (synthesize.candidates_per_passage's limit).
MAX_CANDIDATES = 32
# Per stage, seconds that do not grow with the sizes: starting the stage flow and its tasks,
# loading the models, sampling and decontamination (synthesize), the first dev score and saving
# (train), the tuned model's ONNX export, BM25 and the bootstrap (evaluate).
STAGE_OVERHEAD_S = {"synthesize": 60.0, "train": 30.0, "evaluate": 90.0}
# The stages whose minutes a plan holds, in chain order ('budget': the calibration).
PLANNED_STAGES = ("budget", "synthesize", "train", "evaluate")
LLM_GENERATORS = ("smollm2", "openai")


@dataclass(frozen=True)
class Rates:
    """What the calibration measured.

    ``slots``: tasks the cluster runs at once (its worker threads); ``encode_docs_per_s``: corpus
    documents one slot embeds per second with the base model (``evaluate.encoder``);
    ``train_step_s``: seconds of one step at ``train.batch_size`` and ``max_seq_length`` (on one
    worker, all its cores); ``llm_s_per_passage``: per LLM generator, seconds one slot takes per
    passage at ``synthesize.candidates_per_passage``; ``calibration_s``: what measuring took.
    """

    slots: int
    encode_docs_per_s: float
    train_step_s: float
    llm_s_per_passage: dict[str, float] = field(default_factory=dict)
    calibration_s: float = 0.0


@dataclass(frozen=True)
class BudgetPlan:
    """The sizes a budget gives the model half, and the minutes it expects each stage to take."""

    minutes: float
    llm_passages: int
    candidates_per_passage: int
    max_pairs_per_passage: int
    inverse_cloze_passages: int
    candidates: int
    expected_pairs: int
    steps: int
    epochs: int
    train_max_minutes: float
    stage_minutes: dict[str, float]
    reserve_minutes: float
    rates: Rates
    # what budget.minutes asked for when it was below the least the night needs (then ``minutes`` is that least)
    asked_minutes: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BudgetPlan":
        return cls(**{**data, "rates": Rates(**data["rates"])})


@dataclass(frozen=True)
class Workload:
    """What the run is to do, beside the budget: corpus documents, and whether a promoted model is
    scored beside base and tuned."""

    corpus_docs: int
    scores_promoted: bool = False


def fixed_seconds(config: RefineryConfig, work: Workload, rates: Rates) -> dict[str, float]:
    """Per stage, the seconds that do not depend on the plan's sizes (the pools' embeddings and the
    stage overheads)."""
    throughput = rates.encode_docs_per_s * rates.slots
    filter_pool = min(work.corpus_docs, config.synthesize.filter_pool_docs)
    models = config.evaluate.models
    eval_pool = min(work.corpus_docs, config.evaluate.pool_docs)
    # a corpus within both pools is both pools: evaluate reads the base model's embeddings synthesize made
    shared = work.corpus_docs <= min(filter_pool, config.evaluate.pool_docs)
    evaluated = ("base" in models and not shared) + ("tuned" in models or "hybrid" in models) + (
        work.scores_promoted and "tuned" in models)
    return {"budget": rates.calibration_s,
            "synthesize": filter_pool / throughput + STAGE_OVERHEAD_S["synthesize"],
            "train": STAGE_OVERHEAD_S["train"],
            "evaluate": eval_pool * evaluated / throughput + STAGE_OVERHEAD_S["evaluate"]}


def step_seconds(config: RefineryConfig, rates: Rates) -> float:
    """A training step's seconds with its share of the dev split's scoring."""
    return rates.train_step_s * (1 + DEV_SCORE_STEPS / config.train.eval_every)


def minimum_minutes(config: RefineryConfig, work: Workload, rates: Rates) -> float:
    """The least budget that pays the fixed costs and :data:`MIN_STEPS` steps on inverse-cloze pairs,
    with the reserve (rounded up to a minute)."""
    steps = MIN_STEPS * step_seconds(config, rates)
    candidates = math.ceil(MIN_STEPS * config.train.batch_size / INVERSE_CLOZE_KEEP_RATE)
    needed = sum(fixed_seconds(config, work, rates).values()) + steps + _filter_seconds(candidates, rates)
    return float(math.ceil(needed / (1 - RESERVE_SHARE) / 60))


def plan_budget(minutes: float, rates: Rates, work: Workload, config: RefineryConfig) -> BudgetPlan:
    """The sizes of synthesize and train that fit ``minutes`` (see the module's docstring for the
    split). A budget that cannot pay the fixed costs and :data:`MIN_STEPS` steps is raised to the
    least that can (:func:`minimum_minutes`; ``asked_minutes`` keeps what was asked, for the warning
    and the report): by then the night has curated and published, and losing its model to an
    estimate a few minutes off would be worse than overrunning its window by them."""
    syn, train = config.synthesize, config.train
    asked = None
    if minutes < (least := minimum_minutes(config, work, rates)):  # then flexible pays MIN_STEPS steps
        asked, minutes = minutes, least
    fixed = fixed_seconds(config, work, rates)
    reserve = RESERVE_SHARE * minutes * 60
    flexible = minutes * 60 - reserve - sum(fixed.values())
    step = step_seconds(config, rates)
    n = work.corpus_docs

    # LLM generation: passages at the measured seconds per passage, over every slot
    llm = [g for g in syn.generators if g in LLM_GENERATORS and g in rates.llm_s_per_passage]
    llm_passages, candidates, per_passage, llm_seconds = 0, syn.candidates_per_passage, syn.max_pairs_per_passage, 0.0
    if llm:
        per_passage_s = sum(rates.llm_s_per_passage[g] for g in llm) / rates.slots
        affordable = LLM_SHARE * flexible / per_passage_s
        llm_passages = min(n, math.floor(affordable))
        if llm_passages == n and affordable >= 2 * n:  # every document is a passage: more samples of each
            scale = min(affordable / n, MAX_CANDIDATES / syn.candidates_per_passage)
            candidates = min(MAX_CANDIDATES, math.floor(syn.candidates_per_passage * scale))
            per_passage = max(syn.max_pairs_per_passage, candidates // syn.candidates_per_passage)
        llm_seconds = llm_passages * per_passage_s * candidates / syn.candidates_per_passage
    llm_pairs = llm_passages * LLM_KEEP_RATE * per_passage * len(llm)
    llm_filter = _filter_seconds(llm_passages * candidates * len(llm), rates)

    # training: the steps the rest allows, fed by inverse-cloze passages (their filtering paid first)
    trainable = 1 - (train.dev_fraction or 0)
    inverse_cloze = "inverse_cloze" in syn.generators
    left = flexible - llm_seconds - llm_filter
    steps = math.floor(left / step)
    ic_passages = _inverse_cloze_passages(steps, llm_pairs, n, trainable, config) if inverse_cloze else 0
    steps = math.floor((left - _filter_seconds(ic_passages, rates)) / step)
    if inverse_cloze:
        ic_passages = _inverse_cloze_passages(steps, llm_pairs, n, trainable, config)
    expected_pairs = math.floor(llm_pairs + ic_passages * INVERSE_CLOZE_KEEP_RATE)
    per_epoch = max(1, math.floor(expected_pairs * trainable / train.batch_size))
    epochs = min(MAX_EPOCHS, max(1, math.ceil(steps / per_epoch)))
    steps = max(MIN_STEPS, min(steps, epochs * per_epoch))

    stage_seconds = {
        "budget": fixed["budget"],
        "synthesize": fixed["synthesize"] + llm_seconds + llm_filter + _filter_seconds(ic_passages, rates),
        "train": fixed["train"] + steps * step,
        "evaluate": fixed["evaluate"],
    }
    return BudgetPlan(
        minutes=minutes, asked_minutes=asked, llm_passages=llm_passages, candidates_per_passage=candidates,
        max_pairs_per_passage=per_passage, inverse_cloze_passages=ic_passages,
        candidates=llm_passages * candidates * len(llm) + ic_passages, expected_pairs=expected_pairs,
        steps=steps, epochs=epochs, train_max_minutes=round((steps * step + reserve) / 60, 2),
        stage_minutes={s: round(v / 60, 2) for s, v in stage_seconds.items()},
        reserve_minutes=round(reserve / 60, 2), rates=rates)


def _filter_seconds(candidates: float, rates: Rates) -> float:
    """The consistency filter's seconds for ``candidates`` queries (one task, one slot)."""
    return candidates * QUERY_EMBED_COST / rates.encode_docs_per_s


def _inverse_cloze_passages(steps: int, llm_pairs: float, corpus_docs: int, trainable: float,
                            config: RefineryConfig) -> int:
    """Inverse-cloze passages whose kept pairs, beside the LLM's, fill ``steps`` batches in one pass
    (the dev split's share left out); at most the corpus."""
    wanted = steps * config.train.batch_size / trainable - llm_pairs
    return max(0, min(corpus_docs, math.ceil(wanted / INVERSE_CLOZE_KEEP_RATE)))


def apply_plan(config: RefineryConfig, plan: BudgetPlan) -> RefineryConfig:
    """``config`` with the plan's sizes in its synthesize and train sections."""
    data = config.model_dump(mode="json")
    data["synthesize"] |= {"passages": plan.llm_passages, "candidates_per_passage": plan.candidates_per_passage,
                           "max_pairs_per_passage": plan.max_pairs_per_passage,
                           "inverse_cloze_passages": plan.inverse_cloze_passages}
    data["train"] |= {"max_steps": plan.steps, "epochs": MAX_EPOCHS, "max_minutes": plan.train_max_minutes,
                      "fit_minutes": round(plan.steps * step_seconds(config, plan.rates) / 60, 2)}
    return parse_config(data, f"the budget plan of {plan.minutes:g} minutes")


def below_minimum_line(plan: BudgetPlan) -> str | None:
    """One line saying the budget was raised to the least the night needs (None when it was not)."""
    if plan.asked_minutes is None:
        return None
    return (f"budget.minutes {plan.asked_minutes:g} is below the least this corpus and machine need ({plan.minutes:g} "
            f"minutes: the pools' embeddings, {MIN_STEPS} training steps of {plan.rates.train_step_s:.1f} s, a "
            f"{RESERVE_SHARE:.0%} reserve): planned to {plan.minutes:g}; raise budget.minutes to at least that")
