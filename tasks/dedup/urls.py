"""The URL step of dedup, before any text is compared: blocked domains, then one record per URL.

Only absolute URLs count (web pages read from WARC/WET files, JSONL or Parquet records with a
``url`` field); a page read from a folder has its file path as its URL, and a path names a file,
not a page on the web. URLs are normalized at ingest (:func:`tasks.ingest.web.normalize_url`), so
``HTTP://Example.com:80/a?b=2&a=1#top`` and ``http://example.com/a?a=1&b=2`` are one URL.

For each of the night's rows (sorted by doc id), in this order:

1. **Blocked domain.** Its domain is on the blocklist (``dedup.url_blocklist`` and the lines of
   ``dedup.url_blocklist_file``), or is a subdomain of one: dropped as ``url_blocklist``.
2. **The same URL tonight** (re-crawls in one WARC, or in two files): the newest fetch is kept
   (``fetched_at``; a record without one counts as older than any with one; ties: the smallest
   doc id); each other one is dropped as ``dedup_url``, filed under it (``dedup_clusters.kind``
   ``url``).
3. **The same URL in the dataset** (a current document of an earlier night, another doc id): a
   record fetched no later than that document (a record without a fetch time: no later than any),
   or with the same text, is dropped as ``dedup_url``
   (filed under it, kind ``url_earlier_night``); a newer fetch with another text supersedes it:
   the night goes on with the new page, and publishing retires the old one with reason
   ``dedup_url``. A record with its own doc id in the dataset is left to the doc-id match
   (tasks/dedup/against.py): a re-read of the same record.

What is left goes on to exact and near dedup (against the dataset less what is superseded, then
within the night). With ``dedup.url: false`` steps 2 and 3 are skipped; the blocklist always applies.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash

from refinery.storage.dataset_index import doc_ids_of, doc_numbers, indexed_exact_keys, lookup_urls
from refinery.storage.datasets import REASON_URL
from refinery.tasks.dedup.config import DedupConfig
from refinery.tasks.exceptions import ConfigError

REASON_BLOCKLIST = "url_blocklist"
KIND_URL = "url"
KIND_URL_EARLIER = "url_earlier_night"
NO_URL = np.uint64(0)
# fetched_at as microseconds since the epoch; a record without one sorts before every fetch
NO_FETCH = np.iinfo(np.int64).min


def url_keys(urls: Iterable[str | None], domains: Iterable[str | None]) -> np.ndarray:
    """uint64 per row: the hash of its URL when it is absolute (has a domain), else 0."""
    out = [0 if not u or not d else (xxhash.xxh3_64_intdigest(u.encode("utf-8", "surrogatepass")) or 1)
           for u, d in zip(urls, domains)]
    return np.array(out, dtype=np.uint64)


def fetch_times(column: pa.ChunkedArray | pa.Array | None, n: int) -> np.ndarray:
    """int64 microseconds since the epoch per row (NO_FETCH where unknown, or no such column)."""
    if column is None:
        return np.full(n, NO_FETCH, np.int64)
    values = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(values.fill_null(NO_FETCH).to_numpy(zero_copy_only=False), dtype=np.int64)


def blocklist_entry(entry: str) -> str | None:
    """One blocklist line as a domain: lower-cased, a scheme, path, port, ``*.`` or leading dot taken
    off (``https://Ads.Example.com/x`` → ``ads.example.com``); None for a blank or comment line."""
    entry = entry.split("#", 1)[0].strip().lower()
    if not entry:
        return None
    entry = entry.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    return entry.removeprefix("*.").strip(".") or None


@functools.lru_cache(maxsize=4)
def _file_domains(path: str, mtime_ns: int) -> frozenset[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return frozenset(d for d in map(blocklist_entry, fh) if d)


def blocked_domains(cfg: DedupConfig) -> frozenset[str]:
    """The domains of ``url_blocklist`` and of the lines of ``url_blocklist_file`` (read once per
    worker and file version)."""
    listed = {d for d in map(blocklist_entry, cfg.url_blocklist) if d}
    if cfg.url_blocklist_file is None:
        return frozenset(listed)
    path = Path(cfg.url_blocklist_file).expanduser()
    try:
        return _file_domains(str(path), path.stat().st_mtime_ns) | listed
    except OSError as exc:
        raise ConfigError(f"dedup.url_blocklist_file: cannot read {path}: {exc.strerror or exc}") from None


def is_blocked(domain: str | None, blocked: frozenset[str]) -> bool:
    """Whether ``domain`` or a domain above it is in ``blocked`` (``a.b.example.com`` checks itself,
    ``b.example.com``, ``example.com`` and ``com``)."""
    if not domain or not blocked:
        return False
    labels = domain.lower().split(".")
    return any(".".join(labels[i:]) in blocked for i in range(len(labels)))


@dataclass(frozen=True)
class UrlDecisions:
    """Per night row: its reason ("" when it goes on), the doc id it is filed under (None: none)
    and the kind of that filing; and the dataset documents the night supersedes (doc uint64,
    added_in, the superseding doc id)."""

    reasons: np.ndarray
    matched: np.ndarray
    kinds: np.ndarray
    superseded: pa.Table

    def stats(self) -> dict[str, int]:
        return {"dropped_url_blocklist": int((self.reasons == REASON_BLOCKLIST).sum()),
                "dropped_dedup_url": int((self.reasons == REASON_URL).sum()),
                "dropped_dedup_url_earlier": int((self.kinds == KIND_URL_EARLIER).sum()),
                "superseded_by_url": self.superseded.num_rows}


SUPERSEDED_SCHEMA = pa.schema([("doc", pa.uint64()), ("added_in", pa.string()), ("by", pa.string())])


def url_decisions(doc_ids: np.ndarray, keys: np.ndarray, url_key: np.ndarray, fetched: np.ndarray,
                  domains: list[str | None], cfg: DedupConfig, index_files: tuple[str, ...] = (),
                  retired: pa.Table | None = None) -> UrlDecisions:
    """The URL step for the night's rows (doc ids sorted; their exact keys, URL keys, fetch times in
    microseconds and domains) against the dataset's index (``index_files``, less ``retired``)."""
    n = len(doc_ids)
    reasons = np.full(n, "", dtype=object)
    matched = np.full(n, None, dtype=object)
    kinds = np.full(n, "", dtype=object)
    blocked = blocked_domains(cfg)
    if blocked:
        reasons[[i for i, d in enumerate(domains) if is_blocked(d, blocked)]] = REASON_BLOCKLIST
    superseded = SUPERSEDED_SCHEMA.empty_table()
    if cfg.url:
        _within_night(doc_ids, url_key, fetched, reasons, matched, kinds)
        if index_files:
            superseded = _against_dataset(doc_ids, keys, url_key, fetched, index_files, retired, reasons, matched,
                                          kinds)
    return UrlDecisions(reasons.astype(str), matched, kinds.astype(str), superseded)


def _within_night(doc_ids: np.ndarray, url_key: np.ndarray, fetched: np.ndarray, reasons: np.ndarray,
                  matched: np.ndarray, kinds: np.ndarray) -> None:
    rows = np.flatnonzero((url_key != NO_URL) & (reasons == ""))
    if rows.size < 2:
        return
    # per URL the newest fetch first (~: descending, without the overflow of negating NO_FETCH), ties
    # to the smallest doc id (rows are in doc id order)
    order = rows[np.lexsort((rows, ~fetched[rows], url_key[rows]))]
    first = np.ones(order.size, dtype=bool)
    first[1:] = url_key[order[1:]] != url_key[order[:-1]]
    survivor = order[np.maximum.accumulate(np.where(first, np.arange(order.size), 0))]
    later = ~first
    reasons[order[later]] = REASON_URL
    matched[order[later]] = doc_ids[survivor[later]]
    kinds[order[later]] = KIND_URL
    # the survivor of a URL with drops is filed as its cluster's survivor too
    groups = np.unique(survivor[later])
    kinds[groups] = KIND_URL


def _against_dataset(doc_ids: np.ndarray, keys: np.ndarray, url_key: np.ndarray, fetched: np.ndarray,
                     index_files: tuple[str, ...], retired: pa.Table | None, reasons: np.ndarray,
                     matched: np.ndarray, kinds: np.ndarray) -> pa.Table:
    rows = np.flatnonzero((url_key != NO_URL) & (reasons == ""))
    empty = SUPERSEDED_SCHEMA.empty_table()
    if not rows.size:
        return empty
    retired = retired if retired is not None else pa.table({"doc": pa.array([], pa.uint64()),
                                                            "added_in": pa.array([], pa.string())})
    night = pa.table({"row": pa.array(rows, pa.int64()), "key": pa.array(url_key[rows], pa.uint64())})
    hits = lookup_urls(index_files, night, retired)
    docs = doc_numbers(list(doc_ids))
    hit_rows = hits.column("row").to_numpy()
    others = hits.column("doc").to_numpy()
    own = others == docs[hit_rows]  # a re-read of the same record: the doc-id match decides it
    if not (~own).any():
        return empty
    hit_rows, others = hit_rows[~own], others[~own]
    added = np.asarray(hits.column("added_in").to_pylist(), dtype=object)[~own]
    when = fetch_times(hits.column("fetched_at"), hits.num_rows)[~own]
    theirs = indexed_exact_keys(index_files, np.unique(others), retired)
    key_of = dict(zip(theirs.column("doc").to_pylist(), theirs.column("key").to_pylist()))
    out: list[tuple[int, str, str]] = []
    # hits come sorted by row: each row's hits are one run (no scan of all hits per row)
    starts = np.flatnonzero(np.r_[True, hit_rows[1:] != hit_rows[:-1]])
    for start, stop in zip(starts.tolist(), np.r_[starts[1:], hit_rows.size].tolist()):
        row, at = int(hit_rows[start]), np.arange(start, stop)
        newest = at[np.lexsort((others[at], ~when[at]))[0]]
        same_text = [i for i in at.tolist() if key_of.get(int(others[i])) == int(keys[row])]
        if fetched[row] <= when[newest] or same_text:
            filed = same_text[0] if same_text else newest
            reasons[row], matched[row], kinds[row] = REASON_URL, doc_ids_of([others[filed]])[0], KIND_URL_EARLIER
        else:
            out += [(int(others[i]), str(added[i]), str(doc_ids[row])) for i in at.tolist()]
    if not out:
        return empty
    return pa.table({"doc": pa.array([d for d, _, _ in out], pa.uint64()),
                     "added_in": pa.array([a for _, a, _ in out], pa.string()),
                     "by": pa.array([b for _, _, b in out], pa.string())}, schema=SUPERSEDED_SCHEMA)


def url_index_rows(doc_ids: np.ndarray, url_key: np.ndarray, fetched: np.ndarray, version: str) -> pa.Table:
    """The URL index rows (key, doc, added_in, fetched_at) of documents ``version`` publishes."""
    rows = np.flatnonzero(url_key != NO_URL)
    micros = fetched[rows]
    return pa.table({
        "key": pa.array(url_key[rows], pa.uint64()),
        "doc": pa.array(doc_numbers([doc_ids[i] for i in rows.tolist()]), pa.uint64()),
        "added_in": pa.array(np.full(rows.size, version, dtype=object), pa.string()),
        "fetched_at": pa.array(np.where(micros == NO_FETCH, 0, micros), pa.int64(),
                               mask=micros == NO_FETCH).cast(pa.timestamp("us", tz="UTC")),
    })
