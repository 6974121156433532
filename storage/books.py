"""Catalog verbs: the run's books (accounting): counts of documents, drops and rejects, file_books.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations


class BookVerbs:
    """Verbs for the run's books (accounting): counts of documents, drops and rejects, file_books (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""
