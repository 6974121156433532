"""What a refilter needs besides :func:`~tasks.quality.rules.decide`: a finished quality stage's
attributes read back per document, a name for a set of decisions, which families a new config
would score differently, and the later stages a refilter makes unfinished.

A refilter re-decides a finished run under new thresholds from the attributes the quality stage
stored (Dolma's attributes), shard by shard, with the same ``decide`` that decided while scoring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.storage import StageMarker, read_shard
from refinery.tasks.quality.config import QualityConfig
from refinery.tasks.quality.rules import active_rules, family_fingerprints

__all__ = ["LATER_STAGES", "decisions_digest", "remove_stale_decisions", "rescored_families",
           "stored_attributes", "unfinish"]

# The stages that read the quality stage's corpus: a refilter makes them unfinished.
LATER_STAGES = ("synthesize", "train", "evaluate")


def stored_attributes(path: str | Path, doc_ids: pa.Array) -> dict[str, np.ndarray]:
    """Attribute name -> float64 array aligned with ``doc_ids``, from a long attributes shard
    (``doc_id, name, value``); NaN where a document has no value (NaN never fails a rule)."""
    table = read_shard(path, ["doc_id", "name", "value"])
    position = pc.index_in(table.column("doc_id"), value_set=doc_ids)
    names = table.column("name")
    out: dict[str, np.ndarray] = {}
    for name in pc.unique(names).to_pylist():
        rows = pc.and_(pc.equal(names, name), pc.is_valid(position))
        column = np.full(len(doc_ids), np.nan)
        column[position.filter(rows).to_numpy()] = (
            table.column("value").filter(rows).to_numpy(zero_copy_only=False).astype(np.float64))
        out[name] = column
    return out


def decisions_digest(doc_ids: pa.Array | Sequence[str], reasons: Sequence[str | None]) -> str:
    """A short hash of (doc_id, reason) for every document, in order: names the files that hold them."""
    h = hashlib.sha256()
    for doc_id, reason in zip(doc_ids.to_pylist() if isinstance(doc_ids, pa.Array) else doc_ids, reasons, strict=True):
        h.update(f"{doc_id}\t{reason or ''}\n".encode())
    return h.hexdigest()[:16]


def rescored_families(fingerprints: dict[str, str], cfg: QualityConfig) -> list[str]:
    """Families ``cfg`` enables whose attributes would differ from those stored under ``fingerprints``
    (a finished quality stage's): they need a new run, not a refilter. A family the stage did not
    score at all counts only when one of its rules is on: the refilter reads nothing of it (``pii``
    in mode redact or count, on a run scored before the family existed, redacts from the text)."""
    new = family_fingerprints(cfg)
    reads = {rule.family for rule, _, _ in active_rules(cfg)}
    return sorted(f for f in new if fingerprints.get(f) != new[f] and (f in fingerprints or f in reads))


def unfinish(stage_dirs: Iterable[Path]) -> None:
    """Remove the completion markers of these stages, so a resumed run redoes them."""
    for stage_dir in stage_dirs:
        StageMarker(stage_dir).path.unlink(missing_ok=True)


def remove_stale_decisions(out_dir: Path, current: Iterable[str]) -> list[Path]:
    """Delete the drops and corpus shards in a quality stage folder other than ``current`` (those its
    marker names): what earlier decisions (the scoring run's, an earlier refilter's) left. Call only
    once the marker names ``current``. Returns what it deleted."""
    keep = {Path(p).name for p in current}
    stale = sorted(p for pattern in ("drops-*.parquet", "corpus-*.parquet") for p in out_dir.glob(pattern)
                   if p.name not in keep)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
