"""Options of the model half's budget: the minutes synthesize, train and evaluate may take together."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The nightly window `refinery serve` and `refinery deploy` give a run whose config sets no
# budget.minutes: four hours of a night, after a working day's input has arrived.
DEFAULT_NIGHTLY_MINUTES = 240.0


class BudgetConfig(BaseModel):
    """How long the model half may take. With ``minutes`` set, the run measures this machine's (or
    cluster's) rates first and sizes synthesize and train to fit; unset, the sizes are the config's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minutes: float | None = Field(
        default=None,
        gt=0,
        description="Wall-clock minutes for synthesize + train + evaluate. Before synthesize, a short calibration "
        "(under a minute on 2 cores) measures the LLM generator's seconds per passage, the encoder's documents per "
        "second and one training step's seconds; the run then sets `synthesize.passages`, "
        "`candidates_per_passage`, `max_pairs_per_passage`, `inverse_cloze_passages`, `train.max_steps`, "
        "`train.epochs` and `train.max_minutes` to fit (written to the run's config.yaml: a resumed run keeps the "
        "plan). The pools (`synthesize.filter_pool_docs`, `evaluate.pool_docs`) are fixed costs the plan subtracts "
        "first; a budget that leaves too little for them and 10 training steps is an error naming the least that "
        "would do. null: the config's sizes, no calibration. `refinery serve`/`deploy` give runs without one "
        f"{DEFAULT_NIGHTLY_MINUTES:.0f} minutes (their `--budget-minutes`).",
    )
