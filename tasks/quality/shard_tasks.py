"""The work of the quality stage, one shard of dedup survivors at a time: score and decide it
(:func:`quality_shard`), re-decide it from its stored attributes (:func:`refilter_shard`), and train
the optional classifier. Plain functions: flows/quality.py wraps them as Prefect tasks."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.storage import read_shard, write_shard
from refinery.storage.location import location
from refinery.tasks.quality import (
    ClassifierConfig,
    LangIdConfig,
    LanguageIdentifier,
    QualityClassifier,
    QualityConfig,
    decide,
    read_text_source,
    score_documents,
    train_classifier,
)
from refinery.tasks.quality.pii import document_has_url, redact_documents, redaction_key
from refinery.tasks.quality.refilter import decisions_digest, stored_attributes


@functools.lru_cache(maxsize=2)
def _language_identifier(settings: str) -> LanguageIdentifier:
    # one model load per worker process and language settings, not one per shard
    return LanguageIdentifier.from_config(LangIdConfig.model_validate_json(settings))


def attributes_table(doc_ids: pa.Array, attrs: dict[str, np.ndarray]) -> pa.Table:
    """Dolma-style long table: one row per (doc, attribute). A value not defined for a document (NaN
    in ``attrs``) is stored as NULL: in SQL NaN sorts above every number (``value > 0`` would hold
    for it) and poisons ``avg``, where NULL is left out."""
    names = sorted(attrs)
    n = len(doc_ids)
    return pa.table({
        "doc_id": pa.concat_arrays([doc_ids] * len(names)) if names else pa.array([], pa.string()),
        "name": pa.array(np.repeat(np.array(names, dtype=object), n), pa.string()),
        "value": pa.array(np.concatenate([np.asarray(attrs[k], dtype=np.float64) for k in names])
                          if names else np.array([], dtype=np.float64), pa.float64(), from_pandas=True),
    })


@functools.lru_cache(maxsize=2)
def _classifier(path: str, max_chars: int) -> QualityClassifier:
    return QualityClassifier(path, max_chars=max_chars)


def doc_keys(doc_ids: pa.Array) -> np.ndarray:
    """The uint64 behind each hex doc id: seeds per-document draws (Pareto noise) stably."""
    return np.array([int(d, 16) for d in doc_ids.to_pylist()], dtype=np.uint64)


def survivors(shard: Path, dedup_drops: Path, columns: list[str] | None = None) -> pa.Table:
    """The documents of an ingest shard that dedup kept."""
    docs = read_shard(shard, columns)
    return docs.filter(pc.invert(pc.is_in(docs.column("doc_id"), value_set=_doc_ids(dedup_drops))))


def _doc_ids(drops: Path) -> pa.Array:
    # cast: an empty drops shard written without a schema has a null-typed column
    return read_shard(drops, ["doc_id"]).column("doc_id").combine_chunks().cast(pa.string())


def train_quality_classifier(positives: str, shards: list[str], dedup_drops: Path, cfg: ClassifierConfig,
                             out_path: Path) -> dict[str, Any]:
    """Positives from a file/folder (or a Parquet shard of an SQL answer), negatives sampled from the corpus.

    Negatives are the dedup survivors with the smallest seeded hash of their doc id, so the sample
    is stable and spread over the whole corpus.
    """
    good = (read_shard(positives, ["text"]).column("text").to_pylist() if positives.endswith(".parquet")
            else read_text_source(positives))
    if cfg.max_positives is not None:
        good = good[: cfg.max_positives]
    corpus = pa.concat_tables([survivors(location(s), dedup_drops, ["doc_id", "text"]) for s in sorted(shards)])
    want = min(corpus.num_rows, max(2, round(len(good) * cfg.negatives_per_positive)))
    keys = doc_keys(corpus.column("doc_id").combine_chunks()) ^ np.uint64(cfg.seed)
    bad = corpus.column("text").take(pa.array(np.argsort(keys, kind="stable")[:want])).to_pylist()
    report = train_classifier(good, bad, out_path=out_path, cfg=cfg)
    return {"path": report.path, "accuracy": report.accuracy, "auc": report.auc,
            "n_train": report.n_train, "n_test": report.n_test, "positives": len(good), "negatives": len(bad)}


def shard_paths(shard: Path, out_dir: Path) -> dict[str, Path]:
    """Where :func:`quality_shard` writes the attributes, drops and kept documents of an ingest shard."""
    stem = shard.stem.removeprefix("documents-")
    return {k: out_dir / f"{k}-{stem}.parquet" for k in ("attributes", "drops", "corpus")}


def quality_shard(shard: Path, dedup_drops: Path, out_dir: Path, cfg: QualityConfig,
                  classifier: str | None = None) -> dict[str, Any]:
    """Score every surviving doc of ``shard``; write attributes, drops and kept-document shards."""
    paths = shard_paths(shard, out_dir)
    docs = survivors(shard, dedup_drops)
    if not all(p.exists() for p in paths.values()):
        texts = docs.column("text").to_pylist()
        langid = _language_identifier(cfg.langid.model_dump_json()) if cfg.langid.enabled else None
        model = _classifier(classifier, cfg.classifier.max_chars) if classifier else None
        doc_ids = docs.column("doc_id").combine_chunks()
        attrs = score_documents(texts, cfg, langid=langid, classifier=model, keys=doc_keys(doc_ids),
                                has_url=document_has_url(docs))
        write_shard(attributes_table(doc_ids, attrs), paths["attributes"])
        _write_decisions(docs, decide(attrs, cfg), paths["drops"], paths["corpus"], cfg, attrs.get("pii.count"))
    kept = read_shard(paths["corpus"], ["doc_id"]).num_rows
    return {"shard": str(shard), "docs": docs.num_rows, "kept": kept, "dropped": docs.num_rows - kept,
            **{k: str(v) for k, v in paths.items()}}


def refilter_shard(shard: Path, dedup_drops: Path, out_dir: Path, cfg: QualityConfig) -> dict[str, Any]:
    """Re-decide the surviving docs of ``shard`` under ``cfg`` from the attributes
    :func:`quality_shard` stored for them; no rule is scored again.

    The drops and kept documents are written as ``drops-<stem>.<digest>.parquet`` and
    ``corpus-<stem>.<digest>.parquet``, the digest taken from the decisions: a rerun (after a
    refilter was killed) keeps what it already wrote for the same decisions, and no file written
    under other thresholds can pass for these. Under ``quality.pii.mode: redact`` the digest also
    covers the redaction settings, since the kept documents' text depends on them.
    """
    paths = shard_paths(shard, out_dir)
    docs = survivors(shard, dedup_drops)
    doc_ids = docs.column("doc_id").combine_chunks()
    attrs = stored_attributes(paths["attributes"], doc_ids)
    # a shard without survivors stores no attribute: nothing to decide
    reasons = decide(attrs, cfg) if attrs else [None] * len(doc_ids)
    digest = decisions_digest(doc_ids, reasons)
    if key := redaction_key(cfg):
        digest = hashlib.sha256(f"{digest}\t{key}".encode()).hexdigest()[:16]
    drops, corpus = (p.with_name(f"{p.stem}.{digest}.parquet") for p in (paths["drops"], paths["corpus"]))
    if not (drops.exists() and corpus.exists()):
        _write_decisions(docs, reasons, drops, corpus, cfg, attrs.get("pii.count"))
    dropped = sum(r is not None for r in reasons)
    return {"shard": str(shard), "docs": docs.num_rows, "kept": docs.num_rows - dropped, "dropped": dropped,
            "drops": str(drops), "corpus": str(corpus)}


def _write_decisions(docs: pa.Table, reasons: list[str | None], drops: Path, corpus: Path, cfg: QualityConfig,
                     pii_count: np.ndarray | None) -> None:
    """The dropped docs' (doc_id, stage, reason) to ``drops``, the kept docs whole to ``corpus``
    (personal data redacted under ``quality.pii.mode: redact``; ``pii_count``, the documents'
    pii.count when scored, spares scanning those with none)."""
    reasons = np.array([r or "" for r in reasons], dtype=object)
    dropped = reasons != ""
    write_shard(pa.table({
        "doc_id": docs.column("doc_id").combine_chunks().filter(pa.array(dropped)),
        "stage": pa.array(["quality"] * int(dropped.sum()), pa.string()),
        "reason": pa.array(reasons[dropped].tolist(), pa.string()),
    }), drops)
    kept = pa.array(~dropped)
    counts = None if pii_count is None else np.asarray(pii_count)[~dropped]
    write_shard(redact_documents(docs.filter(kept), cfg, counts), corpus)
