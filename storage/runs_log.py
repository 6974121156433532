"""Catalog verbs: runs, stage_runs, run reuse (--from-run) and deletion (gc); the run summaries the CLI prints.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations


class RunVerbs:
    """Verbs for runs, stage_runs, run reuse (--from-run) and deletion (gc); the run summaries the CLI prints (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""
