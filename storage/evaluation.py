"""Catalog verbs: synthesize and evaluate: query sets, relevance through dedup clusters, pool labels, held-out cuts, metrics.

A mixin of :class:`refinery.storage.catalog.Catalog`; every method names what it reads or writes,
so no SQL text lives outside storage/.
"""

from __future__ import annotations


class EvaluationVerbs:
    """Verbs for synthesize and evaluate: query sets, relevance through dedup clusters, pool labels, held-out cuts, metrics (mixed into Catalog: ``self._read()``, ``self._write()``, ``self._answer``)."""
