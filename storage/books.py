"""Catalog verbs: the run's books (accounting): counts of documents, drops and rejects, file_books.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


class BookVerbs:
    """Verbs for the run's books (accounting): counts of documents, drops and rejects, file_books (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""

    def book_counts(self, run_id: str) -> dict[str, int]:
        """A run's rows of ``documents``, ``drops`` (and its distinct dropped doc ids) and ``rejects``:
        ``{"documents", "dropped", "distinct_dropped", "rejected"}``."""
        (row,) = self.query(
            """
            SELECT
              (SELECT count(*) FROM documents WHERE run_id = $1) AS documents,
              (SELECT count(*) FROM drops WHERE run_id = $1) AS dropped,
              (SELECT count(DISTINCT doc_id) FROM drops WHERE run_id = $1) AS distinct_dropped,
              (SELECT count(*) FROM rejects WHERE run_id = $1) AS rejected
            """, [run_id]).to_pylist()
        return row

    def corpus_shard_counts(self, run_id: str, corpus_shards: Sequence[str]) -> tuple[int, int]:
        """(rows of the corpus shards, how many of those a ``drops`` row of the run also names);
        counted in DuckDB over the shards, so the flow process never holds the corpus's ids."""
        if not corpus_shards:
            return 0, 0
        (row,) = self.query(
            """
            WITH kept AS (SELECT doc_id FROM read_parquet(?::VARCHAR[]))
            SELECT (SELECT count(*) FROM kept) AS kept,
                   (SELECT count(*) FROM kept WHERE doc_id IN (SELECT doc_id FROM drops WHERE run_id = ?)) AS overlap
            """, [list(corpus_shards), run_id]).to_pylist()
        return row["kept"], row["overlap"]

    def update_file_books(self, run_id: str) -> None:
        """Fill each ``file_books`` row of a run with the documents and rejects the catalog holds of its file."""
        with self._write() as con:
            con.execute(
                f"UPDATE file_books b SET documents = c.documents, rejected = c.rejected FROM ({FILE_COUNTS_SQL}) c"
                " WHERE b.run_id = $1 AND b.source = c.source AND b.path = c.path", [run_id])

    def unbalanced_files(self, run_id: str) -> list[dict[str, Any]]:
        """The input files of a run whose books do not balance, by source and path: a ``file_books``
        row whose records read != documents + rejected or whose documents and rejected are not what
        the catalog holds of that file, and files the catalog holds rows of but ``file_books`` has
        no row for (``records_read``, ``documents``, ``rejected`` None). Each with
        ``held_documents``, ``held_rejected``: what the catalog holds of the file."""
        return self.query(f"""
            WITH counted AS ({FILE_COUNTS_SQL}), books AS (SELECT * FROM file_books WHERE run_id = $1)
            SELECT coalesce(b.source, c.source) AS source, coalesce(b.path, c.path) AS path, b.records_read,
                   b.documents, b.rejected, coalesce(c.documents, 0) AS held_documents,
                   coalesce(c.rejected, 0) AS held_rejected
            FROM books b FULL JOIN counted c ON b.source = c.source AND b.path = c.path
            WHERE b.path IS NULL OR b.records_read <> b.documents + b.rejected
               OR b.documents <> coalesce(c.documents, 0) OR b.rejected <> coalesce(c.rejected, 0)
            ORDER BY 1, 2""", [run_id]).to_pylist()

    def file_books_rows(self, run_id: str) -> int:
        """How many input files a run's ``file_books`` has a row for."""
        return self.query("SELECT count(*) AS n FROM file_books WHERE run_id = ?", [run_id]).column("n")[0].as_py()
