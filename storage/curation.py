"""Catalog verbs: ingest, dedup and quality rows: duplicate record ids, drops by reason, the quality stage's decisions.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations


class CurationVerbs:
    """Verbs for ingest, dedup and quality rows: duplicate record ids, drops by reason, the quality stage's decisions (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""
