"""Catalog verbs: what the run report and ablation read.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations


class ReportVerbs:
    """Verbs for what the run report and ablation read (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""
