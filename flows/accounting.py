"""The run's books: every document read is kept, dropped with a reason, or rejected."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from refinery.storage import Catalog, StageMarker
from refinery.flows.runtime import RunSpec


# What synthesize, train and evaluate record when curation kept nothing (they skip, the run completes).
NO_CORPUS = "no document survived curation"


def corpus_is_empty(quality_stats: dict) -> bool:
    return not quality_stats.get("kept")


class AccountingError(RuntimeError):
    """docs in != kept + dropped + rejected, or a document was both kept and dropped."""


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
