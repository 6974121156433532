"""Quality-filter configuration: one sub-model per rule family, defaults = the published thresholds.

Two kinds of fields live here, and the difference matters for re-filtering:

* **thresholds** (every field named by a rule in :data:`tasks.quality.rules.RULES`, plus the
  classifier's ``mode``/``threshold``/``pareto_alpha`` and pii's ``mode`` and placeholders): they only
  change *decisions* (or, for pii, how the kept documents are written), so a run can re-decide from
  stored attributes (``decision_sql``) without re-scoring;
* **scoring parameters** (everything else, e.g. ``c4.min_words_per_line`` or ``langid.languages``):
  they change attribute *values*; :func:`tasks.quality.rules.family_fingerprints` hashes them so the
  flow can tell which families must be re-scored.

A threshold of ``None`` turns that rule off (as in datatrove); ``0`` is a real threshold.

``profile`` presets thresholds for a kind of corpus (:mod:`tasks.quality.profiles`): it is resolved
once, when the config is validated, under the fields the config sets itself. ``guard`` says when a
rule drops too much (:mod:`tasks.quality.guard`); neither changes an attribute value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from refinery.tasks.quality.profiles import Profile, apply_profile, describe_profiles

__all__ = [
    "C4Config",
    "ClassifierConfig",
    "FineWebConfig",
    "GuardConfig",
    "GopherQualityConfig",
    "GopherRepetitionConfig",
    "LangIdConfig",
    "PiiConfig",
    "QualityConfig",
    "SemDedupConfig",
    "STOP_WORDS",
]

# Gopher's stop words (Rae et al. 2021, as in datatrove); matched case-sensitively against words.
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
DEFAULT_LANGUAGES = ("en",)


# Characters language ID reads per document (see LangIdConfig.max_chars).
DEFAULT_LANGID_MAX_CHARS = 1000

class _Family(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LangIdConfig(_Family):
    """fastText ``lid.176`` language identification (datatrove ``LanguageFilter`` semantics)."""

    enabled: bool = Field(True, description="Compute langid.* attributes and apply the language rule.")
    languages: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LANGUAGES),
        min_length=1,
        description="ISO 639 codes to keep (lid.176 labels, e.g. 'en', 'de'). A document is kept when one of "
        "them scores above min_score. Scoring parameter: one langid.<code> attribute per language.",
    )
    min_score: float = Field(
        0.65, ge=0, le=1, description="Drop unless some allowed language's probability is > this (datatrove 0.65)."
    )
    per_paragraph: bool = Field(
        False,
        description="Score each blank-line-separated paragraph and average probabilities weighted by "
        "paragraph length, instead of scoring the whole document at once. Scoring parameter.",
    )
    max_chars: int | None = Field(
        DEFAULT_LANGID_MAX_CHARS,
        ge=1,
        description="Only look at the first max_chars characters of each document (or paragraph); None = all. "
        "fastText cost grows with length, and a few hundred words identify a language: at 1000, language ID "
        "runs ~1.8x faster on BBC-sized documents with the same keep/drop decisions as the whole text (and as "
        "datatrove's, which reads it all; bench.quality). Scoring parameter.",
    )


class GopherRepetitionConfig(_Family):
    """Gopher repetition removal (Rae et al. 2021, Table A1), as in datatrove's GopherRepetitionFilter."""

    enabled: bool = Field(True, description="Compute gopher_repetition.* attributes and apply these rules.")
    drop_empty: bool = Field(True, description="Drop documents with no characters (datatrove reason 'empty').")
    max_dup_para_frac: float | None = Field(
        0.3, ge=0, le=1, description="Max fraction of paragraphs that repeat an earlier one."
    )
    max_dup_para_char_frac: float | None = Field(
        0.2, ge=0, le=1, description="Max fraction of characters in repeated paragraphs."
    )
    max_dup_line_frac: float | None = Field(0.3, ge=0, le=1, description="Max fraction of lines that repeat an earlier one.")
    max_dup_line_char_frac: float | None = Field(0.2, ge=0, le=1, description="Max fraction of characters in repeated lines.")
    max_top_2gram_char_frac: float | None = Field(
        0.2, ge=0, le=1, description="Max characters covered by the most frequent word 2-gram, over all characters."
    )
    max_top_3gram_char_frac: float | None = Field(0.18, ge=0, le=1, description="As above, for 3-grams.")
    max_top_4gram_char_frac: float | None = Field(0.16, ge=0, le=1, description="As above, for 4-grams.")
    max_dup_5gram_char_frac: float | None = Field(
        0.15, ge=0, le=1, description="Max fraction of characters inside repeated word 5-grams."
    )
    max_dup_6gram_char_frac: float | None = Field(0.14, ge=0, le=1, description="As above, for 6-grams.")
    max_dup_7gram_char_frac: float | None = Field(0.13, ge=0, le=1, description="As above, for 7-grams.")
    max_dup_8gram_char_frac: float | None = Field(0.12, ge=0, le=1, description="As above, for 8-grams.")
    max_dup_9gram_char_frac: float | None = Field(0.11, ge=0, le=1, description="As above, for 9-grams.")
    max_dup_10gram_char_frac: float | None = Field(0.10, ge=0, le=1, description="As above, for 10-grams.")


class GopherQualityConfig(_Family):
    """Gopher quality heuristics (Rae et al. 2021), as in datatrove's GopherQualityFilter."""

    enabled: bool = Field(True, description="Compute gopher_quality.* attributes and apply these rules.")
    min_doc_words: int | None = Field(50, ge=0, description="Min words (tokens with a non-punctuation character).")
    max_doc_words: int | None = Field(100_000, ge=0, description="Max words.")
    min_avg_word_length: float | None = Field(3, ge=0, description="Min mean word length in characters.")
    max_avg_word_length: float | None = Field(10, ge=0, description="Max mean word length in characters.")
    max_symbol_word_ratio: float | None = Field(
        0.1, ge=0, description="Max '#' per token, and max ellipses ('...' or '…') per token (two rules, one threshold)."
    )
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1, description="Max fraction of lines starting with '•' or '-'.")
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1, description="Max fraction of lines ending with an ellipsis.")
    min_alpha_words_ratio: float | None = Field(
        0.8, ge=0, le=1, description="Min fraction of tokens containing a letter (datatrove: max_non_alpha_words_ratio)."
    )
    min_stop_words: int | None = Field(2, ge=0, description="Min number of distinct stop words present.")
    stop_words: list[str] = Field(
        default_factory=lambda: list(STOP_WORDS), description="Stop words counted by min_stop_words. Scoring parameter."
    )


class C4Config(_Family):
    """C4's clean-up heuristics (Raffel et al. 2020), as in datatrove's C4QualityFilter.

    Like C4, the line rules (terminal punctuation, words per line, word length, javascript, policy)
    *remove lines* before sentences are counted; Refinery keeps the text whole and drops a document
    when fewer than ``min_num_sentences`` sentences survive, or on lorem ipsum / curly brackets.
    The line fractions are stored too, with optional document-level thresholds (off by default).
    """

    enabled: bool = Field(True, description="Compute c4.* attributes and apply these rules.")
    min_num_sentences: int | None = Field(5, ge=0, description="Min sentences in the lines that survive the line rules.")
    filter_lorem_ipsum: bool = Field(True, description="Drop documents with a surviving line containing 'lorem ipsum'.")
    filter_curly_bracket: bool = Field(True, description="Drop documents with a surviving line containing '{'.")
    remove_citations: bool = Field(True, description="Strip '[1]', '[edit]', '[citation needed]' before line checks. Scoring parameter.")
    filter_no_terminal_punct: bool = Field(
        True, description="Remove lines not ending in . ? ! \" ' (or ending in '...'). Scoring parameter."
    )
    min_words_per_line: int | None = Field(3, ge=0, description="Remove lines with fewer words. Scoring parameter.")
    max_word_length: int | None = Field(1000, ge=1, description="Remove lines with a longer word. Scoring parameter.")
    filter_javascript: bool = Field(True, description="Remove lines mentioning 'javascript'. Scoring parameter.")
    filter_policy: bool = Field(True, description="Remove lines mentioning terms of use / privacy / cookie policy. Scoring parameter.")
    min_terminal_punct_lines_ratio: float | None = Field(
        None, ge=0, le=1, description="Optional: min fraction of non-empty lines ending in terminal punctuation."
    )
    max_short_lines_ratio: float | None = Field(
        None, ge=0, le=1, description="Optional: max fraction of non-empty lines with fewer than min_words_per_line words."
    )
    max_javascript_lines: int | None = Field(None, ge=0, description="Optional: max lines mentioning 'javascript'.")
    max_policy_lines: int | None = Field(None, ge=0, description="Optional: max lines with policy phrases.")


class FineWebConfig(_Family):
    """FineWeb's custom heuristics (Penedo et al. 2024), as in datatrove's FineWebQualityFilter."""

    enabled: bool = Field(True, description="Compute fineweb.* attributes and apply these rules.")
    drop_empty: bool = Field(True, description="Drop documents without a non-blank line (datatrove reason 'empty').")
    min_line_punct_ratio: float | None = Field(
        0.12, ge=0, le=1, description="Min fraction of lines ending in terminal punctuation (datatrove line_punct_thr)."
    )
    line_punct_exclude_zero: bool = Field(
        False, description="Do not apply min_line_punct_ratio to documents where no line ends in punctuation."
    )
    max_short_line_ratio: float | None = Field(
        0.67, ge=0, le=1, description="Max fraction of lines of at most short_line_length characters."
    )
    short_line_length: int = Field(30, ge=0, description="A line this long or shorter is short. Scoring parameter.")
    max_char_dup_ratio: float | None = Field(
        0.01, ge=0, le=1, description="Max fraction of characters in lines repeating an earlier line."
    )
    max_new_line_ratio: float | None = Field(0.3, ge=0, description="Max newlines per word (datatrove new_line_ratio).")


class ClassifierConfig(_Family):
    """A fastText quality classifier trained on the user's own notion of 'good' (DCLM / FineWeb-Edu style)."""

    enabled: bool = Field(False, description="Train the classifier in the flow and filter with its score.")
    positives: str | None = Field(
        None,
        description="Where good examples come from: a file (one document per line, or .jsonl with a 'text' field), "
        "a folder (one document per .txt/.md file), or 'sql:SELECT text FROM ...' over the catalog.",
    )
    negatives_per_positive: float = Field(1.0, gt=0, description="Negatives sampled from the corpus per positive.")
    max_positives: int | None = Field(50_000, ge=1, description="Cap on positives used for training.")
    mode: Literal["threshold", "pareto"] = Field(
        "threshold", description="'threshold': drop if score < threshold; 'pareto': keep if pareto(alpha) > 1 - score."
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Min positive-class probability in 'threshold' mode.")
    pareto_alpha: float = Field(9.0, gt=0, description="Pareto shape in 'pareto' mode (GPT-3 used 9).")
    holdout: float = Field(0.2, gt=0, lt=1, description="Fraction of examples held out for accuracy / AUC.")
    epochs: int = Field(5, ge=1, description="fastText epochs.")
    lr: float = Field(0.5, gt=0, description="fastText learning rate.")
    word_ngrams: int = Field(2, ge=1, description="fastText wordNgrams.")
    dim: int = Field(64, ge=2, description="fastText embedding dimension.")
    min_count: int = Field(1, ge=1, description="fastText minCount.")
    max_chars: int = Field(10_000, ge=100, description="Characters of each document used for training and scoring.")
    seed: int = Field(0, description="Seed for the train/holdout split, negative sampling and fastText.")


class PiiConfig(_Family):
    """Personal data (:mod:`tasks.quality.pii`): e-mail addresses, public IP addresses and phone
    numbers found in each document, counted as ``pii.*`` attributes and, by ``mode``, replaced by a
    placeholder in the kept documents (as Dolma and datatrove do) or the document dropped."""

    enabled: bool = Field(True, description="Look for personal data and compute the pii.* attributes "
                          "(pii.emails, pii.ips, pii.phones and their sum pii.count).")
    apply_to: Literal["web", "all"] = Field(
        "web", description="'web': only documents with a URL (web pages from HTML/WARC/WET files, records with a "
        "`url` field); 'all': every document. Documents left out get NULL pii.* attributes and are never redacted "
        "or dropped. Scoring parameter.")
    mode: Literal["redact", "count", "drop"] = Field(
        "redact", description="'redact': each match in a kept document is replaced by its placeholder in the "
        "quality stage's corpus (what the dataset publishes, synthesis and exports read; the ingested documents "
        "keep the original text); 'count': attributes only; 'drop': drop documents with more than max_count "
        "matches (reason pii.found), the documents kept are not redacted. A refilter can change it.")
    max_count: int = Field(0, ge=0, description="In 'drop' mode, drop a document with more matches than this "
                           "(pii.count > max_count).")
    emails: bool = Field(True, description="Look for e-mail addresses (pii.emails). Scoring parameter.")
    ips: bool = Field(True, description="Look for public IPv4 and IPv6 addresses; private, loopback, documentation "
                      "and multicast ones are nobody's (pii.ips). Scoring parameter.")
    phones: bool = Field(True, description="Look for phone numbers: international (+CC), North American and "
                         "national ones with a trunk 0, written with separators (pii.phones). Scoring parameter.")
    email_placeholder: str = Field("|||EMAIL_ADDRESS|||", description="What replaces an e-mail address in 'redact' "
                                   "mode (Dolma's). A refilter can change it.")
    ip_placeholder: str = Field("|||IP_ADDRESS|||", description="What replaces an IP address in 'redact' mode.")
    phone_placeholder: str = Field("|||PHONE_NUMBER|||", description="What replaces a phone number in 'redact' mode.")


class GuardConfig(_Family):
    """The drop-rate guard: a rule that drops more than ``max_drop_share`` of the documents that reach
    it (those no earlier rule dropped) is named at the end of the run, in ``runs.warnings`` and in
    the report, with an example document and the setting that changes it. Language ID and the
    heuristic rules are judged; the trained classifier, which drops what it was trained to, is not."""

    max_drop_share: float | None = Field(
        0.3, ge=0, le=1, description="Warn when one rule drops more than this share of the documents that reached "
        "it (dropped / reached, reached = not dropped by an earlier rule). None = no guard.")
    min_reached: int = Field(
        20, ge=1, description="Judge a rule only when at least this many documents reached it (a rule dropping 2 "
        "of 3 says little).")
    action: Literal["warn", "fail"] = Field(
        "warn", description="'warn': the run completes and says so; 'fail': the run fails after the quality stage "
        "has written its outputs (DropRateError, exit 1), so `refinery refilter` can re-decide it from the stored "
        "scores and `refinery run --resume` go on. For unattended runs, where a silent loss is worse than an alert.")


# SemDeDup (Abbas et al. 2023): cosine above 1 - epsilon is a duplicate. Under all-MiniLM-L6-v2 on
# the whole BBC corpus (1,925 kept articles, clusters: 40), what epsilon 0.1 dropped: above 0.95 the
# same story republished or updated ("Brown names 16 March for Budget" twice at 0.953, "Talks aim to
# avert pension strike" / "Stalemate in pension strike talks" 0.965); at 0.90-0.93 different events
# of one running story ("Ebbers denies WorldCom fraud" / "Worldcom director ends evidence" 0.904,
# "Yukos unit fetches $9bn at auction" / "Yukos seeks court action on sale" 0.902), which a
# retrieval corpus must keep. So 0.05.
DEFAULT_SEMDEDUP_EPSILON = 0.05
# k-means is fitted on at most this many embeddings (384 float32 each: ~77 MB), a seeded sample.
DEFAULT_SEMDEDUP_SAMPLE_DOCS = 50_000
# With clusters unset, k = documents / this: each cluster's pairwise cosines stay ~1000 x 1000.
DEFAULT_SEMDEDUP_DOCS_PER_CLUSTER = 1_000
DEFAULT_SEMDEDUP_SEED = 0


class SemDedupConfig(_Family):
    """Semantic dedup (SemDeDup) of the documents the rules kept: embedded with the evaluate
    encoder, clustered by k-means, and within each cluster a document whose cosine to one already
    kept is above ``1 - epsilon`` is dropped (reason ``semdedup``). Not a scored family: a refilter
    runs it again over its own corpus, reusing the embeddings, so every option here can change. A
    dataset's later nights use its first semdedup night's clusters and compare with the documents
    earlier nights kept: there, only ``epsilon`` may change."""

    enabled: bool = Field(False, description="Drop semantic near-duplicates of kept documents (reason semdedup; "
                          "the kept one in dedup_clusters, kind 'semantic').")
    epsilon: float = Field(DEFAULT_SEMDEDUP_EPSILON, gt=0, lt=1, description="Drop a document whose cosine to a "
                           "kept document of its cluster is above 1 - epsilon (0.05: cosine > 0.95).")
    clusters: int | None = Field(None, ge=1, description="k of k-means; None = one cluster per "
                                 f"{DEFAULT_SEMDEDUP_DOCS_PER_CLUSTER:,} documents (at most the sample's size). "
                                 "A dataset keeps the k of its first semdedup night: set it for a dataset that "
                                 "will grow.")
    sample_docs: int = Field(DEFAULT_SEMDEDUP_SAMPLE_DOCS, ge=1, description="k-means is fitted on a seeded "
                             "sample of at most this many documents' embeddings (bounds its memory).")
    seed: int = Field(DEFAULT_SEMDEDUP_SEED, description="Seed of the k-means sample and initialisation.")


class QualityConfig(BaseModel):
    """All quality filtering. Families run (and decide) in this order: langid, gopher_repetition,
    gopher_quality, c4, fineweb, classifier, pii -- FineWeb's pipeline order (its PII step comes last)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Profile = Field(
        "web", description="Threshold preset for a kind of corpus; any threshold set in the config wins over it. "
        "Profiles change thresholds only, so `refinery refilter` moves a run between them without re-scoring. "
        + describe_profiles() + ". What each drops: docs/curation.md.")

    langid: LangIdConfig = Field(default_factory=LangIdConfig, description="Language identification.")
    gopher_repetition: GopherRepetitionConfig = Field(
        default_factory=GopherRepetitionConfig, description="Gopher repetition rules."
    )
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig, description="Gopher quality rules.")
    c4: C4Config = Field(default_factory=C4Config, description="C4 rules.")
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig, description="FineWeb rules.")
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig, description="Learned quality classifier.")
    pii: PiiConfig = Field(default_factory=PiiConfig, description="Personal data: e-mail, IP addresses, phone numbers.")
    guard: GuardConfig = Field(default_factory=GuardConfig, description="Drop-rate guard.")
    semdedup: SemDedupConfig = Field(default_factory=SemDedupConfig,
                                     description="Semantic dedup of the kept documents (after every rule).")

    @model_validator(mode="before")
    @classmethod
    def _resolve_profile(cls, data: object) -> object:
        return apply_profile(data)
