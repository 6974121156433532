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


class EvaluateConfig(BaseModel):
    """How headline -> article retrieval is scored.

    Queries are the headlines (the first line of each article), documents are the article bodies
    without the headline. Every member of the query's dedup cluster counts as relevant.
    """

    model_config = ConfigDict(extra="forbid")

    models: list[EvaluatedModel] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        min_length=1,
        description="Retrievers to score: 'base' (the packaged all-MiniLM-L6-v2), "
        "'tuned' (the fine-tuned model) and 'bm25' (lexical baseline).",
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
