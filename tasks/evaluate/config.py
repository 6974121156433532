"""Options of the evaluate stage (headline -> article retrieval)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODELS: tuple[str, ...] = ("base", "tuned", "bm25")
DEFAULT_ENCODE_BATCH_SIZE = 64
# Lucene's BM25 defaults, which bm25s also uses.
DEFAULT_BM25_K1 = 1.5
DEFAULT_BM25_B = 0.75

EvaluatedModel = Literal["base", "tuned", "bm25"]
# How texts are embedded at inference (training always runs in PyTorch).
EncoderBackend = Literal["torch", "onnx", "onnx-int8"]
# 'auto': headline retrieval when a curated document has a title, else held-out synthetic pairs.
EvaluationTask = Literal["auto", "headline", "synthetic_heldout"]


class EvaluateConfig(BaseModel):
    """How retrieval over the curated corpus is scored.

    With titles (task 'headline') the queries are the titles and the documents the bodies without
    them. Without titles (task 'synthetic_heldout') the queries are synthetic queries of passages
    the model was never trained on (see ``synthesize.heldout_fraction``). Every kept member of the
    query's dedup cluster counts as relevant.
    """

    model_config = ConfigDict(extra="forbid")

    task: EvaluationTask = Field(
        default="auto",
        description="What the queries are. 'headline': document titles (never shown to the generator or "
        "trainer). 'synthetic_heldout': synthetic queries of passages held out from training. 'auto': "
        "'headline' when some curated document has a title, else 'synthetic_heldout'. Decided by the "
        "synthesize stage, which holds pairs out only for 'synthetic_heldout'.",
    )

    models: list[EvaluatedModel] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        min_length=1,
        description="Retrievers to score: 'base' (the packaged all-MiniLM-L6-v2), "
        "'tuned' (the fine-tuned model) and 'bm25' (lexical baseline).",
    )
    encoder: EncoderBackend = Field(
        default="torch",
        description="Inference path for embedding (consistency filter, hard negatives, evaluation): 'torch' "
        "(sentence-transformers on PyTorch), 'onnx' or 'onnx-int8' (ONNX Runtime, exported locally from the "
        "model folder and cached in the data home).",
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
