"""The run's books: every document read is kept, dropped with a reason, or rejected.

Counted from the outputs themselves (the catalog and the corpus shards; storage/books.py holds the
queries), not from the stages' stats, and checked against what ingest and quality say they wrote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from refinery.storage import Catalog
from refinery.tasks.exceptions import AccountingError

# What synthesize, train and evaluate record when curation kept nothing (they skip, the run completes).
NO_CORPUS = "no new document survived curation tonight"
# How many of a run's unbalanced files an AccountingError names.
SHOWN_FILES = 5


def corpus_is_empty(quality_stats: dict) -> bool:
    return not quality_stats.get("kept")




class CatalogedRun(Protocol):
    """What the books need of a run (a flows.runtime.RunSpec is one)."""

    @property
    def run_id(self) -> str: ...

    @property
    def catalog(self) -> Catalog: ...


@dataclass(frozen=True)
class Books:
    docs_in: int
    docs_kept: int
    docs_dropped: int
    docs_rejected: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def check_books(run: CatalogedRun, ingest: dict[str, Any], quality: dict[str, Any]) -> Books:
    """Count from the outputs themselves, not from stage stats, and fail loudly if they disagree.

    ``ingest`` and ``quality``: what those stages returned. in = records read (documents written
    by ingest + rejects); kept = rows of the corpus shards quality wrote; dropped = rows of
    ``drops``; rejected = rows of ``rejects``.
    """
    catalog = run.catalog
    counts = catalog.book_counts(run.run_id)
    documents, dropped, rejected = counts["documents"], counts["dropped"], counts["rejected"]
    kept, overlap = catalog.corpus_shard_counts(run.run_id, quality["corpus_shards"])
    books = Books(docs_in=documents + rejected, docs_kept=kept, docs_dropped=dropped, docs_rejected=rejected)
    problems = []
    if documents != ingest["docs"]:
        problems.append(f"catalog has {documents} documents, ingest wrote {ingest['docs']}")
    if dropped != counts["distinct_dropped"]:
        problems.append(f"{dropped - counts['distinct_dropped']} documents dropped more than once")
    if overlap:
        problems.append(f"{overlap} documents both kept and dropped")
    if books.docs_in != kept + dropped + rejected:
        problems.append(f"docs in {books.docs_in} != kept {kept} + dropped {dropped} + rejected {rejected}")
    problems += file_books_problems(catalog, run.run_id, ingest["files"])
    if problems:
        raise AccountingError(f"run {run.run_id}: the books do not balance: " + "; ".join(problems))
    return books


def books_so_far(run: CatalogedRun, ingest: dict[str, Any] | None, quality: dict[str, Any] | None) -> dict[str, int]:
    """The figures a failed run has, without balancing them: docs_in and docs_rejected once ingest
    finished, docs_dropped (what dedup and quality registered so far) after that, docs_kept once
    quality finished. Empty before ingest finished (``ingest``, ``quality``: what those stages
    returned, None for a stage that did not finish)."""
    if ingest is None:
        return {}
    counts = run.catalog.book_counts(run.run_id)
    books = {"docs_in": counts["documents"] + counts["rejected"], "docs_rejected": counts["rejected"],
             "docs_dropped": counts["dropped"]}
    if quality is not None:
        books["docs_kept"] = quality["kept"]
    return books


def file_books_problems(catalog: Catalog, run_id: str, files: int) -> list[str]:
    """What is wrong with a run's books per input file: each of its ``files`` input files has a row
    of ``file_books`` whose records read = documents + rejected, those being what the catalog holds
    of that file; and no document or reject comes from a file without a row."""
    rows = catalog.unbalanced_files(run_id)
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
    if (kept := catalog.file_books_rows(run_id)) != files:
        problems.append(f"file_books has {kept} files, ingest read {files}")
    return problems
