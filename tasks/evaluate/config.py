"""Options of the evaluate stage: which query sets, which retrievers, how large a pool of documents."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# 'hybrid' costs little: it reuses the tuned model's pool embeddings and the BM25 index, and its
# weight is fitted on the train stage's dev split (a few hundred pairs embedded once).
DEFAULT_MODELS: tuple[str, ...] = ("base", "tuned", "bm25", "hybrid")
DEFAULT_ENCODE_BATCH_SIZE = 64
# Lucene's BM25 defaults, which bm25s also uses.
DEFAULT_BM25_K1 = 1.5
DEFAULT_BM25_B = 0.75

EvaluatedModel = Literal["base", "tuned", "bm25", "hybrid"]
# How texts are embedded at inference (training always runs in PyTorch).
EncoderBackend = Literal["torch", "onnx", "onnx-int8"]
# The built-in query set beside `evaluate.queries`; 'auto' picks by what the corpus has.
EvaluationTask = Literal["auto", "headline", "synthetic_heldout", "none"]
QueriesFormat = Literal["auto", "beir", "jsonl", "parquet"]
# Task names the stage uses itself (metrics.task); a query set may not take one.
RESERVED_TASK_NAMES = frozenset({"headline", "synthetic_heldout", "same_label", "pairs"})

# The model half's budgets. On 2 cores the encoder embeds ~25-33 documents/s with torch, ~3x that with
# onnx-int8 (the default encoder; bench.encode): a 10,000-document pool is ~2 minutes per model with
# int8 (~5-7 with torch), whatever the size of the corpus; queries are short and cheap. 2,000 queries keep every headline of the
# bundled corpus (1,977), and a sample that large puts a standard error of ~0.01 on nDCG@10.
DEFAULT_MAX_QUERIES = 2000
DEFAULT_POOL_DOCS = 10_000
DEFAULT_SEED = 0
# Resamples of the paired bootstrap: with 2,000, an interval's ends vary from seed to seed by ~2% of
# its width (standard deviation over 20 seeds, 2,000 queries), and a task costs ~0.05 s of CPU.
DEFAULT_BOOTSTRAP_SAMPLES = 2000
DEFAULT_QRELS_SPLIT = "test"


class QuerySetConfig(BaseModel):
    """One set of the user's own queries with relevance judgements, scored as its own task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="Task name of this set in `metrics.task` and the report.")
    path: str = Field(description="A BEIR-style folder (`queries.jsonl` with `_id` and `text`, `qrels/<split>.tsv` "
                      "with a header line, then query-id, corpus-id, score), or one .jsonl/.jsonl.gz/.parquet file of "
                      "(query, record id[, relevance]) rows.")
    format: QueriesFormat = Field("auto", description="`auto`: a folder is `beir`, a file goes by its extension.")
    split: str = Field(DEFAULT_QRELS_SPLIT, description="BEIR: the qrels file read, `qrels/<split>.tsv`.")
    source: str | None = Field(None, description="Match record ids only in the ingest source of this name "
                               "(its `name`, default its path); unset: in every source.")
    query_field: str = Field("query", description="JSONL/Parquet: field holding the query text.")
    record_id_field: str = Field("record_id", description="JSONL/Parquet: field holding the relevant document's "
                                 "record id (the `id_field` value of the ingest source, else its location).")
    relevance_field: str | None = Field("relevance", description="JSONL/Parquet: field holding the relevance "
                                        "(> 0 is relevant); a row without it counts as relevant.")
    query_id_field: str | None = Field(None, description="JSONL/Parquet: field identifying a query; unset: rows "
                                       "with the same query text are one query.")

    @model_validator(mode="after")
    def _not_reserved(self) -> QuerySetConfig:
        if self.name in RESERVED_TASK_NAMES:
            raise ValueError(f"query set name {self.name!r} is reserved ({', '.join(sorted(RESERVED_TASK_NAMES))})")
        return self


class EvaluateConfig(BaseModel):
    """How retrieval over the curated corpus is scored.

    Each query set is a task of its own: every set in ``queries`` (the user's queries and
    judgements), and one built-in set chosen by ``task``: with titles ('headline') the queries are
    the titles and the documents the bodies without them; without titles ('synthetic_heldout') the
    queries are synthetic queries of passages the model was never trained on (see
    ``synthesize.heldout_fraction``). Every kept member of a relevant document's dedup cluster
    counts as relevant. At most ``max_queries`` queries of a set are scored, against a pool of
    ``pool_docs`` documents: every relevant document of those queries plus seeded random
    distractors, the same for every model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queries: list[QuerySetConfig] = Field(
        default_factory=list,
        description="The user's own query sets with judgements, each scored as task `name`. Checked before "
        "any stage runs: a missing or malformed set, or one none of whose record ids is an input record, is "
        "an error.",
    )
    task: EvaluationTask = Field(
        default="auto",
        description="The built-in query set scored beside `queries`. 'headline': document titles (never shown "
        "to the generator or trainer; an error if no curated document has one). 'synthetic_heldout': synthetic "
        "queries of passages held out from training. 'none': only `queries`. 'auto': 'headline' when some "
        "curated document has a title, else 'synthetic_heldout' if `queries` is empty, else none. Decided by "
        "the synthesize stage, which holds pairs out only for 'synthetic_heldout'.",
    )
    max_queries: int = Field(
        default=DEFAULT_MAX_QUERIES,
        ge=1,
        description="Queries scored per query set: a larger set is sampled (seeded by `seed`, by query). "
        "2,000 keeps every headline of the bundled corpus (1,977); a sample that large puts a standard error "
        "of about 0.01 on nDCG@10.",
    )
    pool_docs: int = Field(
        default=DEFAULT_POOL_DOCS,
        ge=1,
        description="Documents each model embeds and ranks: every relevant document of the scored queries plus "
        "seeded random distractors from the curated corpus up to this many (the whole corpus when it is "
        "smaller; the relevant documents always, even beyond it). Bounds the model half whatever the corpus "
        "size: on 2 cores ~5-7 minutes per model with torch at the default 10,000.",
    )
    seed: int = Field(default=DEFAULT_SEED, description="Seed of the query samples, of the pool's distractors and "
                      "of the bootstrap's resamples.")
    same_label: bool = Field(
        default=True,
        description="Also score task 'same_label' when the pool's documents have labels (`documents.label`, from "
        "each source's `label_field`; a text folder: the subfolder): each of at most `max_queries` sampled "
        "labelled pool documents is a query, every other pool document with its label is relevant, the query "
        "itself is left out of its ranking. Dense models query with the pool's embedding of the document (nothing "
        "embedded again), BM25 with its text. Without labels, or with a single one, the task is skipped and the "
        "reason recorded in the stage's stats and the report.",
    )
    bootstrap_samples: int = Field(
        default=DEFAULT_BOOTSTRAP_SAMPLES,
        ge=0,
        description="Resamples of the queries for the paired bootstrap 95% intervals on nDCG@10, per task; seeded "
        "by `seed`. Model 'tuned' gets tuned − base and tuned − bm25 (`ndcg@10_delta`, `ndcg@10_vs_bm25`, each with "
        "`_ci_low`/`_ci_high`), model 'hybrid' hybrid − tuned and hybrid − bm25 (`ndcg@10_vs_tuned`, "
        "`ndcg@10_vs_bm25`). 0: no intervals.",
    )

    models: list[EvaluatedModel] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        min_length=1,
        description="Retrievers to score: 'base' (the packaged all-MiniLM-L6-v2), "
        "'tuned' (the fine-tuned model), 'bm25' (lexical baseline) and 'hybrid' (BM25 + tuned: w x tuned + "
        "(1 − w) x bm25 of scores min-max normalized per query, w fitted on the train stage's dev split, never "
        "on an evaluation set, and recorded as metric `fusion_weight`; it reuses the tuned model's embeddings "
        "and the BM25 index; without a dev split it is not scored, and the stats and report say why).",
    )
    encoder: EncoderBackend = Field(
        default="onnx-int8",
        description="Inference path for embedding (consistency filter, hard negatives, evaluation): 'torch' "
        "(sentence-transformers on PyTorch), 'onnx' (ONNX Runtime, fp32: the same embeddings, ~2x torch on "
        "2 cores) or 'onnx-int8' (MatMul weights of every layer but the first in int8: ~3x torch, nDCG@10 "
        "within 0.003 of it on the bundled corpus; bench/RESULTS.md). The ONNX graph is exported locally "
        "from the model folder on first use and cached in the data home's cache/onnx/, keyed by the folder's "
        "content. Training always runs in PyTorch.",
    )
    encode_batch_size: int = Field(
        default=DEFAULT_ENCODE_BATCH_SIZE, ge=1, description="Texts per forward pass when embedding."
    )
    max_seq_length: int | None = Field(
        default=None,
        ge=8,
        le=512,
        description="Token limit for embedding documents, the same for base and tuned (None: each model's own; "
        "256 for all-MiniLM-L6-v2 and for models saved by the train stage).",
    )
    bm25_k1: float = Field(default=DEFAULT_BM25_K1, ge=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(default=DEFAULT_BM25_B, ge=0, le=1, description="BM25 length normalisation.")
    bm25_stopwords: Literal["english", "none"] = Field(
        default="english", description="Stopword list removed before BM25 scoring."
    )

    @model_validator(mode="after")
    def _query_sets(self) -> EvaluateConfig:
        names = [q.name for q in self.queries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"query set names must differ: {', '.join(twice)} given more than once")
        if self.task == "none" and not self.queries:
            raise ValueError("task 'none' scores only `queries`, and none is configured")
        return self
