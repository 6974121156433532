"""The query sets a run is evaluated on, each a task of the ``metrics`` table, and how the evaluate
flow builds each one's shard of queries from the catalog.

The user's own sets (``evaluate.queries``, each named by its ``name``); one built-in set chosen
by ``evaluate.task``: the documents' titles (``headline``) or the synthetic pairs the synthesize
stage held out from training (``synthetic_heldout``); and, when the documents have labels, the
pool's labelled documents as queries for the others of their label (``same_label``,
:mod:`tasks.evaluate.labels`). At most ``evaluate.max_queries`` queries of a set are scored.
These run in the flow process: each reads a few rows of the catalog and writes one small shard.
With ``dataset``, a night's sets are built on the version of that dataset the night published
(its documents, their dedup clusters across nights, its curated documents), not on the night alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from refinery.storage import read_shard, write_shard
from refinery.tasks.evaluate.config import EvaluateConfig, QuerySetConfig
from refinery.tasks.evaluate.labels import SAME_LABEL, has_label, label_queries, skip_reason

if TYPE_CHECKING:
    from refinery.storage import Catalog

HEADLINE = "headline"
SYNTHETIC_HELDOUT = "synthetic_heldout"
# metrics rows of a task's query counts have this model name (metric: sampled, scored, ...)
QUERY_COUNTS = "queries"
DESCRIPTIONS = {
    HEADLINE: "headline → article retrieval",
    SYNTHETIC_HELDOUT: "held-out synthetic query → document retrieval",
    SAME_LABEL: "document → documents of the same label",
}


def describe(task: str) -> str:
    """What a task measures, in words (a user query set: by its name)."""
    return DESCRIPTIONS.get(task, f"{task}: your queries → documents retrieval")


def builtin_task(cfg: EvaluateConfig, catalog: Catalog, run_id: str, *, dataset: str | None = None) -> str | None:
    """The built-in query set of the run: ``evaluate.task`` with 'auto' resolved on the curated corpus.

    'auto' is 'headline' when some curated document has a title, else 'synthetic_heldout' unless
    ``evaluate.queries`` has sets (then None: only those). Called by synthesize, which holds pairs
    out only for 'synthetic_heldout' and records the choice; evaluate then follows the record.
    """
    if cfg.task == "none":
        return None
    if cfg.task == SYNTHETIC_HELDOUT:
        return SYNTHETIC_HELDOUT
    if catalog.has_titled_documents(run_id, dataset=dataset):
        return HEADLINE
    if cfg.task == HEADLINE:
        raise ValueError(f"run {run_id}: evaluate.task is 'headline' but no curated document has a title "
                         "(use 'auto' or 'synthetic_heldout')")
    return None if cfg.queries else SYNTHETIC_HELDOUT


def builtin_set(catalog: Catalog, run_id: str, task: str, cfg: EvaluateConfig, out: Path, *,
                dataset: str | None = None) -> dict[str, Any]:
    """The built-in set ``task`` (headline or synthetic_heldout): its queries shard under ``out``
    (query, relevant doc ids), their relevant doc ids and its counts."""
    sample = {HEADLINE: catalog.headline_queries, SYNTHETIC_HELDOUT: catalog.heldout_queries}[task]
    table = sample(run_id, cfg.seed, cfg.max_queries, dataset=dataset)
    if not table.num_rows:
        raise RuntimeError(f"run {run_id}: no {task} queries to score"
                           + (" (no kept pair was held out)" if task == SYNTHETIC_HELDOUT else ""))
    in_source = table.column("in_source")[0].as_py()
    path = write_shard(table.select(["query", "relevant"]), out / f"queries-{task}.parquet")
    return {"path": str(path), "relevant": table.column("relevant").to_pylist(),
            "counts": {"in_source": in_source, "sampled": table.num_rows, "scored": table.num_rows}}


def user_set(catalog: Catalog, run_id: str, source: QuerySetConfig, loaded: dict[str, Any],
             out: Path, *, dataset: str | None = None) -> dict[str, Any]:
    """A user query set whose sample a worker wrote (``loaded``: :func:`tasks.evaluate.shard_tasks.load_query_set`),
    matched to the run's documents; queries whose relevant documents curation dropped, or that
    match no ingested record, are counted, not scored."""
    sample = read_shard(loaded["path"])
    qids, records = sample.column("query_id").to_pylist(), sample.column("record_ids").to_pylist()
    flat = [(q, r) for q, rs in zip(qids, records) for r in rs]
    relevant = catalog.user_relevance(run_id, [q for q, _ in flat], [r for _, r in flat], source.source,
                                      dataset=dataset)
    scored = [i for i, q in enumerate(qids) if relevant.get(q)]
    table = pa.table({"query": pa.array([sample.column("query")[i].as_py() for i in scored], pa.string()),
                      "relevant": pa.array([relevant[qids[i]] for i in scored], pa.list_(pa.string()))})
    path = write_shard(table, out / f"queries-{source.name}.parquet")
    counts = {"in_source": loaded["in_source"], "sampled": loaded["sampled"], "scored": len(scored),
              "all_relevant_dropped": sum(1 for q in qids if q in relevant and not relevant[q]),
              "not_ingested": sum(1 for q in qids if q not in relevant)}
    return {"path": str(path), "relevant": table.column("relevant").to_pylist(), "counts": counts}


def label_set(catalog: Catalog, run_id: str, pool_ids: list[str], cfg: EvaluateConfig,
              out: Path, *, dataset: str | None = None) -> dict[str, Any] | str:
    """The same-label task over the pool: its labelled documents, which of them are queries, the
    counts; or why the task cannot be scored (a string)."""
    table = catalog.pool_labels(run_id, pool_ids, dataset=dataset)
    doc_ids, labels = table.column("doc_id").to_pylist(), table.column("label").to_pylist()
    if (why := skip_reason(labels)) is not None:
        return why
    queries, counts = label_queries(doc_ids, labels, max_queries=cfg.max_queries, seed=cfg.seed)
    chosen = set(queries)
    labelled = [(d, lab) for d, lab in zip(doc_ids, labels) if has_label(lab)]
    path = write_shard(pa.table({"doc_id": pa.array([d for d, _ in labelled], pa.string()),
                                 "label": pa.array([lab for _, lab in labelled], pa.string()),
                                 "query": pa.array([d in chosen for d, _ in labelled], pa.bool_())}),
                       out / f"queries-{SAME_LABEL}.parquet")
    return {"path": str(path), "labels": True, "relevant": [], "counts": counts}


def heldout_cuts(catalog: Catalog, run_id: str, out: Path, *, dataset: str | None = None) -> str:
    """A shard of the (doc_id, query) rows whose query is cut from its document before ranking."""
    return str(write_shard(catalog.heldout_cuts(run_id, dataset=dataset), out / "heldout_cuts.parquet"))


def frozen_heldout_set(catalog: Catalog, dataset: str, out: Path) -> str:
    """A shard of ``dataset``'s frozen held-out queries with their passages' text (query, passage):
    what a later night's candidates are checked against (decontamination rules a to c)."""
    table = catalog.frozen_heldout(dataset).select(["query", "passage"])
    return str(write_shard(table, out / "queries-frozen-heldout.parquet"))
