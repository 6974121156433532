"""Options of the train stage: fine-tuning all-MiniLM-L6-v2 with MultipleNegativesRankingLoss."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_EPOCHS = 1
DEFAULT_BATCH_SIZE = 32
# Sequences per forward pass inside a step (GradCache): the loss and its gradient are those of the
# whole batch, peak memory that of 16. A plain step of 32 pairs with hard negatives at 256 tokens
# peaked at 9.7 GB RSS, one with mini-batches of 16 at 3.0 GB, in about the same time.
DEFAULT_MINI_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE = 2e-5
DEFAULT_WARMUP_RATIO = 0.1
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_MAX_GRAD_NORM = 1.0
DEFAULT_MAX_SEQ_LENGTH = 256
# sentence-transformers' MNRL default: cosine similarities times 20 (temperature 0.05).
DEFAULT_SCALE = 20.0
DEFAULT_SEED = 0
# The dev split: a tenth of the passages' pairs, scored every 10 steps (the bundled run trains ~25
# steps; embedding ~80 dev pairs at 256 tokens costs about half a step on 2 cores).
DEFAULT_DEV_FRACTION = 0.1
# Fewer dev pairs than this make the dev metric noise: such a run trains on every pair instead.
DEFAULT_DEV_MIN_PAIRS = 16
DEFAULT_EVAL_EVERY = 10
# A checkpoint (model, optimizer, best model so far: ~370 MB for all-MiniLM-L6-v2) every 10 steps:
# about a second to write, against ~2 minutes of CPU training lost to a kill between two.
DEFAULT_CHECKPOINT_EVERY = 10
# Earlier nights' training pairs replayed beside a night's new ones, per new pair: a model trained on
# from the promoted one keeps seeing what made it, so a night of few pairs does not pull it aside.
DEFAULT_REPLAY_RATIO = 1.0
# The promotion gate (paired bootstrap on the primary task's nDCG@10): not worse by the point
# estimate, and a 95% lower bound above half a point: a tie with noise promotes, a likely loss does not.
DEFAULT_PROMOTE_MIN_DELTA = 0.0
DEFAULT_PROMOTE_MIN_CI_LOW = -0.005


# Teacher scoring (MarginMSE): candidates per dev query the teacher reranks to be measured, texts per
# forward pass, and the weight of MarginMSE beside MNRL.
DEFAULT_TEACHER_RERANK_DEPTH = 20
DEFAULT_TEACHER_BATCH_SIZE = 16
DEFAULT_MARGIN_WEIGHT = 1.0
# The data map (Dataset Cartography): pairs mapped, a seeded sample so each checkpoint embeds a bounded
# set (128 pairs: 15.6 s on 2 busy cores at 128 tokens, three quarters of a step of 32, once per
# `eval_every` steps; bench/RESULTS.md); competitors per mapped pair, half the default batch.
DEFAULT_MAP_PAIRS = 128
DEFAULT_MAP_CANDIDATES = 15
# The regions, absolute rather than quantiles (a quantile would call a third of the pairs hard even
# when the model learns them all): chance among 1 + 15 candidates (+ a negative) is ~0.06, and a
# positive ranked first by a cosine margin of 0.1 at scale 20 already takes ~0.4; under 0.25 across
# the checkpoints the model keeps preferring other passages. A pair that moves from 0.1 to 0.5 over
# three checkpoints has a std of ~0.16: at or above 0.15 it is ambiguous, not hard.
DEFAULT_HARD_MAX_CONFIDENCE = 0.25
DEFAULT_AMBIGUOUS_MIN_VARIABILITY = 0.15
TeacherKind = Literal["none", "cross_encoder", "query_likelihood", "fusion"]
TrainLoss = Literal["mnrl", "marginmse", "mnrl+marginmse"]


class TeacherConfig(BaseModel):
    """A teacher that scores (query, passage) pairs: its margins train the model (MarginMSE) and it
    drops likely false negatives. It is measured on the dev split first and used only if it beats the
    model training starts from there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TeacherKind = Field(
        default="none",
        description="'cross_encoder': a sentence-transformers CrossEncoder folder (`path`); 'query_likelihood': "
        "the mean log-probability of the query's tokens given the passage under a causal LM (`path`: a "
        "transformers model folder or GGUF file; empty: the local generator's SmolLM2-135M-Instruct); 'fusion': "
        "BM25 and the model training starts from, their scores combined with a weight fitted on the dev split; "
        "'none': no teacher (MNRL only).",
    )
    path: str | None = Field(default=None, description="The teacher's model folder or file (see `kind`).")
    batch_size: int = Field(default=DEFAULT_TEACHER_BATCH_SIZE, ge=1,
                            description="(query, passage) pairs the teacher scores per forward pass.")
    rerank_depth: int = Field(
        default=DEFAULT_TEACHER_RERANK_DEPTH, ge=2,
        description="The dev check: each dev query's top this many passages by the starting model (among the dev "
        "passages and up to 1,000 training passages as distractors) are reranked by the teacher; the teacher is "
        "used only if its nDCG@10 there beats the starting model's.")
    false_negative_margin: float | None = Field(
        default=0.0,
        description="A hard negative the teacher scores at least its positive's score minus this (in the teacher's "
        "own units) is dropped as a likely false negative (the pair keeps training without it, counted with its "
        "reason). null: no filtering.")
    margin_weight: float = Field(default=DEFAULT_MARGIN_WEIGHT, gt=0,
                                 description="Weight of MarginMSE in `mnrl+marginmse`.")

    @model_validator(mode="after")
    def _path(self) -> "TeacherConfig":
        if self.kind == "cross_encoder" and not self.path:
            raise ValueError("teacher kind 'cross_encoder' needs `path`: a sentence-transformers CrossEncoder folder")
        return self


class CartographyConfig(BaseModel):
    """A data map of the training pairs (Dataset Cartography, Swayamdipta et al. 2020): per mapped pair,
    the model's confidence in its positive at each dev-scoring checkpoint, and the region of the map
    its mean and spread put it in; pairs a map put in the hard-to-learn region can be left out of later
    trainings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False,
        description="Map a seeded sample of the training pairs (`pairs`) while training: before the first step, "
        "every `eval_every` steps and after the last, each mapped query's softmax probability (at `scale`) of its "
        "positive among its positive, its hard negative and the positives of `candidates` other mapped pairs. "
        "Confidence: the mean over those checkpoints; variability: their standard deviation; correctness: the "
        "share where the positive ranks first. The map is the `pair_map` table.",
    )
    pairs: int = Field(default=DEFAULT_MAP_PAIRS, ge=2, le=4096,
                       description="Training pairs mapped (a seeded sample, `seed`); each checkpoint embeds their "
                       "queries, positives and negatives.")
    candidates: int = Field(default=DEFAULT_MAP_CANDIDATES, ge=1,
                            description="Other mapped pairs whose positives compete with a pair's own (a fixed "
                            "seeded group per pair, like in-batch negatives: none shares a query, a passage or a "
                            "document with it).")
    hard_max_confidence: float = Field(
        default=DEFAULT_HARD_MAX_CONFIDENCE, gt=0, lt=1,
        description="Region `hard_to_learn`: confidence below this and variability below "
        "`ambiguous_min_variability` (the model keeps giving most of the probability to other passages).")
    ambiguous_min_variability: float = Field(
        default=DEFAULT_AMBIGUOUS_MIN_VARIABILITY, gt=0, le=0.5,
        description="Region `ambiguous`: variability at or above this. The rest is `easy_to_learn`.")
    drop_hard_to_learn: bool = Field(
        default=False,
        description="Leave out of training the pairs whose latest map (of an earlier run: a replayed night, or the "
        "run whose synthesis this one reuses) put them in `hard_to_learn`; each is a `pair_drops` row with reason "
        "`cartography`.")


class PromotionConfig(BaseModel):
    """When the night's model replaces the dataset's promoted model (see ``train.init``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_delta: float = Field(
        default=DEFAULT_PROMOTE_MIN_DELTA,
        description="Least mean nDCG@10 difference, night's model − promoted model (the packaged base model on "
        "a dataset's first night), on the evaluation's primary task (the first of `evaluate.queries`, else the "
        "built-in task), for the night's model to be promoted.",
    )
    min_ci_low: float = Field(
        default=DEFAULT_PROMOTE_MIN_CI_LOW,
        description="The lower bound of that difference's paired bootstrap 95% interval must be above this. "
        "With `evaluate.bootstrap_samples: 0` there is no interval and nothing is promoted.",
    )


class TrainConfig(BaseModel):
    """How the embedding model is fine-tuned on the kept (query, passage) pairs.

    The loss is MultipleNegativesRankingLoss: each query must rank its own passage above every
    other passage in the batch (and above its hard negative, where the pair has one:
    ``synthesize.hard_negatives``), so a larger batch gives
    more negatives per step at the same cost per pair. A seeded share of the passages (the dev
    split) is held out of training and scored as training goes; the saved model is the best
    scored step. A killed training resumes from its last checkpoint.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=DEFAULT_EPOCHS, ge=1, le=20, description="Passes over the training pairs.")
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        ge=2,
        description="Pairs per step; each query's in-batch negatives are the other batch_size - 1 passages. No two "
        "pairs of a batch share a query, a passage or a document (positive or hard negative): such a pair waits for "
        "a later batch.",
    )
    mini_batch_size: int | None = Field(
        default=DEFAULT_MINI_BATCH_SIZE,
        ge=1,
        description="Embed each step's batch this many texts at a time (CachedMultipleNegativesRankingLoss, "
        "GradCache): the same loss over the whole batch with the memory of a mini-batch, so batch_size can grow "
        "without running out of memory. null: one pass per batch (MultipleNegativesRankingLoss).",
    )
    learning_rate: float = Field(
        default=DEFAULT_LEARNING_RATE, gt=0, le=1e-2, description="Peak AdamW learning rate."
    )
    warmup_ratio: float = Field(
        default=DEFAULT_WARMUP_RATIO,
        ge=0,
        le=1,
        description="Share of steps with linearly rising learning rate; it then decays linearly to 0.",
    )
    weight_decay: float = Field(default=DEFAULT_WEIGHT_DECAY, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(
        default=DEFAULT_MAX_GRAD_NORM, gt=0, description="Gradient norm clipping threshold."
    )
    max_seq_length: int = Field(
        default=DEFAULT_MAX_SEQ_LENGTH,
        ge=8,
        le=512,
        description="Token limit for queries and passages during training (cost grows with it). The saved "
        "model keeps the base model's limit, so base and tuned are evaluated alike.",
    )
    scale: float = Field(
        default=DEFAULT_SCALE, gt=0, description="MNRL similarity scale (inverse temperature)."
    )
    seed: int = Field(default=DEFAULT_SEED, description="Seed for the dev split, shuffling, batching and dropout.")
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="Train at most this many steps (batches), the learning-rate schedule (warm-up, linear decay) "
        "planned for them; null: every batch of `epochs` passes. `budget.minutes` sets it from the measured "
        "seconds per step.",
    )
    max_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Stop training once its steps have taken this many minutes (a resumed training counts the "
        "minutes before its checkpoint), after the step that crossed it: the dev split is scored there and the "
        "best scored step saved, as at the end. The schedule stays planned for the steps planned, so a training "
        "stopped early ends with a learning rate above 0. null: no time limit. `budget.minutes` sets it to train's "
        "planned minutes plus the budget's reserve.",
    )
    fit_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Fit the steps to this many minutes of training: once `eval_every` steps after the first have "
        "been timed (a dev scoring among them), the steps are re-planned to the number those seconds per step allow "
        "(at most `epochs` passes over the pairs) and the learning-rate schedule with them; `max_steps` is the first "
        "plan. A training shorter than that window keeps its plan. null: the steps stay as planned. "
        "`budget.minutes` sets it to train's planned minutes, so a calibration that misjudged the step time "
        "neither leaves the night's minutes unused nor runs into `max_minutes`.",
    )
    max_pairs: int | None = Field(
        default=None,
        ge=1,
        description="Train on at most this many of the kept training pairs, a seeded choice (`seed`), before the dev "
        "split; null: all. `refinery ablate` sets it so compared variants train on the same budget.",
    )
    dev_fraction: float | None = Field(
        default=DEFAULT_DEV_FRACTION,
        gt=0,
        lt=1,
        description="Share of the training pairs' passages held out of training as the dev split (chosen by a "
        "seeded hash of the doc id, `seed`; every pair of a chosen passage is held out, and no training pair "
        "keeps a hard negative from it), scored every `eval_every` steps and at the end; the saved model is the "
        "step with the best dev MRR@10 (ties: the lower dev loss, then the earlier step). null: no dev split, "
        "the last step is saved.",
    )
    dev_min_pairs: int = Field(
        default=DEFAULT_DEV_MIN_PAIRS,
        ge=1,
        description="Fewest pairs a dev split may have; when `dev_fraction` of the passages hold fewer, there is "
        "no dev split (every pair is trained on, the last step is saved, the stats say why).",
    )
    eval_every: int = Field(
        default=DEFAULT_EVAL_EVERY,
        ge=1,
        description="Score the dev split every this many steps (and before the first and after the last step). "
        "Dev score: each dev query ranks its passage among all dev passages (MRR@10, accuracy@1, and the MNRL "
        "loss over them).",
    )
    loss: TrainLoss = Field(
        default="mnrl",
        description="'mnrl': MultipleNegativesRankingLoss; 'marginmse': sentence-transformers' MarginMSELoss on the "
        "teacher's margins (pairs without a hard negative are not trained on); 'mnrl+marginmse': both, summed "
        "(MarginMSE weighted by `teacher.margin_weight`) on the batches with hard negatives. The student's score "
        "for MarginMSE is `scale` × cosine; the teacher's margins are rescaled by one constant so that their "
        "spread matches the starting model's. Without a usable teacher (`teacher`), MNRL.",
    )
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="What scores the pairs for MarginMSE.")
    init: Literal["promoted", "base"] = Field(
        default="promoted",
        description="What a night trains from: 'promoted', the dataset's promoted model (the packaged base model "
        "until a night's model is promoted; `refinery models` lists them), or 'base', the packaged base model "
        "every night. A night's model is promoted when the gate (`train.promotion`) finds it not worse than the "
        "promoted one; it is then copied, with its ONNX export and a model card, to "
        "`<home>/models/dataset=NAME/promoted/`.",
    )
    replay_ratio: float = Field(
        default=DEFAULT_REPLAY_RATIO,
        ge=0,
        description="Beside the night's new training pairs, train on a seeded sample of the kept training pairs "
        "of the dataset's earlier nights, at most this many per new pair (pairs whose passage or hard negative "
        "the dataset has retired since are left out). 0: the night's pairs only.",
    )
    cartography: CartographyConfig = Field(default_factory=CartographyConfig,
                                           description="A data map of the training pairs, and dropping its "
                                           "hard-to-learn ones.")
    promotion: PromotionConfig = Field(default_factory=PromotionConfig,
                                       description="The gate a night's model passes to be promoted.")
    checkpoint_every: int | None = Field(
        default=DEFAULT_CHECKPOINT_EVERY,
        ge=1,
        description="Save model, optimizer, scheduler, random state and step every this many steps, atomically, "
        "in the train stage's folder (checkpoint/); a train stage that finds one for the same pairs and options "
        "continues from it and ends as an uninterrupted training would. Removed once the model is saved. null: "
        "no checkpoints.",
    )

    @model_validator(mode="after")
    def _loss_needs_teacher(self) -> "TrainConfig":
        if self.loss != "mnrl" and self.teacher.kind == "none":
            raise ValueError(f"train.loss {self.loss!r} trains on a teacher's margins: set train.teacher.kind "
                             "(cross_encoder, query_likelihood or fusion)")
        return self
