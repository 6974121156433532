"""Tonight's documents against the dataset they join: what is already there, before dedup within the night.

For each of the night's documents (rows sorted by doc_id), in this order:

1. **Its own doc id is in the dataset.** Same exact key (normalized text hash): the record did not
   change, it is dropped as ``dataset_unchanged`` (skipped: nothing to score or publish). A
   different key: the record changed; it goes on as a new document, matched against everything
   but its own old version, which publishing retires (``source_changed``).
2. **Its exact key is a current document's** (another doc id): dropped as ``dedup_exact``, filed
   under that document.
3. **An LSH band key is shared with current documents** and the estimated Jaccard with one of them
   reaches the threshold (when ``verify``): dropped as ``dedup_near``, filed under the most similar
   one (ties: the smallest doc id), so each drop is a verified pair with its survivor, never a chain.

A published document is never dropped by a later night: the dataset is stable. What is left goes
through dedup within the night as before (tasks/dedup/clusters.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from refinery.storage import fixed_size_list, read_shard, read_shards, to_matrix
from refinery.storage.dataset_index import (EXACT_BAND, doc_ids_of, doc_numbers, indexed_exact_keys, indexed_signatures,
                                            lookup_keys, write_index)
from refinery.tasks.dedup.clusters import REASON_EXACT, REASON_KEPT, REASON_NEAR
from refinery.tasks.dedup.config import DedupConfig
from refinery.tasks.dedup.exact import exact_keys
from refinery.tasks.dedup.lsh import _band_hashes, lsh_params
from refinery.tasks.dedup.minhash import EMPTY_SIGNATURE_VALUE, estimated_jaccard, signatures
from refinery.tasks.dedup.urls import fetch_times, url_index_rows, url_keys

REASON_UNCHANGED = "dataset_unchanged"
# Documents indexed at once when a night publishes (~0.3 GB of keys and signatures at 128 perms)
INDEX_BATCH_DOCS = 100_000
# dedup_clusters.kind of a night's document filed under a document of an earlier night
KIND_EXACT_EARLIER = "exact_earlier_night"
KIND_NEAR_EARLIER = "near_earlier_night"


@dataclass(frozen=True)
class DatasetRef:
    """What a night's dedup needs of its dataset: the published index files and what is retired."""

    index_files: tuple[str, ...]
    retired: pa.Table  # (doc uint64, added_in) of every retired document of the dataset

    @classmethod
    def of(cls, index_files: list[str], retired: pa.Table) -> "DatasetRef":
        """From the catalog's answer: index files and retired (doc_id, added_in)."""
        docs = doc_numbers(retired.column("doc_id").to_pylist()) if retired.num_rows else np.zeros(0, np.uint64)
        return cls(tuple(index_files), pa.table({"doc": pa.array(docs, pa.uint64()),
                                                  "added_in": retired.column("added_in").cast(pa.string())}))


@dataclass(frozen=True)
class DatasetMatch:
    """Per night row: its reason ("" when it goes on to dedup within the night), the document it is
    filed under (None when none) and their estimated Jaccard (NaN when none)."""

    reasons: np.ndarray
    matched: np.ndarray
    similarity: np.ndarray
    replaces: np.ndarray  # bool: a changed record, whose old version publishing retires

    def kinds(self) -> np.ndarray:
        return np.where(self.reasons == REASON_EXACT, KIND_EXACT_EARLIER,
                        np.where(self.reasons == REASON_NEAR, KIND_NEAR_EARLIER, ""))


def band_keys(sigs: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, band, key) of every LSH band of every row with a signature (a text too short to have
    shingles has the empty signature and no band)."""
    params = lsh_params(cfg)
    live = np.flatnonzero(sigs[:, 0] != EMPTY_SIGNATURE_VALUE) if len(sigs) else np.zeros(0, np.int64)
    if not live.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.uint64)
    hashes = _band_hashes(sigs, live, 0, params.bands, params.rows, cfg.seed)  # (bands, live)
    rows = np.tile(live, params.bands)
    bands = np.repeat(np.arange(params.bands, dtype=np.int16), live.size)
    return rows, bands, hashes.reshape(-1)


def index_rows(doc_ids: np.ndarray, keys: np.ndarray, sigs: np.ndarray | None, cfg: DedupConfig,
               version: str) -> pa.Table:
    """The index's key rows (band, key, doc, added_in) of documents published in ``version``: each
    document's exact key (band -1; also when exact dedup is off, it tells a later night whether a
    record with the same id changed) and, with near dedup, its LSH band keys."""
    rows = [np.arange(len(doc_ids))]
    bands = [np.full(len(doc_ids), EXACT_BAND, np.int16)]
    values = [np.asarray(keys, dtype=np.uint64)]
    if cfg.near and sigs is not None:
        r, b, v = band_keys(sigs, cfg)
        rows.append(r)
        bands.append(b)
        values.append(v)
    row = np.concatenate(rows)
    docs = doc_numbers(list(doc_ids))
    return pa.table({"band": pa.array(np.concatenate(bands), pa.int16()), "key": pa.array(np.concatenate(values), pa.uint64()),
                     "doc": pa.array(docs[row], pa.uint64()),
                     "added_in": pa.array(np.full(row.size, version, dtype=object), pa.string())})


def match_dataset(doc_ids: np.ndarray, keys: np.ndarray, sigs: np.ndarray, cfg: DedupConfig,
                  ref: DatasetRef) -> DatasetMatch:
    """Match the night's rows (doc ids, exact keys, signatures; sorted by doc id) against ``ref``."""
    n = len(doc_ids)
    reasons = np.full(n, REASON_KEPT, dtype=object)
    matched = np.full(n, None, dtype=object)
    similarity = np.full(n, np.nan)
    replaces = np.zeros(n, dtype=bool)
    if not n or not ref.index_files:
        return DatasetMatch(reasons.astype(str), matched, similarity, replaces)
    # 1. the same doc id: unchanged, or a changed record that replaces its old version
    docs = doc_numbers(list(doc_ids))
    own = indexed_exact_keys(ref.index_files, docs, ref.retired)
    if own.num_rows:
        position = {int(d): i for i, d in enumerate(docs)}
        for doc, key in zip(own.column("doc").to_pylist(), own.column("key").to_pylist()):
            row = position[doc]
            if key == int(keys[row]):
                reasons[row] = REASON_UNCHANGED
            else:
                replaces[row] = True
    # 2 and 3: exact and band keys of the rows still open, looked up together
    open_rows = np.flatnonzero(reasons == REASON_KEPT)
    parts = []
    if cfg.exact:
        parts.append((open_rows, np.full(open_rows.size, EXACT_BAND, np.int16), keys[open_rows].astype(np.uint64)))
    if cfg.near:
        r, b, v = band_keys(sigs[open_rows], cfg)
        parts.append((open_rows[r], b, v))
    if parts:
        night = pa.table({"row": pa.array(np.concatenate([p[0] for p in parts]), pa.int64()),
                          "band": pa.array(np.concatenate([p[1] for p in parts]), pa.int16()),
                          "key": pa.array(np.concatenate([p[2] for p in parts]), pa.uint64())})
        hits = lookup_keys(ref.index_files, night, ref.retired)
        _file_matches(hits, docs, sigs, cfg, ref, reasons, matched, similarity)
    return DatasetMatch(reasons.astype(str), matched, similarity, replaces)


def _file_matches(hits: pa.Table, docs: np.ndarray, sigs: np.ndarray, cfg: DedupConfig, ref: DatasetRef,
                  reasons: np.ndarray, matched: np.ndarray, similarity: np.ndarray) -> None:
    """Turn key hits into drops: exact first, then the most similar verified near candidate."""
    if not hits.num_rows:
        return
    rows = hits.column("row").to_numpy()
    band = hits.column("band").to_numpy()
    other = hits.column("doc").to_numpy()
    not_self = other != docs[rows]  # a changed record is not matched against its old version
    exact = (band == EXACT_BAND) & not_self
    for row, doc in zip(rows[exact].tolist(), other[exact].tolist()):
        if reasons[row] == REASON_KEPT:  # hits are sorted by row, doc: the smallest doc id wins
            reasons[row], matched[row], similarity[row] = REASON_EXACT, doc, 1.0
    near = (band != EXACT_BAND) & not_self
    if not near.any():
        _name(matched)
        return
    pairs = sorted({(r, d) for r, d in zip(rows[near].tolist(), other[near].tolist()) if reasons[r] == REASON_KEPT})
    found = indexed_signatures(ref.index_files, np.array([d for _, d in pairs], np.uint64), ref.retired) \
        if pairs else None
    if found is not None and found.num_rows:
        at = {d: i for i, d in enumerate(found.column("doc").to_pylist())}
        theirs = to_matrix(found.column("signature"))
        pairs = [(r, d) for r, d in pairs if d in at]
        pair_rows = np.array([r for r, _ in pairs], dtype=np.int64)
        sim = np.asarray(estimated_jaccard(sigs[pair_rows], theirs[[at[d] for _, d in pairs]]), dtype=np.float64) \
            if pairs else np.zeros(0)
        accept = sim >= cfg.threshold if cfg.verify else np.ones(sim.size, dtype=bool)
        best: dict[int, tuple[float, int]] = {}
        for (row, doc), s, ok in zip(pairs, sim.tolist(), accept.tolist()):
            if ok and (row not in best or s > best[row][0] or (s == best[row][0] and doc < best[row][1])):
                best[row] = (s, doc)
        for row, (s, doc) in best.items():
            reasons[row], matched[row], similarity[row] = REASON_NEAR, doc, round(s, 4)
    _name(matched)


def _name(matched: np.ndarray) -> None:
    """The matched docs (numbers) as doc ids, in place."""
    filed = np.flatnonzero(matched != None)  # noqa: E711 - an object array of numbers and None
    if filed.size:
        matched[filed] = doc_ids_of(matched[filed].tolist())


def unmatched(match: DatasetMatch) -> np.ndarray:
    """Rows that go on to dedup within the night."""
    return np.flatnonzero(match.reasons == REASON_KEPT)


def index_settings(cfg: DedupConfig) -> dict[str, object]:
    """What the dataset's index depends on: a night with other values cannot be matched against it."""
    params = lsh_params(cfg) if cfg.near else None
    return {"exact": cfg.exact, "near": cfg.near, "shingle": cfg.shingle, "ngram": cfg.ngram, "num_perm": cfg.num_perm,
            "seed": cfg.seed, "bands": params.bands if params else None, "rows": params.rows if params else None}


def write_indexed(doc_ids: np.ndarray, n_chars: np.ndarray, keys: np.ndarray, sigs: np.ndarray, cfg: DedupConfig,
                  index_dir: str, version: str, name: str, urls: tuple[np.ndarray, np.ndarray] | None = None) -> list[str]:
    """Write the index rows of documents ``version`` publishes (doc ids sorted): their keys,
    signatures and (``urls``: their URL keys and fetch times, tasks/dedup/urls.py) URLs, in files
    called ``name`` under ``index_dir``; the files written."""
    table = pa.table({"doc": pa.array(doc_numbers(list(doc_ids)), pa.uint64()),
                      "added_in": pa.array([version] * len(doc_ids), pa.string()),
                      "n_chars": pa.array(n_chars, pa.int64()), "exact_key": pa.array(keys, pa.uint64()),
                      "signature": fixed_size_list(sigs)})
    url_rows = url_index_rows(doc_ids, *urls, version) if urls is not None else None
    return write_index(index_dir, name, index_rows(doc_ids, keys, sigs, cfg, version), table, url_rows)


def index_documents(shard: str, version: str, cfg: DedupConfig, index_dir: str) -> list[str]:
    """Index one published documents file of ``version`` anew under ``cfg`` (``refinery dataset
    reindex``): signatures and keys computed from its texts, written under ``index_dir``."""
    docs = read_shard(shard, ["doc_id", "text", "n_chars", "url", "domain", "fetched_at"], missing_ok=True)
    docs = docs.sort_by("doc_id")
    texts = docs.column("text").to_pylist()
    return write_indexed(docs.column("doc_id").to_numpy(zero_copy_only=False), docs.column("n_chars").to_numpy(),
                         exact_keys(texts), signatures(texts, cfg), cfg, index_dir, version,
                         f"{version}-{Path(shard).stem}", urls=document_urls(docs))


def index_night(signature_shards: list[str], corpus_shards: list[str], cfg: DedupConfig, index_dir: str,
                version: str) -> list[str]:
    """Index the documents a night publishes (its corpus shards' doc ids) from the night's
    signature shards: their exact and band keys and signatures, written under ``index_dir``, a
    batch of about INDEX_BATCH_DOCS documents at a time (memory bounded by the batch; a first night
    of 1M documents held every signature and key at once: 4 GB in one worker)."""
    if not corpus_shards or not signature_shards:
        return []
    # a set, built once (pc.is_in builds its hash table on every call: 30 s over 200 shards at 1M)
    kept = set(read_shards(sorted(corpus_shards), ["doc_id"]).column("doc_id").to_pylist())
    files: list[str] = []
    batch: list[pa.Table] = []
    shards = sorted(signature_shards)
    for k, shard in enumerate(shards):
        table = read_shard(shard)
        batch.append(table.filter(pa.array([d in kept for d in table.column("doc_id").to_pylist()], pa.bool_())))
        if sum(t.num_rows for t in batch) >= INDEX_BATCH_DOCS or k == len(shards) - 1:
            files += _index_batch(pa.concat_tables(batch).sort_by("doc_id"), cfg, index_dir, version,
                                  f"{version}-{k:05d}")
            batch = []
    return files


def _index_batch(table: pa.Table, cfg: DedupConfig, index_dir: str, version: str, name: str) -> list[str]:
    if not table.num_rows:
        return []
    urls = ((table.column("url_key").to_numpy(), table.column("fetched_at").to_numpy())
            if "url_key" in table.column_names else None)  # signatures of a night before URLs: none
    return write_indexed(table.column("doc_id").to_numpy(zero_copy_only=False), table.column("n_chars").to_numpy(),
                         table.column("exact_key").to_numpy(), to_matrix(table.column("signature")), cfg, index_dir,
                         version, name, urls=urls)


def document_urls(docs: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """The URL keys and fetch times of documents (a table with ``url``, ``domain`` and ``fetched_at``
    columns; None when it has no ``url``: written before documents had URLs)."""
    if "url" not in docs.column_names:
        return None
    n = docs.num_rows
    domains = docs.column("domain").to_pylist() if "domain" in docs.column_names else [None] * n
    fetched = docs.column("fetched_at") if "fetched_at" in docs.column_names else None
    return url_keys(docs.column("url").to_pylist(), domains), fetch_times(fetched, n)
