"""The run's books: every document read is kept, dropped with a reason, or rejected."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from refinery.storage import Catalog, StageMarker
from refinery.flows.runtime import RunSpec
from refinery.tasks.exceptions import AccountingError


# What synthesize, train and evaluate record when curation kept nothing (they skip, the run completes).
NO_CORPUS = "no document survived curation"


def corpus_is_empty(quality_stats: dict) -> bool:
    return not quality_stats.get("kept")


# Documents and rejects of a run ($1) per input file, counted in the catalog. A location is its
# file's (a text file, a file-level reject) or that followed by ":line" / ":row"; matching the
# run's file_books first keeps a file whose own name ends in ":<digits>" whole.
_PER_FILE_SQL = """
    SELECT x.source, coalesce(f.path, regexp_replace(x.location, ':[0-9]+$', '')) AS path, count(*) AS n
    FROM {table} x LEFT JOIN file_books f ON f.run_id = x.run_id AND f.source = x.source AND f.path = x.location
    WHERE x.run_id = $1 GROUP BY ALL"""
FILE_COUNTS_SQL = f"""
    SELECT source, path, coalesce(d.n, 0) AS documents, coalesce(r.n, 0) AS rejected
    FROM ({_PER_FILE_SQL.format(table="documents")}) d
    FULL JOIN ({_PER_FILE_SQL.format(table="rejects")}) r USING (source, path)"""
# How many of a run's unbalanced files an AccountingError names.
SHOWN_FILES = 5


@dataclass(frozen=True)
class Books:
    docs_in: int
    docs_kept: int
    docs_dropped: int
    docs_rejected: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def check_books(run: RunSpec) -> Books:
    """Count from the outputs themselves, not from stage stats, and fail loudly if they disagree.

    in = records read (documents written by ingest + rejects); kept = rows of the corpus shards
    quality wrote; dropped = rows of ``drops``; rejected = rows of ``rejects``.
    """
    catalog: Catalog = run.catalog
    ingest = StageMarker(run.stage_dir("ingest")).read()
    quality = StageMarker(run.stage_dir("quality")).read()
    if ingest is None or quality is None:
        raise AccountingError(f"run {run.run_id}: books need finished ingest and quality stages")
    # counted in DuckDB over the shards: the flow process never holds the corpus's ids
    documents, dropped, distinct_dropped, rejected = _counts(catalog, run.run_id)
    kept = overlap = 0
    if quality["corpus_shards"]:
        kept, overlap = catalog.query(
            """
            WITH kept AS (SELECT doc_id FROM read_parquet(?::VARCHAR[]))
            SELECT (SELECT count(*) FROM kept),
                   (SELECT count(*) FROM kept WHERE doc_id IN (SELECT doc_id FROM drops WHERE run_id = ?))
            """, [list(quality["corpus_shards"]), run.run_id]).to_pylist()[0].values()
    books = Books(docs_in=documents + rejected, docs_kept=kept, docs_dropped=dropped, docs_rejected=rejected)
    problems = []
    if documents != ingest["docs"]:
        problems.append(f"catalog has {documents} documents, ingest wrote {ingest['docs']}")
    if dropped != distinct_dropped:
        problems.append(f"{dropped - distinct_dropped} documents dropped more than once")
    if overlap:
        problems.append(f"{overlap} documents both kept and dropped")
    if books.docs_in != kept + dropped + rejected:
        problems.append(f"docs in {books.docs_in} != kept {kept} + dropped {dropped} + rejected {rejected}")
    if ingest.get("files") is not None:  # (runs ingested before file_books have none)
        problems += file_books_problems(catalog, run.run_id, ingest["files"])
    if problems:
        raise AccountingError(f"run {run.run_id}: the books do not balance: " + "; ".join(problems))
    return books


def _counts(catalog: Catalog, run_id: str) -> tuple[int, int, int, int]:
    """documents, drops, distinct dropped doc ids, rejects of a run."""
    return tuple(catalog.query(
        """
        SELECT
          (SELECT count(*) FROM documents WHERE run_id = $run),
          (SELECT count(*) FROM drops WHERE run_id = $run),
          (SELECT count(DISTINCT doc_id) FROM drops WHERE run_id = $run),
          (SELECT count(*) FROM rejects WHERE run_id = $run)
        """.replace("$run", "?"), [run_id] * 4,
    ).to_pylist()[0].values())


def books_so_far(run: RunSpec) -> dict[str, int]:
    """The figures a failed run has, without balancing them: docs_in and docs_rejected once ingest
    finished, docs_dropped (what dedup and quality registered so far) after that, docs_kept once
    quality finished. Empty before ingest finished."""
    if StageMarker(run.stage_dir("ingest")).read() is None:
        return {}
    documents, dropped, _, rejected = _counts(run.catalog, run.run_id)
    books = {"docs_in": documents + rejected, "docs_rejected": rejected, "docs_dropped": dropped}
    quality = StageMarker(run.stage_dir("quality")).read()
    if quality is not None:
        books["docs_kept"] = quality["kept"]
    return books


def file_books_problems(catalog: Catalog, run_id: str, files: int) -> list[str]:
    """What is wrong with a run's books per input file: each of its ``files`` input files has a row
    of ``file_books`` whose records read = documents + rejected, those being what the catalog holds
    of that file; and no document or reject comes from a file without a row."""
    rows = catalog.query(f"""
        WITH counted AS ({FILE_COUNTS_SQL}), books AS (SELECT * FROM file_books WHERE run_id = $1)
        SELECT coalesce(b.source, c.source) AS source, coalesce(b.path, c.path) AS path, b.records_read,
               b.documents, b.rejected, coalesce(c.documents, 0) AS held_documents,
               coalesce(c.rejected, 0) AS held_rejected
        FROM books b FULL JOIN counted c ON b.source = c.source AND b.path = c.path
        WHERE b.path IS NULL OR b.records_read <> b.documents + b.rejected
           OR b.documents <> coalesce(c.documents, 0) OR b.rejected <> coalesce(c.rejected, 0)
        ORDER BY 1, 2""", [run_id]).to_pylist()
    problems = []
    for r in rows[:SHOWN_FILES]:
        name = f"file {r['path']} of source {r['source']}"
        if r["records_read"] is None:
            problems.append(f"{name} has no books: {r['held_documents']} documents, {r['held_rejected']} rejects")
        elif r["records_read"] != r["documents"] + r["rejected"]:
            problems.append(f"{name}: {r['records_read']} records read != {r['documents']} documents "
                            f"+ {r['rejected']} rejected")
        else:
            problems.append(f"{name}: its books say {r['documents']} documents and {r['rejected']} rejected, "
                            f"the catalog holds {r['held_documents']} and {r['held_rejected']}")
    if len(rows) > SHOWN_FILES:
        problems.append(f"{len(rows) - SHOWN_FILES} more files do not balance")
    (kept,) = catalog.query("SELECT count(*) AS n FROM file_books WHERE run_id = ?", [run_id]).column("n").to_pylist()
    if kept != files:
        problems.append(f"file_books has {kept} files, ingest read {files}")
    return problems
