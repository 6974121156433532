"""Rephrasing the web (WRAP, Maini et al. 2024): a generator rewrites some of the chosen passages in
configured styles (``synthesize.rephrase``), and each rewrite is a derived document linked to its
original, stored in `rephrasings` with its outcome.

A rephrasing is judged, not silently lost: every attempt is a row, the failed ones with ``kept``
false and their reason (:data:`REASONS`):

- ``rephrase_empty``: nothing left once a preamble line ("Here is the paraphrase:") is taken off;
- ``rephrase_unfinished``: the answer hit ``rephrase.max_new_tokens`` before it ended a sentence
  (one that ended one is cut after its last complete sentence and kept);
- ``rephrase_copy``: its words, in order, are the shown original's or a stretch of them (an echo).

With ``rephrase.as_passages`` the kept rephrasings are a passages shard of their own, which every
query generator reads like the chosen passages. Their pairs carry the rephrasing's doc id; the
consistency filter counts the original document as the hit, and a pair whose original the
evaluation holds out is rejected as ``rephrase_heldout`` (:func:`tasks.synthesize.shard_tasks.filter_pairs`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from refinery.storage import read_shard, read_shards, write_shard
from refinery.tasks.evaluate.names import content_key
from refinery.tasks.synthesize.config import RephraseStyle, SynthesizeConfig
from refinery.tasks.synthesize.diversity import text_diversity, words
from refinery.tasks.synthesize.generators.clean import truncate_passage
from refinery.tasks.synthesize.shard_tasks import PASSAGES_PER_TASK, worker_generator

REPHRASE_EMPTY = "rephrase_empty"
REPHRASE_UNFINISHED = "rephrase_unfinished"
REPHRASE_COPY = "rephrase_copy"
REASONS = (REPHRASE_EMPTY, REPHRASE_UNFINISHED, REPHRASE_COPY)
# The `metrics` task of the rephrasings' diversity, and the `model` of the originals' figures.
REPHRASINGS_TASK = "rephrasings"
ORIGINALS = "originals"
# Passages per rephrasing task, every style: SmolLM2 takes ~20 s a rephrasing on one core, so a few
# minutes a task with two styles.
REPHRASE_PER_TASK = 8
# Derived doc ids are the original's with this and the style appended (style names are [a-z0-9_]).
DERIVED_MARK = "#wrap-"
SYSTEM = "You rewrite documents faithfully: keep every fact, add none, and answer with the rewritten text only."

REPHRASING_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("original_doc_id", pa.string()), ("style", pa.string()),
    ("generator", pa.string()), ("text", pa.string()), ("kept", pa.bool_()), ("reason", pa.string()),
])

_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)]*(?=\s|$)")


def rephrasing_id(original_doc_id: str, style: str) -> str:
    """The derived document's id: stable, and read back to its original and style by eye."""
    return f"{original_doc_id}{DERIVED_MARK}{style}"


def messages(passage: str, style: RephraseStyle, *, max_passage_chars: int) -> list[dict[str, str]]:
    """The chat that asks for one rephrasing (the passage cut as the query generators cut it)."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{style.prompt}\n\n{truncate_passage(passage, max_passage_chars)}"}]


def judge(answer: str, finished: bool, shown: str) -> tuple[str, str | None]:
    """(text, reason) of one answer: tidied (a preamble line ending in ':' off, an answer cut by
    the token limit ended after its last complete sentence), and the reason it fails (``None``:
    kept). ``shown`` is the original as the generator saw it."""
    lines = answer.strip().splitlines()
    if lines and lines[0].rstrip().endswith(":"):
        lines = lines[1:]
    text = "\n".join(lines).strip()
    if not words(text):
        return text, REPHRASE_EMPTY
    if not finished:
        ends = list(_SENTENCE_END.finditer(text))
        if not ends:
            return text, REPHRASE_UNFINISHED
        text = text[: ends[-1].end()]
    if f" {' '.join(words(text))} " in f" {' '.join(words(shown))} ":
        return text, REPHRASE_COPY
    return text, None


def rephrase_slices(cfg: SynthesizeConfig, training_passages: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of the rephrasing tasks over the first ``rephrase.documents`` of the
    ``training_passages`` (none when ``rephrase.styles`` is empty)."""
    count = min(cfg.rephrase.documents, training_passages) if cfg.rephrase.styles else 0
    return [(a, min(a + REPHRASE_PER_TASK, count)) for a in range(0, count, REPHRASE_PER_TASK)]


def rephrase_passages(passages: Path, start: int, stop: int, cfg: SynthesizeConfig, out_dir: Path,
                      cache_dir: Path) -> str:
    """Rephrase passages ``[start, stop)`` of the passages shard in every style of
    ``cfg.rephrase``; the shard of their `rephrasings` rows (each attempt, failed ones with their
    reason). Named after the passages shard (named by its documents and the config), so a rerun
    reuses it and other passages never do."""
    out = Path(out_dir) / f"rephrasings-{Path(passages).stem.removeprefix('passages-')}-{start:06d}.parquet"
    if out.exists():
        return str(out)
    r = cfg.rephrase
    rows = read_shard(passages).slice(start, stop - start)
    doc_ids, texts = rows.column("doc_id").to_pylist(), rows.column("text").to_pylist()
    asks = [(d, t, s) for d, t in zip(doc_ids, texts) for s in r.styles]
    # the query generators' backends: one model load, endpoint, retry policy and answer cache
    backend = worker_generator(r.generator, cfg.model_dump_json(), Path(cache_dir))
    answers = backend.complete([messages(t, s, max_passage_chars=cfg.max_passage_chars) for _, t, s in asks],
                               max_tokens=r.max_new_tokens)
    records = []
    for (d, t, s), (answer, finished) in zip(asks, answers):
        text, reason = judge(answer, finished, truncate_passage(t, cfg.max_passage_chars))
        records.append({"doc_id": rephrasing_id(d, s.name), "original_doc_id": d, "style": s.name,
                        "generator": r.generator, "text": text, "kept": reason is None, "reason": reason})
    return str(write_shard(pa.Table.from_pylist(records, schema=REPHRASING_SCHEMA), out))


def rephrased_passages(rephrasing_shards: list[str], passages: Path, rephrased: int, cfg: SynthesizeConfig,
                       out_dir: Path) -> dict[str, Any]:
    """The kept rephrasings as a passages shard (``doc_id``, ``text``, ``original_doc_id``; none
    without ``rephrase.as_passages`` or a kept one), what became of every attempt per style, and
    the diversity of the kept rephrasings per style beside that of the first ``rephrased``
    passages as shown to the generator (:func:`tasks.synthesize.diversity.text_diversity`)."""
    table = read_shards(sorted(rephrasing_shards))
    kept = table.filter(table.column("kept"))
    styles, reasons = table.column("style").to_pylist(), table.column("reason").to_pylist()
    outcome = Counter(zip(styles, reasons))
    by_style = {s: {"attempted": styles.count(s), "kept": outcome[(s, None)], **{r: outcome[(s, r)] for r in REASONS}}
                for s in dict.fromkeys(styles)}
    originals = [truncate_passage(t, cfg.max_passage_chars)
                 for t in read_shard(passages).slice(0, rephrased).column("text").to_pylist()]
    diversity = {ORIGINALS: text_diversity(originals, seed=cfg.seed)}
    kept_styles, kept_texts = kept.column("style").to_pylist(), kept.column("text").to_pylist()
    for s in by_style:
        diversity[s] = text_diversity([t for k, t in zip(kept_styles, kept_texts) if k == s], seed=cfg.seed)
    path, docs = None, 0
    if cfg.rephrase.as_passages and kept.num_rows:
        ids = kept.column("doc_id").to_pylist()
        path = str(write_shard(kept.select(["doc_id", "text", "original_doc_id"]),
                               Path(out_dir) / f"passages-rephrased-{content_key(ids, cfg.model_dump_json())}.parquet"))
        docs = kept.num_rows
    return {"path": path, "docs": docs, "by_style": by_style, "diversity": diversity}


def rephrased_generation_slices(cfg: SynthesizeConfig, docs: int) -> list[tuple[str, int, int]]:
    """(generator, start, stop): the generation tasks over the rephrased passages shard, every
    generator reading every rephrasing."""
    return [(g, a, min(a + PASSAGES_PER_TASK[g], docs)) for g in cfg.generators
            for a in range(0, docs, PASSAGES_PER_TASK[g])]


def diversity_rows(stats: dict[str, Any] | None) -> list[tuple[str, str, str, float]]:
    """The stage's `metrics` rows of the rephrasings: (style or 'originals', 'rephrasings', metric,
    value)."""
    return [(m, REPHRASINGS_TASK, k, float(v)) for m, d in ((stats or {}).get("diversity") or {}).items()
            for k, v in d.items()]
