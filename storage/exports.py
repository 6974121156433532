"""Catalog verbs: a dataset's versions listed, and one version written out for use without Refinery.

``export_dataset`` writes a version of a dataset (the newest by default) to a folder::

    OUT/README.md                          the dataset card: nights, what was left out and why,
                                           the filters and thresholds, the sources, how to load it
    OUT/data/train-00000-of-00003.parquet  the documents, at most ``rows_per_shard`` rows a file,
                                           ordered by the night that added them, then as published

The shard names follow the Hugging Face Hub's convention, so ``pyarrow.dataset.dataset(OUT/"data")``,
``datasets.load_dataset("parquet", data_dir=OUT)``, DuckDB's ``'OUT/data/*.parquet'`` and an upload
of OUT to the Hub all read it as is.

The catalog is read for a moment only: one read-only transaction takes a snapshot of the version
(the files its nights published, the documents retired by then, and what the card says). The
documents are then read from those Parquet files by a separate in-memory DuckDB, leaving out the
retired ones as ``curated_at`` does, so a night that starts meanwhile is not kept waiting for the
catalog's file lock, and the export holds exactly the snapshot's version (its count is checked
against the version's ``docs_total``). The files are read one at a time and the shards written a
batch at a time: memory is bounded by a published file, whatever the size of the dataset.

The export is written into a hidden folder beside OUT (``.OUT.export-<pid>-<random>``) and renamed
into place when whole: OUT is either the whole export or absent (or the previous export, with
``force``). A killed export leaves only that hidden folder; the next export into OUT removes it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.storage.datasets import DOCUMENT_COLUMNS
from refinery.storage.location import register_filesystems
from refinery.storage.selection import draw_selection
from refinery.tasks.selection import SelectionConfig, selection_markdown, selection_summary
from refinery.tasks.exceptions import AccountingError, CatalogError, InputError

# How many documents one Parquet file of an export holds at most.
DEFAULT_ROWS_PER_SHARD = 100_000
# Rows read from DuckDB and written as one Parquet row group at a time.
BATCH_ROWS = 10_000
# What the DuckDB reading the documents may hold in memory before it spills to disk.
EXPORT_MEMORY_LIMIT = "512MB"
# How many versions an error about an unknown one names (the newest ones).
VERSIONS_NAMED = 8

DATA_DIR = "data"
CARD = "README.md"
SPLIT = "train"
EXPORT_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("source", pa.string()), ("location", pa.string()), ("title", pa.string()),
    ("text", pa.string()), ("label", pa.string()), ("n_chars", pa.int64()), ("record_id", pa.string()),
    ("url", pa.string()), ("domain", pa.string()), ("fetched_at", pa.timestamp("us", tz="UTC")), ("lang", pa.string()),
    ("added_in", pa.string()),
])
COLUMN_MEANINGS = {
    "doc_id": "the document's id, unique in the dataset: a hash of its source and record id, the same every night",
    "source": "the source it was read from (its `name` in the config, else its path)",
    "location": "where in the source: file, `file:line` (JSONL) or `file:row` (Parquet)",
    "title": "its title (empty when the source has none)",
    "text": "the text, Unicode-normalized",
    "label": "its label (empty when the source has none)",
    "n_chars": "characters in `text`",
    "record_id": "the record's id in the source (its `id_field`, else its location; a WARC record's WARC-Record-ID)",
    "url": "web pages: the URL (a WARC record's target URI, normalized; an HTML file's location); else empty",
    "domain": "web pages: the URL's host, lower-cased; else empty",
    "fetched_at": "WARC records: when the page was fetched (WARC-Date, UTC); else empty",
    "lang": "web pages: the language the page declares (`<html lang>`, a WET record's identified language)",
    "added_in": "the version (night) that added it to the dataset",
}
assert tuple(EXPORT_SCHEMA.names) == (*DOCUMENT_COLUMNS, "added_in") and set(COLUMN_MEANINGS) == set(EXPORT_SCHEMA.names)
_SQL_TYPES = {f.name: "BIGINT" if f.type == pa.int64() else "TIMESTAMPTZ" if pa.types.is_timestamp(f.type)
              else "VARCHAR" for f in EXPORT_SCHEMA}

_STAGE_ORDER = {"ingest": 0, "dedup": 1, "quality": 2}
_RETIRED = "retired"


@dataclass
class _Snapshot:
    """What one read of the catalog says about a version: enough to export it and write its card."""

    dataset: str
    version: str
    seq: int
    files: list[tuple[str, list[str]]]  # (version, the files it published), oldest first, up to the version
    retired: pa.Table  # doc_id, added_in: the documents retired by the version or an earlier one
    nights: list[dict[str, Any]]
    left_out: list[dict[str, Any]]
    configs: list[tuple[str, dict[str, Any]]]  # (version, the config its run ran with), oldest first
    input_files: dict[str, int]  # source -> input files the nights read
    total: int  # documents the version holds, per the catalog
    nights_in_all: int  # versions the dataset has, the exported one or later included
    attribute_files: list[str] = field(default_factory=list)  # the versions' quality scores (a mixture's weights)
    mixture: dict[str, Any] | None = None  # a sample's draw (_draw_mixture): its summary, the chosen as "table"
    exported_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class ExportVerbs:
    """Verbs for listing datasets and exporting one (mixed into Catalog: ``self._read()``, ``self._answer``)."""

    # -- listing ------------------------------------------------------------------------------------
    def datasets_overview(self) -> list[dict[str, Any]]:
        """One row per dataset (``refinery datasets``): its newest version, when it was published,
        its documents, and how many nights published a version, by name."""
        with self._read() as con:
            if not _has_datasets(con):
                return []
            return self._answer(con, """
                SELECT dataset, arg_max(version, seq) AS latest_version,
                       max(published_at)::TIMESTAMP(0) AS published_at, arg_max(docs_total, seq) AS documents,
                       count(*) AS nights, min(published_at)::TIMESTAMP(0) AS first_published_at
                FROM dataset_versions GROUP BY dataset ORDER BY dataset""").to_pylist()

    def dataset_history(self, dataset: str) -> list[dict[str, Any]]:
        """The versions of ``dataset``, oldest first (``refinery datasets NAME``); an InputError
        naming the datasets there are when it has none."""
        with self._read() as con:
            _known_dataset(con, dataset)
            return self._answer(con, """
                SELECT seq AS night, version, published_at::TIMESTAMP(0) AS published_at, docs_added AS added,
                       docs_retired AS retired, docs_total AS documents
                FROM dataset_versions WHERE dataset = ? ORDER BY seq""", [dataset]).to_pylist()

    # -- export -------------------------------------------------------------------------------------
    def export_dataset(self, dataset: str, out: str | os.PathLike[str], *, version: str | None = None,
                       force: bool = False, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
                       sample: int | None = None, selection: SelectionConfig | None = None) -> dict[str, Any]:
        """Write version ``version`` of ``dataset`` (default: its newest) to the folder ``out`` as
        Parquet shards and a dataset card (this module's docstring); what was written, as a dict.

        ``out`` must be new or empty; with ``force`` it may hold an earlier export (only README.md
        and data/), which the new one replaces. InputError when the dataset or version does not
        exist (naming those that do) or ``out`` cannot be used.

        With ``sample`` the export is a mixture: ``sample`` documents drawn by ``selection`` (weighted
        by a score, capped per group: :mod:`tasks.selection`; a uniform sample without one), the draw
        described in the card.
        """
        if rows_per_shard < 1:
            raise InputError(f"rows per shard must be at least 1, not {rows_per_shard}")
        if sample is not None and sample < 1:
            raise InputError(f"a sample must be at least 1 document, not {sample}")
        target = Path(out).expanduser().absolute()
        _check_target(target, force=force)
        snap = self._snapshot(dataset, version)
        _sweep_stale_stages(target)
        stage = target.parent / f".{target.name}.export-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            (stage / DATA_DIR).mkdir(parents=True)
            if sample is not None:
                snap.mixture = _draw_mixture(snap, sample, selection or SelectionConfig())
            written = _write_documents(snap, stage, rows_per_shard)
            (stage / CARD).write_text(dataset_card(snap, written, folder=target.name), encoding="utf-8")
            _place(stage, target, force=force)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return {"dataset": snap.dataset, "version": snap.version, "night": snap.seq, "nights": snap.nights_in_all,
                "documents": written["documents"], "shards": written["shards"], "out": str(target),
                "card": str(target / CARD), **({"of": snap.total} if snap.mixture else {})}

    def _snapshot(self, dataset: str, version: str | None) -> _Snapshot:
        """Everything the export reads from the catalog, in one read-only transaction."""
        with self._read() as con:
            _known_dataset(con, dataset)
            history = con.execute("SELECT version, seq, docs_total FROM dataset_versions WHERE dataset = ?"
                                  " ORDER BY seq", [dataset]).fetchall()
            if version is None:
                version, seq, total = history[-1]
            else:
                found = [h for h in history if h[0] == version]
                if not found:
                    ran = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [version]).fetchall()[0][0]
                    raise InputError(_unknown_version(dataset, version, [h[0] for h in history], is_run=bool(ran)))
                _, seq, total = found[0]
            params = {"ds": dataset, "seq": seq}
            upto = "SELECT version FROM dataset_versions WHERE dataset = $ds AND seq <= $seq"
            files = con.execute("SELECT version, files FROM dataset_versions WHERE dataset = $ds AND seq <= $seq"
                                " ORDER BY seq", params).fetchall()
            scored = con.execute("SELECT scored_files FROM dataset_versions WHERE dataset = $ds AND seq <= $seq"
                                 " ORDER BY seq", params).fetchall()
            retired = _arrow(con, f"""
                SELECT doc_id, added_in FROM dataset_retired
                WHERE dataset = $ds AND retired_in IN ({upto})""", params)
            nights = _arrow(con, """
                SELECT v.seq AS night, v.version, v.published_at::TIMESTAMP(0) AS published_at,
                       r.docs_in AS records_read, r.docs_dropped AS dropped, r.docs_rejected AS rejected,
                       v.docs_added AS added, v.docs_retired AS retired, v.docs_total AS documents
                FROM dataset_versions v LEFT JOIN runs r ON r.run_id = v.version
                WHERE v.dataset = $ds AND v.seq <= $seq ORDER BY v.seq""", params).to_pylist()
            # rejects: the reason's family (the text before ':'; a duplicate_id names the id after it)
            left_out = _arrow(con, f"""
                SELECT 'ingest' AS stage, split_part(reason, ':', 1) AS reason, count(*) AS documents,
                       count(DISTINCT run_id) AS nights
                FROM rejects WHERE run_id IN ({upto}) GROUP BY ALL
                UNION ALL
                SELECT stage, reason, count(*), count(DISTINCT run_id) FROM drops WHERE run_id IN ({upto}) GROUP BY ALL
                UNION ALL
                SELECT '{_RETIRED}', r.reason, count(*), count(DISTINCT r.retired_in) FROM dataset_retired r
                WHERE r.dataset = $ds AND r.retired_in IN ({upto}) GROUP BY ALL""", params).to_pylist()
            configs = con.execute("""
                SELECT v.version, r.config FROM dataset_versions v JOIN runs r ON r.run_id = v.version
                WHERE v.dataset = $ds AND v.seq <= $seq ORDER BY v.seq""", params).fetchall()
            input_files = dict(con.execute(f"""
                SELECT source, count(DISTINCT path) FROM dataset_inputs
                WHERE dataset = $ds AND version IN ({upto}) AND status <> 'removed' GROUP BY source""",
                                           params).fetchall())
        left_out.sort(key=lambda r: (_STAGE_ORDER.get(r["stage"], 3 if r["stage"] != _RETIRED else 4),
                                     r["stage"], -r["documents"], r["reason"]))
        return _Snapshot(dataset=dataset, version=version, seq=seq, files=[(v, list(f or [])) for v, f in files],
                         retired=retired, nights=nights,
                         left_out=left_out, configs=[(v, json.loads(c)) for v, c in configs if c],
                         input_files=input_files, total=total, nights_in_all=len(history),
                         attribute_files=[f for (paths,) in scored for f in paths or []
                                          if Path(f).name.startswith("attributes-")])


# -- the catalog snapshot -----------------------------------------------------------------------------
def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pa.Table:
    """The answer to ``sql`` with named parameters (``$name``), as Arrow."""
    try:
        return con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise CatalogError(str(exc).strip()) from exc


def _has_datasets(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the catalog has the dataset tables (a catalog from before datasets has not, until a run)."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'dataset_versions'").fetchall()[0][0])


def _known_dataset(con: duckdb.DuckDBPyConnection, dataset: str) -> None:
    names = [n for (n,) in con.execute("SELECT DISTINCT dataset FROM dataset_versions ORDER BY dataset").fetchall()] \
        if _has_datasets(con) else []
    if dataset in names:
        return
    if not names:
        raise InputError(f"unknown dataset {dataset!r}: no dataset has a version in this data home yet "
                         "(`refinery run` publishes one each night)")
    raise InputError(f"unknown dataset {dataset!r}; the datasets here are: {', '.join(names)}")


def _unknown_version(dataset: str, version: str, versions: Sequence[str], *, is_run: bool) -> str:
    named = list(versions[-VERSIONS_NAMED:])
    more = len(versions) - len(named)
    listed = ", ".join(named) + (f" (and {more} older: `refinery datasets {dataset}` lists them all)" if more else "")
    why = " (that run published none: a night with nothing new, or of another dataset)" if is_run else ""
    return f"dataset {dataset!r} has no version {version!r}{why}; its versions, oldest first: {listed}"


# -- writing the documents ----------------------------------------------------------------------------
def _write_documents(snap: _Snapshot, stage: Path, rows_per_shard: int) -> dict[str, Any]:
    """The version's documents as shards under ``stage/data``, a batch at a time; what was written.

    What ``curated_at`` answers, read one published file at a time (oldest night first, each file
    in its rows' order), so the order is the same on every export of a version, and memory is
    that of one published file (a quality corpus shard, at most ``ingest.shard_size`` documents),
    not the dataset's. One ORDER BY over the whole dataset would sort every text with it, and
    DuckDB's sort of wide rows overruns its memory limit instead of spilling.
    """
    spill = stage / ".spill"
    con = duckdb.connect(config={"memory_limit": EXPORT_MEMORY_LIMIT, "temp_directory": str(spill),
                                 "autoinstall_known_extensions": False, "autoload_known_extensions": False})
    register_filesystems(con)
    night_files = ((version, path) for version, paths in snap.files for path in paths)

    def batches() -> Iterator[pa.RecordBatch]:
        for version, path in night_files:
            # a file published before a column existed lacks it: NULL there
            present = {r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet($path)", {"path": path}).fetchall()}
            columns = ", ".join(f"CAST({'d.' + c if c in present else 'NULL'} AS {_SQL_TYPES[c]}) AS {c}"
                                for c in DOCUMENT_COLUMNS)
            yield from con.sql(f"""
                SELECT {columns}, $v AS added_in FROM read_parquet($path, file_row_number = true) d
                WHERE NOT EXISTS (SELECT 1 FROM retired r WHERE r.added_in = $v AND r.doc_id = d.doc_id)
                  {picked}
                ORDER BY d.file_row_number""", params={"v": version, "path": path}).to_arrow_reader(BATCH_ROWS)

    picked = ""
    if snap.mixture is not None:  # a mixture: only the drawn documents
        con.register("_picked", snap.mixture["table"].select(["doc_id", "tag"]))
        con.execute("CREATE TABLE picked AS SELECT doc_id, tag AS added_in FROM _picked")
        con.unregister("_picked")
        picked = "AND EXISTS (SELECT 1 FROM picked p WHERE p.added_in = $v AND p.doc_id = d.doc_id)"

    try:
        con.register("_retired", snap.retired)
        con.execute("CREATE TABLE retired AS SELECT CAST(doc_id AS VARCHAR) AS doc_id, CAST(added_in AS VARCHAR) "
                    "AS added_in FROM _retired")
        con.unregister("_retired")
        written = _write_shards(batches(), stage / DATA_DIR, rows_per_shard)
    except duckdb.Error as exc:
        raise CatalogError(f"cannot read dataset {snap.dataset!r} version {snap.version}: {str(exc).strip()}") from exc
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    expected = snap.total if snap.mixture is None else snap.mixture["chosen"]
    if written["documents"] != expected:
        raise AccountingError(f"dataset {snap.dataset!r} version {snap.version}: "
                              + (f"the catalog counts {snap.total} documents" if snap.mixture is None else
                                 f"the sample drew {expected} documents")
                              + f" but its files hold {written['documents']}")
    return written


def _draw_mixture(snap: _Snapshot, sample: int, selection: SelectionConfig) -> dict[str, Any]:
    """The documents of a mixture: ``sample`` of the version's, drawn by ``selection``."""
    drawn = draw_selection([(path, version) for version, paths in snap.files for path in paths], snap.attribute_files,
                           sample, selection, retired=snap.retired.rename_columns(["doc_id", "added_in"]),
                           what="export --weight/--cap")
    chosen = drawn.pop("chosen")
    return {**selection_summary(selection, {**drawn, "chosen": chosen.num_rows}), "table": chosen}


def _write_shards(reader: Iterable[pa.RecordBatch], folder: Path, rows_per_shard: int) -> dict[str, Any]:
    """Write the batches' rows as ``train-NNNNN-of-MMMMM.parquet`` files of at most ``rows_per_shard``
    rows (one empty file when there are none, so loaders find the schema)."""
    parts: list[Path] = []
    writer: pq.ParquetWriter | None = None
    in_part = documents = chars = 0
    per_source: Counter[str] = Counter()

    def next_part() -> pq.ParquetWriter:
        parts.append(folder / f".part-{len(parts):05d}.parquet")
        return pq.ParquetWriter(parts[-1], EXPORT_SCHEMA, compression="zstd")

    try:
        for batch in reader:
            batch = pa.RecordBatch.from_arrays([batch.column(n).cast(f.type) for n, f in
                                                zip(EXPORT_SCHEMA.names, EXPORT_SCHEMA)], schema=EXPORT_SCHEMA)
            for source, n in zip(*pc.value_counts(batch.column("source")).flatten()):
                per_source[source.as_py()] += n.as_py()
            chars += pc.sum(batch.column("n_chars")).as_py() or 0
            documents += batch.num_rows
            start = 0
            while start < batch.num_rows:
                if writer is None or in_part == rows_per_shard:
                    if writer is not None:
                        writer.close()
                    writer, in_part = next_part(), 0
                take = min(rows_per_shard - in_part, batch.num_rows - start)
                writer.write_batch(batch.slice(start, take))
                in_part += take
                start += take
        if writer is None:
            writer = next_part()
    finally:
        if writer is not None:
            writer.close()
    names = [f"{SPLIT}-{i:05d}-of-{len(parts):05d}.parquet" for i in range(len(parts))]
    for part, name in zip(parts, names):
        os.replace(part, folder / name)
    return {"documents": documents, "characters": chars, "shards": names, "per_source": dict(per_source)}


# -- placing the folder -------------------------------------------------------------------------------
def _export_files(folder: Path) -> bool:
    """Whether ``folder`` holds only what an export writes (README.md, data/ of .parquet files)."""
    for entry in folder.iterdir():
        if entry.name == CARD and entry.is_file():
            continue
        if entry.name == DATA_DIR and entry.is_dir() and not entry.is_symlink() and all(
                f.is_file() and f.suffix == ".parquet" for f in entry.iterdir()):
            continue
        return False
    return True


def _check_target(target: Path, *, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} is a file, not a folder: choose a folder to export to")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not force:
        raise InputError(f"{target} is not empty: choose a new folder, or add --force to replace an earlier export")
    if not _export_files(target):
        raise InputError(f"{target} holds more than an earlier export (README.md and data/*.parquet): "
                         "--force replaces only an export; choose a new folder")


def _place(stage: Path, target: Path, *, force: bool) -> None:
    """Rename the finished ``stage`` into ``target``; an earlier export there is moved aside first
    and deleted after."""
    _check_target(target, force=force)  # again: something may have appeared while the export ran
    aside = None
    if target.exists():
        aside = target.parent / f".{target.name}.replaced-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(target, aside)
    try:
        os.rename(stage, target)
    except BaseException:
        if aside is not None:
            os.rename(aside, target)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _sweep_stale_stages(target: Path) -> None:
    """Remove the hidden folders that exports into ``target`` killed before they finished left."""
    if not target.parent.is_dir():
        return
    for kind in ("export", "replaced"):
        for stale in target.parent.glob(f".{target.name}.{kind}-*-*"):
            pid = stale.name.rsplit("-", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the dataset card ---------------------------------------------------------------------------------
def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return lines


def _settings(section: dict[str, Any]) -> str:
    """``key value; key value`` of the set options (None means off, lists shown as such)."""
    shown = []
    for key, value in section.items():
        if value is None or isinstance(value, dict) or key == "enabled":
            continue
        shown.append(f"{key} {json.dumps(value) if isinstance(value, (list, bool)) else value}")
    return "; ".join(shown) or "(defaults)"


def _filters(config: dict[str, Any]) -> list[str]:
    ingest, dedup, quality = (config.get(k) or {} for k in ("ingest", "dedup", "quality"))
    lines = [f"- **ingest**: Unicode {ingest.get('unicode_form')}; documents of {ingest.get('min_chars')} to "
             f"{ingest.get('max_chars')} characters (others rejected)"]
    if not dedup.get("exact") and not dedup.get("near"):
        lines.append("- **dedup**: off")
    else:
        kinds = [k for k in ("exact", "near") if dedup.get(k)]
        near = {k: v for k, v in dedup.items() if k not in ("exact", "near")} if dedup.get("near") else {}
        lines.append(f"- **dedup** ({' and '.join(kinds)}; against the dataset's earlier nights too)"
                     + (f": {_settings(near)}" if near else ""))
    lines.append(f"- **quality** (profile `{quality.get('profile')}`); each rule family, and its thresholds:")
    for family, section in quality.items():
        if not isinstance(section, dict) or family == "guard":
            continue
        if section.get("enabled") is False:
            lines.append(f"  - `{family}`: off")
        else:
            lines.append(f"  - `{family}`: {_settings(section)}")
    return lines


def _night_span(seqs: Sequence[int]) -> str:
    return f"night {seqs[0]}" if len(seqs) == 1 else f"nights {', '.join(map(str, seqs))}"


def _mixture_lines(snap: _Snapshot) -> list[str]:
    """The card's words on a mixture (an export with ``--sample``): how its documents were drawn."""
    if snap.mixture is None:
        return []
    text, groups = selection_markdown(snap.mixture)
    return ["## A mixture", "", f"A sample of the version's {snap.total:,} documents, not all of them. "
            + text.replace("**Passage selection**: ", "").strip(), "",
            *(_table(groups, ["group", "before", "after"]) + [""] if groups else [])]


def dataset_card(snap: _Snapshot, written: dict[str, Any], *, folder: str) -> str:
    """The README.md of an export: YAML front matter the Hugging Face Hub reads, then Markdown."""
    seq_of = {n["version"]: n["night"] for n in snap.nights}
    newest = "the newest" if snap.seq == snap.nights_in_all else f"of {snap.nights_in_all} so far"
    shards = written["shards"]
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        f"  - split: {SPLIT}",
        f"    path: {DATA_DIR}/{SPLIT}-*.parquet",
        "---",
        "",
        f"# {snap.dataset}",
        "",
        f"Dataset `{snap.dataset}` at version `{snap.version}` (night {snap.seq}, {newest}), curated by Refinery "
        f"night by night: **{written['documents']:,} documents** ({written['characters']:,} characters) in "
        f"{len(shards)} Parquet file{'s' if len(shards) != 1 else ''} under `{DATA_DIR}/`. Exported "
        f"{snap.exported_at:%Y-%m-%d %H:%M} UTC by `refinery export`.",
        "",
        *_mixture_lines(snap),
        "## Load it",
        "",
        "```python",
        "import pyarrow.dataset as ds",
        f'table = ds.dataset("{folder}/{DATA_DIR}", format="parquet").to_table()',
        "",
        "from datasets import load_dataset  # pip install datasets",
        f'docs = load_dataset("parquet", data_dir="{folder}")["{SPLIT}"]',
        "```",
        "",
        f"In SQL (DuckDB): `SELECT * FROM '{folder}/{DATA_DIR}/*.parquet'`. The files are ordered by the night that "
        "added each document (`added_in`), then as that night published them.",
        "",
        "## Columns",
        "",
        *_table([{"column": f.name, "type": str(f.type), "meaning": COLUMN_MEANINGS[f.name]} for f in EXPORT_SCHEMA],
                ["column", "type", "meaning"]),
        "",
        "## Nights",
        "",
        "Each night read what was new in the sources, dropped what it found duplicated or below the quality "
        "thresholds, and published a version: `added` documents kept, `retired` documents of earlier nights "
        "taken out (their record changed or disappeared), `documents` in the dataset after it.",
        "",
        *_table(snap.nights, ["night", "version", "published_at", "records_read", "dropped", "rejected", "added",
                              "retired", "documents"]),
        "",
        "## What was left out, and why",
        "",
        "Over these nights: records rejected at ingest (unreadable, or an id already seen), documents dropped "
        "by dedup (`dedup_exact`, `dedup_near`: a copy of a document kept, this night or an earlier one; "
        "`dataset_unchanged`: a record of a changed file read again as it was, already in the dataset) and by "
        "quality (the rule family and the threshold), and documents retired from the dataset.",
        "",
        *(_table(snap.left_out, ["stage", "reason", "documents", "nights"]) if snap.left_out else ["Nothing."]),
        "",
        "## Filters and thresholds",
        "",
    ]
    groups: dict[str, list[int]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for version, config in snap.configs:
        ingest = {k: v for k, v in (config.get("ingest") or {}).items() if k in ("unicode_form", "min_chars", "max_chars")}
        key = json.dumps({"ingest": ingest, "dedup": config.get("dedup"), "quality": config.get("quality")},
                         sort_keys=True, default=str)
        groups.setdefault(key, []).append(seq_of.get(version, 0))
        configs[key] = config
    if not groups:
        lines.append("The catalog has no record of the runs' settings.")
    for key, seqs in groups.items():
        lead = "Every night ran with these settings:" if len(groups) == 1 else f"{_night_span(seqs).capitalize()}:"
        lines += [lead, "", *_filters(configs[key]), ""]
    sources: dict[str, dict[str, Any]] = {}
    for _, config in snap.configs:
        for src in (config.get("ingest") or {}).get("sources") or []:
            name = src.get("name") or ("bbc" if src.get("path") == "builtin:bbc" else src.get("path"))
            sources[name] = src  # the newest night's settings of each source
    names = sorted(set(sources) | set(written["per_source"]) | set(snap.input_files))
    rows = [{"source": n, "path": (sources.get(n) or {}).get("path"), "format": (sources.get(n) or {}).get("format"),
             "mode": (sources.get(n) or {}).get("mode"), "input_files_read": snap.input_files.get(n, 0),
             "documents": written["per_source"].get(n, 0)} for n in names]
    lines += ["## Sources", "", *(_table(rows, ["source", "path", "format", "mode", "input_files_read", "documents"])
                                  if rows else ["None."]), ""]
    return "\n".join(lines)
