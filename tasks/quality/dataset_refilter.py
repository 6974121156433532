"""The work of `refinery refilter --dataset`: re-decide every document a dataset's versions scored,
from what each version kept of its quality stage, and bring back the documents that now pass.

Each published version keeps, under ``<dataset>/scored/added_in=VERSION/``, the night's ingest
document shards, the quality attributes of their documents (same stem) and dedup's drops (what
quality never scored). :func:`decide_scored_shard` re-decides one documents shard with the same
:func:`~tasks.quality.rules.decide` as the quality stage; :func:`returned_documents` writes the
documents that come back as a new file of the dataset and indexes them for later nights' dedup.
Plain functions: flows/refilter_dataset.py runs them as Prefect tasks on the Dask workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.storage import read_shard, write_shard
from refinery.storage.location import is_remote, location
from refinery.tasks.dedup import DedupConfig, deduplicate, exact_keys, signatures
from refinery.tasks.dedup.against import DatasetRef, match_dataset, unmatched, write_indexed
from refinery.tasks.exceptions import RefilterError
from refinery.tasks.quality import QualityConfig, decide
from refinery.tasks.quality.pii import redact_documents
from refinery.tasks.quality.refilter import decisions_digest, stored_attributes
from refinery.tasks.quality.shard_tasks import survivors

DECISIONS_SCHEMA = pa.schema([("doc_id", pa.string()), ("reason", pa.string()), ("scored_in", pa.string()),
                              ("source", pa.string()), ("location", pa.string())])
RETURNED_NAME = "returned.parquet"


def scored_shards(version: str, scored_files: Sequence[str]) -> list[dict[str, str]]:
    """The (documents, attributes, drops) triples of one version's scored files: one per documents
    shard, its attributes shard named by the same stem, dedup's drops shared by all."""
    by_name = {Path(f).name: f for f in scored_files}
    drops = by_name.get("drops.parquet")
    shards = []
    for name in sorted(n for n in by_name if n.startswith("documents-")):
        attributes = by_name.get("attributes-" + name.removeprefix("documents-"))
        if drops is None or attributes is None:
            raise RefilterError(f"version {version} kept {name} without its "
                                f"{'dedup drops' if drops is None else 'quality attributes'}: it cannot be re-decided")
        shards.append({"documents": by_name[name], "attributes": attributes, "drops": drops, "version": version})
    return shards


def decide_scored_shard(documents: str, attributes: str, drops: str, version: str, cfg: QualityConfig,
                        out_dir: str) -> dict[str, Any]:
    """Re-decide the documents quality scored in one shard of ``version`` (the shard less dedup's
    drops) under ``cfg``, from their stored attributes: a decisions shard (``doc_id, reason`` — null
    when it passes —, ``scored_in``, ``source``, ``location``) named by its decisions, so a rerun keeps
    what it already wrote for the same decisions."""
    docs = survivors(location(documents), location(drops), ["doc_id", "source", "location"])
    doc_ids = docs.column("doc_id").combine_chunks()
    attrs = stored_attributes(attributes, doc_ids) if docs.num_rows else {}
    reasons = decide(attrs, cfg) if attrs else [None] * len(doc_ids)
    stem = Path(documents).stem.removeprefix("documents-")
    out = location(out_dir) / f"decisions-{version}-{stem}.{decisions_digest(doc_ids, reasons)}.parquet"
    if not out.exists():
        write_shard(pa.table({"doc_id": doc_ids, "reason": pa.array(reasons, pa.string()),
                              "scored_in": pa.array([version] * len(doc_ids), pa.string()),
                              "source": docs.column("source").combine_chunks().cast(pa.string()),
                              "location": docs.column("location").combine_chunks().cast(pa.string())},
                             schema=DECISIONS_SCHEMA), out)
    failing = sum(r is not None for r in reasons)
    return {"decisions": str(out), "documents": documents, "version": version, "docs": len(reasons),
            "failing": failing}


def sweep_unpublished(docs_dir: str, index_dir: str, version: str) -> list[Path]:
    """Delete what a stopped attempt at publishing ``version`` left: its documents folder and its
    index files (nothing names them until the version is published). Call only under the home's
    run lock, for a version the catalog does not list. Returns what it deleted."""
    docs, index = location(docs_dir), location(index_dir)
    stale = sorted([*docs.glob("*.parquet"), *docs.glob(".*.tmp"), *index.glob(f"*/part=*/{version}.parquet"),
                    *index.glob(f"*/part=*/.{version}.parquet.*.tmp")], key=str)
    for path in stale:
        path.unlink(missing_ok=True)
    if not is_remote(docs) and docs.is_dir() and not any(docs.iterdir()):
        docs.rmdir()
    return stale


def returned_documents(picks: Sequence[tuple[str, Sequence[str]]], cfg: DedupConfig, dataset: DatasetRef,
                       docs_dir: str, index_dir: str, version: str,
                       quality: QualityConfig | None = None) -> dict[str, Any]:
    """Bring back the documents that now pass: ``picks`` names them per documents shard (a scored
    shard and the doc ids to take from it). Those that duplicate a current document of ``dataset``
    (exact or near, as a night's dedup matches them; ``dataset.retired`` includes what this refilter
    retires) or another document coming back (dedup within them, as within a night) stay out; the
    rest are written, whole, as ``docs_dir/returned.parquet`` and indexed under ``index_dir`` for
    the dedup of later nights (keys and signatures recomputed with ``cfg``, the dataset's dedup
    settings, from the original text, as a night's dedup computes them). Under ``quality`` (the
    refilter's quality config) with ``pii.mode: redact`` the written documents have their personal
    data redacted, as the quality stage writes its kept documents. Memory: the returned documents'
    texts, once."""
    tables = [read_shard(shard).filter(pc.field("doc_id").isin(pa.array(sorted(ids), pa.string())))
              for shard, ids in picks]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return {"files": [], "index_files": [], "returned": 0, "left_out": {}}
    rows = pa.concat_tables(tables, promote_options="default").sort_by("doc_id")
    texts = rows.column("text").to_pylist()
    doc_ids = rows.column("doc_id").to_numpy(zero_copy_only=False)
    keys = exact_keys(texts)
    sigs = signatures(texts, cfg)
    match = match_dataset(doc_ids, keys, sigs, cfg, dataset)
    rest = unmatched(match)
    within = deduplicate(keys[rest], sigs[rest], rows.column("n_chars").to_numpy()[rest], cfg)
    keep = rest[within.keep]
    # a document that now passes but duplicates one in the dataset, or another coming back, stays out
    left_out: dict[str, int] = {}
    for reason in [*match.reasons[match.reasons != ""], *within.reasons[~within.keep]]:
        left_out[str(reason)] = left_out.get(str(reason), 0) + 1
    if not keep.size:
        return {"files": [], "index_files": [], "returned": 0, "left_out": left_out}
    returned = rows.take(pa.array(keep))
    n_chars = returned.column("n_chars").to_numpy()
    if quality is not None:
        returned = redact_documents(returned, quality)
    path = write_shard(returned, location(docs_dir) / RETURNED_NAME)
    index_files = write_indexed(doc_ids[keep], n_chars, keys[keep], sigs[keep], cfg, index_dir, version, version)
    return {"files": [str(path)], "index_files": index_files, "returned": int(keep.size), "left_out": left_out}
