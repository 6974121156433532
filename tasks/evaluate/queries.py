"""The user's own query sets: a BEIR-style folder, or one file of (query, record id[, relevance]) rows.

A BEIR folder holds ``queries.jsonl`` (``{"_id": ..., "text": ...}`` per line) and
``qrels/<split>.tsv`` (a header line, then query-id, corpus-id, score separated by tabs). A file
(``.jsonl``, ``.jsonl.gz`` or ``.parquet``) holds one judgement per row. A judgement with
relevance > 0 makes the record relevant to the query; grades are not weighted (the metrics are
binary), and relevance 0 rows are ignored. Corpus ids are the ingest records' ids (the source's
``id_field`` value, else the record's location), matched to ``documents.record_id``.

:func:`check_query_set` runs before any stage: a missing or malformed set, or one none of whose
relevant ids is an input record, raises :class:`QuerySetError` naming the file.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from refinery.storage import iter_parquet_records
from refinery.tasks.evaluate.config import QuerySetConfig
from refinery.tasks.evaluate.pool import doc_key
from refinery.tasks.ingest.config import BUILTIN_BBC, IngestConfig
from refinery.tasks.ingest.readers import Record, plan_units, read_unit
from refinery.tasks.exceptions import QuerySetError

if TYPE_CHECKING:
    from refinery.tasks.config import RefineryConfig

QUERIES_FILE = "queries.jsonl"
QRELS_FOLDER = "qrels"
# Salt of the query sample's keys, so it is not the same draw as any sample of documents.
QUERY_SAMPLE_SALT = "evaluate-queries\x1f"
# Ids quoted in an error message.
QUOTED_IDS = 5

QUERY_SET_SCHEMA = pa.schema([("query_id", pa.string()), ("query", pa.string()),
                              ("record_ids", pa.list_(pa.string()))])


@dataclass(frozen=True)
class Judgements:
    """A query set as read: query text and relevant record ids (in file order) per query id."""

    file: Path  # the file whose ids are the judgements (a BEIR folder's qrels file)
    queries: dict[str, str]
    relevant: dict[str, list[str]]

    def record_ids(self) -> set[str]:
        return {r for rel in self.relevant.values() for r in rel}


def _format(source: QuerySetConfig) -> str:
    path = Path(source.path).expanduser()
    if source.format != "auto":
        return source.format
    if path.is_dir():
        return "beir"
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise QuerySetError(f"query set {source.name!r}: cannot tell the format of {path} (a BEIR folder, .jsonl, "
                        ".jsonl.gz or .parquet); set `format`")


def read_judgements(source: QuerySetConfig) -> Judgements:
    """Read a whole query set (its judgements only: the size of the evaluation set, not of the corpus)."""
    path = Path(source.path).expanduser()
    if not path.exists():
        raise QuerySetError(f"query set {source.name!r}: {path} does not exist")
    kind = _format(source)
    judgements = _read_beir(source, path) if kind == "beir" else _read_rows(source, path, kind)
    if not judgements.relevant:
        raise QuerySetError(f"query set {source.name!r}: {judgements.file} has no judgement with relevance > 0")
    return judgements


def _read_beir(source: QuerySetConfig, root: Path) -> Judgements:
    if not root.is_dir():
        raise QuerySetError(f"query set {source.name!r}: a BEIR query set is a folder, {root} is a file")
    qrels = root / QRELS_FOLDER / f"{source.split}.tsv"
    queries_file = root / QUERIES_FILE
    if not qrels.is_file():
        splits = sorted(p.stem for p in (root / QRELS_FOLDER).glob("*.tsv")) if (root / QRELS_FOLDER).is_dir() else []
        raise QuerySetError(f"query set {source.name!r}: no {qrels} (splits found: {', '.join(splits) or 'none'}; "
                            "choose one with `split`)")
    if not queries_file.is_file():
        raise QuerySetError(f"query set {source.name!r}: no {queries_file}")
    relevant: dict[str, list[str]] = {}
    with open(qrels, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                raise QuerySetError(f"query set {source.name!r}: {qrels} line {n}: expected query-id, corpus-id and "
                                    f"score separated by tabs, got {line.strip()[:80]!r}")
            score = _number(fields[2])
            if score is None:
                if n == 1:
                    continue  # the header line
                raise QuerySetError(f"query set {source.name!r}: {qrels} line {n}: score {fields[2]!r} is not a number")
            if score > 0:
                _add(relevant, fields[0].strip(), fields[1].strip())
    texts: dict[str, str] = {}
    for n, obj in _jsonl_objects(queries_file, source.name):
        qid, text = obj.get("_id"), obj.get("text")
        if qid is None or not isinstance(text, str):
            raise QuerySetError(f"query set {source.name!r}: {queries_file} line {n}: a query needs `_id` and `text`")
        if str(qid) in relevant:
            texts[str(qid)] = text
    missing = [q for q in relevant if q not in texts]
    if missing:
        raise QuerySetError(f"query set {source.name!r}: {len(missing)} query ids of {qrels} are not in "
                            f"{queries_file} (e.g. {', '.join(missing[:QUOTED_IDS])})")
    return Judgements(qrels, texts, relevant)


def _read_rows(source: QuerySetConfig, path: Path, kind: str) -> Judgements:
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    rows = _jsonl_objects(path, source.name) if kind == "jsonl" else enumerate(iter_parquet_records(path), start=1)
    where = "line" if kind == "jsonl" else "row"
    for n, row in rows:
        query, record = row.get(source.query_field), row.get(source.record_id_field)
        if not isinstance(query, str) or not query.strip():
            raise QuerySetError(f"query set {source.name!r}: {path} {where} {n}: no query text in "
                                f"`{source.query_field}`")
        if record is None:
            raise QuerySetError(f"query set {source.name!r}: {path} {where} {n}: no record id in "
                                f"`{source.record_id_field}`")
        relevance = row.get(source.relevance_field) if source.relevance_field else None
        score = 1.0 if relevance is None else _number(relevance)
        if score is None:
            raise QuerySetError(f"query set {source.name!r}: {path} {where} {n}: relevance {relevance!r} is not a number")
        qid = str(row.get(source.query_id_field)) if source.query_id_field else query
        queries.setdefault(qid, query)
        if score > 0:
            _add(relevant, qid, str(record))
    return Judgements(path, {q: queries[q] for q in relevant}, relevant)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _add(relevant: dict[str, list[str]], qid: str, record_id: str) -> None:
    ids = relevant.setdefault(qid, [])
    if record_id not in ids:
        ids.append(record_id)


def _jsonl_objects(path: Path, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QuerySetError(f"query set {name!r}: {path} line {n}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise QuerySetError(f"query set {name!r}: {path} line {n}: not a JSON object")
            yield n, obj


def sample_query_ids(query_ids: list[str], max_queries: int, *, seed: int) -> list[str]:
    """At most ``max_queries`` of the ids, by the smallest seeded key (the same on every run), sorted."""
    if len(query_ids) <= max_queries:
        return sorted(query_ids)
    return sorted(sorted(query_ids, key=lambda q: (doc_key(q, seed=seed, salt=QUERY_SAMPLE_SALT), q))[:max_queries])


def read_query_set(source: QuerySetConfig, *, max_queries: int, seed: int) -> tuple[pa.Table, dict[str, int]]:
    """The sampled queries as a table (query_id, query, record_ids) and counts: ``in_source``
    (queries with a relevant judgement) and ``sampled``."""
    judgements = read_judgements(source)
    chosen = sample_query_ids(list(judgements.relevant), max_queries, seed=seed)
    table = pa.table({"query_id": chosen, "query": [judgements.queries[q] for q in chosen],
                      "record_ids": [judgements.relevant[q] for q in chosen]}, schema=QUERY_SET_SCHEMA)
    return table, {"in_source": len(judgements.relevant), "sampled": len(chosen)}


def first_matching_record(ingest: IngestConfig, record_ids: set[str], *, source: str | None = None) -> str | None:
    """The first input record (read as ingest reads it) whose record id is in ``record_ids``, or None.

    Reads one record at a time and stops at the first match, so a set that matches returns
    almost at once; only a set that matches nothing reads every input. ``source`` restricts the
    scan to the ingest source of that name. An input that does not exist is skipped (ingest
    reports it); a ``source`` that names no input is an error.
    """
    units, names = [], []
    for src in ingest.sources:
        try:
            planned = plan_units(ingest.model_copy(update={"sources": [src]}))
        except FileNotFoundError:
            continue
        units += planned
        names += [u.source for u in planned[:1]]
    if source is not None and source not in names:
        raise QuerySetError(f"no ingest source is named {source!r} (sources: {', '.join(names) or 'none'})")
    for unit in units:
        if source is not None and unit.source != source:
            continue
        for item in read_unit(unit, unicode_form=ingest.unicode_form, min_chars=ingest.min_chars, limit=ingest.limit):
            if isinstance(item, Record) and item.record_id in record_ids:
                return item.record_id
    return None


def check_query_set(source: QuerySetConfig, ingest: IngestConfig) -> None:
    """Raise :class:`QuerySetError` unless the set reads and one of its relevant ids is an input record."""
    judgements = read_judgements(source)
    ids = judgements.record_ids()
    missing_inputs = any(not _exists(s.path) for s in ingest.sources)
    if first_matching_record(ingest, ids, source=source.source) is None and not missing_inputs:
        where = f"ingest source {source.source!r}" if source.source else "the ingest sources"
        raise QuerySetError(
            f"query set {source.name!r}: none of the {len(ids)} record ids judged relevant in {judgements.file} is "
            f"the record id of a document of {where} (e.g. {', '.join(sorted(ids)[:QUOTED_IDS])}); a record id is "
            "the source's `id_field` value, else the record's location (a text file: its path under the source "
            "folder)")


def validate_query_sets(config: RefineryConfig) -> None:
    """Before any stage runs: every ``evaluate.queries`` set reads, and one of its relevant record
    ids is an input record (:func:`check_query_set`); else QuerySetError. Nothing to check when
    the run does not evaluate."""
    if "evaluate" in config.stages:
        for source in config.evaluate.queries:
            check_query_set(source, config.ingest)


def _exists(path: str) -> bool:
    return path == BUILTIN_BBC or Path(path).expanduser().exists()
