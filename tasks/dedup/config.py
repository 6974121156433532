"""The one configuration model shared by every dedup step (exact keys, signatures, LSH, survivors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_NUM_PERM = 128
DEFAULT_THRESHOLD = 0.8
DEFAULT_WORD_NGRAM = 5
DEFAULT_CHAR_NGRAM = 9
DEFAULT_SEED = 1
DEFAULT_BATCH_CHARS = 256 * 1024
DEFAULT_BANDS_PER_BATCH = 4
DEFAULT_BUCKET_WINDOW = 16
# LSH is only the candidate filter when candidates are verified, so a missed pair costs far more
# than a spurious one: weight false negatives 99:1. Without verification datasketch's 50:50 applies.
VERIFIED_FALSE_POSITIVE_WEIGHT = 0.01
UNVERIFIED_FALSE_POSITIVE_WEIGHT = 0.5

ShingleKind = Literal["word", "char"]
SurvivorRule = Literal["longest", "first"]
Clustering = Literal["star", "components"]


class DedupConfig(BaseModel):
    """Options for exact and MinHash near-duplicate removal.

    Results never depend on `batch_chars` or `bands_per_batch` (they only bound memory), nor on
    how documents are sharded: a signature row depends only on its own text and this config.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    exact: bool = Field(
        default=True,
        description="Drop exact duplicates (after casefolding and collapsing whitespace) before near dedup.",
    )
    near: bool = Field(default=True, description="Drop MinHash near-duplicates.")
    shingle: ShingleKind = Field(
        default="word",
        description=(
            "Shingle unit. 'word': n consecutive tokens, a token being a maximal run of ASCII letters/digits "
            "or non-ASCII characters after casefolding. 'char': n consecutive characters of the casefolded "
            "text with whitespace runs collapsed to one space."
        ),
    )
    ngram: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description=(
            f"Shingle length in units. None: {DEFAULT_WORD_NGRAM} for word shingles, "
            f"{DEFAULT_CHAR_NGRAM} for char shingles. A document shorter than n units has one shingle, "
            "its whole text; a document with no unit has none."
        ),
    )
    num_perm: int = Field(
        default=DEFAULT_NUM_PERM,
        ge=8,
        le=1024,
        description="Signature length (MinHash permutations, realised as one-permutation-hashing bins).",
    )
    threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        gt=0.0,
        lt=1.0,
        description="Jaccard similarity of shingle sets at or above which two documents are near-duplicates.",
    )
    bands: int | None = Field(
        default=None,
        ge=1,
        description="LSH bands. None (with rows None): derived from threshold, see false_positive_weight.",
    )
    rows: int | None = Field(default=None, ge=1, description="Signature values per LSH band; set with bands.")
    false_positive_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description=(
            "Weight of the false-positive area when deriving bands x rows from threshold (datasketch's method; "
            f"false negatives get 1 minus it). None: {VERIFIED_FALSE_POSITIVE_WEIGHT} with verify on, "
            f"{UNVERIFIED_FALSE_POSITIVE_WEIGHT} (datasketch's default) with verify off."
        ),
    )
    verify: bool = Field(
        default=True,
        description=(
            "Keep an LSH candidate pair only if its signature-estimated Jaccard is at least threshold. "
            "Raises precision; recall then rests on the LSH candidate probability at the threshold."
        ),
    )
    bucket_window: int = Field(
        default=DEFAULT_BUCKET_WINDOW,
        ge=1,
        le=1024,
        description=(
            "Within one LSH bucket each row is paired with up to this many others, so buckets of up to window+1 "
            "rows yield all their pairs and huge buckets stay linear: under clustering 'star' the bucket's most "
            "preferred rows (the likeliest survivors), under 'components' its predecessors in doc_id order."
        ),
    )
    seed: int = Field(default=DEFAULT_SEED, ge=0, description="Seed of every hash function; changes all signatures.")
    batch_chars: int = Field(
        default=DEFAULT_BATCH_CHARS,
        ge=1,
        description=(
            "Characters of text hashed per vectorized batch in signatures() (a batch holds at least one doc); "
            "small batches stay in CPU cache. Bounds memory, never changes results."
        ),
    )
    bands_per_batch: int = Field(
        default=DEFAULT_BANDS_PER_BATCH,
        ge=1,
        description="LSH bands bucketed together; bounds memory to about rows x 8 bytes x this per document.",
    )
    clustering: Clustering = Field(
        default="star",
        description=(
            "How verified near-duplicate pairs become clusters. 'star': documents are visited in survivor order "
            "(see survivor); one not yet claimed is kept and claims its unclaimed near-duplicates, so every "
            "dropped document nearly duplicates (estimated Jaccard >= threshold) the one it is filed under. "
            "'components': every chain of pairs is one cluster (datatrove, NeMo Curator, text-dedup), so on text "
            "that overlaps in runs (chunks with overlap, quoted threads) a chain can drop documents that share "
            "nothing with their survivor; the run report's near_survivor_jaccard figures show it."
        ),
    )
    survivor: SurvivorRule = Field(
        default="longest",
        description=(
            "Which document of a duplicate cluster is kept. 'longest': most characters, ties to the smallest "
            "row index. 'first': the smallest row index (the flow sorts rows by doc_id)."
        ),
    )

    url: bool = Field(
        default=True,
        description=(
            "Keep one document per absolute URL (normalized at ingest): of the same URL read twice (re-crawls), "
            "the newest fetch (fetched_at) is kept and the other dropped as dedup_url; a newer fetch of a URL "
            "already in the dataset retires the old document (dedup_url), an older or unchanged one is dropped. "
            "Documents without a URL (or with a file path as theirs: pages read from a folder) are not affected."
        ),
    )
    url_blocklist: list[str] = Field(
        default_factory=list,
        description=(
            "Domains whose documents are dropped as url_blocklist, subdomains included: 'example.com' blocks "
            "example.com and ads.example.com (a URL, '*.' or a leading dot are taken off)."
        ),
    )
    url_blocklist_file: str | None = Field(
        default=None,
        description=(
            "A file of blocked domains, one per line ('#' starts a comment; hosts-file lines such as "
            "'0.0.0.0 ads.example.com' are not understood: give the domain alone), added to url_blocklist. "
            "Read on the workers: on a cluster, a path they all see."
        ),
    )

    @model_validator(mode="after")
    def _check_bands(self) -> DedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither (then they are derived from threshold)")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.near and self.clustering == "star" and not self.verify:
            raise ValueError(
                "clustering 'star' files each drop under a verified near-duplicate: set verify true, "
                "or clustering 'components' to cluster unverified LSH candidates"
            )
        return self

    @property
    def shingle_size(self) -> int:
        """The effective n of the n-gram shingles."""
        if self.ngram is not None:
            return self.ngram
        return DEFAULT_WORD_NGRAM if self.shingle == "word" else DEFAULT_CHAR_NGRAM

    @property
    def effective_false_positive_weight(self) -> float:
        if self.false_positive_weight is not None:
            return self.false_positive_weight
        return VERIFIED_FALSE_POSITIVE_WEIGHT if self.verify else UNVERIFIED_FALSE_POSITIVE_WEIGHT
