"""What the synthesize flow asks the workers for: which documents are passages, how the passages
are split into generation tasks, and what the stage records of the outcome.

Passages and the filter pool are one seeded sample of the corpus (:mod:`tasks.evaluate.sampling`):
the first documents in key order are the passages, and the filter pool is the passages' documents
plus the next documents in key order, ``filter_pool_docs`` in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from refinery.tasks.evaluate.names import content_key
from refinery.tasks.evaluate.pool import Keyed
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.shard_tasks import ALL_GENERATORS, PASSAGES_PER_TASK

# Passages are the documents of smallest xxh3(doc_id, seed) (no salt: the draw of every run so far).
PASSAGE_SALT = ""
# The `metrics` task of the stage's diversity figures.
PAIRS_TASK = "pairs"


class Passages(NamedTuple):
    """The chosen passages: their doc ids in key order, the corpus shards holding them, and the
    shard they are to be written to (named by its documents and the config); ``heldout``: how many
    of them, the last ones, are held out for evaluation."""

    doc_ids: list[str]
    shards: list[str]
    path: Path
    heldout: int = 0


def sample_size(cfg: SynthesizeConfig, heldout: int = 0) -> int:
    """Documents to sample in key order: enough for the passages of every generator and ``heldout``
    more, and for the filter pool."""
    return max(passages_wanted(cfg) + heldout, cfg.filter_pool_docs)


def heldout_size(cfg: SynthesizeConfig, corpus_docs: int) -> int:
    """Passages drawn for evaluation on a night that holds some out: ``synthesize.heldout_passages``,
    at most ``heldout_fraction`` of the corpus (at least one); none without the inverse_cloze
    generator, which is the one that reads them (the held-out split then falls back to a share of
    the passages with a kept pair, :func:`tasks.synthesize.split.split_by_passage`)."""
    if "inverse_cloze" not in cfg.generators or corpus_docs < 2:
        return 0
    return min(cfg.heldout_passages, max(1, round(cfg.heldout_fraction * corpus_docs)))


def passages_wanted(cfg: SynthesizeConfig) -> int:
    """Passages the generators read: the most any of them reads."""
    return max(cfg.passages if set(cfg.generators) - {"inverse_cloze"} else 0,
               cfg.inverse_cloze_passages if "inverse_cloze" in cfg.generators else 0)


def choose_passages(ranked: Sequence[Keyed], corpus_shards: Sequence[str], cfg: SynthesizeConfig,
                    out: Path, heldout: int = 0) -> Passages:
    """The first :func:`passages_wanted` documents of ``ranked`` (a sample of ``corpus_shards`` in key
    order) and ``heldout`` more, where they live, and the passages shard's path under ``out``.

    The last ``heldout`` passages are held out for evaluation (:func:`heldout_size`); in a corpus
    smaller than all of them they take the place of the last training passages."""
    chosen = ranked[: passages_wanted(cfg) + heldout]
    ids = [k.doc_id for k in chosen]
    shards = sorted(corpus_shards)
    return Passages(ids, [shards[i] for i in sorted({k.shard for k in chosen})],
                    out / f"passages-{content_key(ids, cfg.model_dump_json())}.parquet",
                    min(heldout, max(len(ids) - 1, 0)))


def heldout_tail(ranked: Sequence[Keyed], cfg: SynthesizeConfig, heldout: int) -> list[Keyed]:
    """The passages :func:`choose_passages` would hold out of ``ranked``: a night that selects its
    training passages (``synthesize.selection``) holds out the very same uniform ones, so its
    evaluation queries are those of a night that does not."""
    base = ranked[: passages_wanted(cfg) + heldout]
    held = min(heldout, max(len(base) - 1, 0))
    return list(base[len(base) - held:]) if held else []


def selected_passages(drawn: Sequence[tuple[str, str]], held: Sequence[Keyed], corpus_shards: Sequence[str],
                      cfg: SynthesizeConfig, out: Path) -> Passages:
    """The passages of a night that selects them: the (doc_id, shard) ``drawn`` by the selection
    (in its rank order) as training passages, then the uniform ``held`` ones (:func:`heldout_tail`)."""
    shards = sorted(corpus_shards)
    ids = [d for d, _ in drawn] + [k.doc_id for k in held]
    holding = {f for _, f in drawn} | {shards[k.shard] for k in held}
    return Passages(ids, [s for s in shards if s in holding],
                    out / f"passages-{content_key(ids, cfg.model_dump_json())}.parquet", len(held))


def generation_slices(cfg: SynthesizeConfig, passages: int, heldout: int = 0) -> list[tuple[str, int, int]]:
    """(generator, start, stop): the passage ranges of the generation tasks, ``PASSAGES_PER_TASK`` each,
    over the first ``passages`` passages (an LLM generator reads ``synthesize.passages`` of them,
    inverse_cloze ``inverse_cloze_passages`` and the last ``heldout``, the held-out ones)."""
    slices = []
    for generator in cfg.generators:
        count = min(passages, cfg.inverse_cloze_passages if generator == "inverse_cloze" else cfg.passages)
        ranges = [(0, count)]
        if generator == "inverse_cloze" and heldout:
            ranges = [(0, passages)] if count >= passages - heldout else [(0, count), (passages - heldout, passages)]
        step = PASSAGES_PER_TASK[generator]
        slices += [(generator, a, min(a + step, stop)) for start, stop in ranges for a in range(start, stop, step)]
    return slices


def diversity_rows(stats: dict[str, Any]) -> list[tuple[str, str, str, float]]:
    """The stage's `metrics` rows: (generator, 'pairs', metric, value) of each generator's diversity."""
    return [(g, PAIRS_TASK, k, float(v)) for g, d in stats["diversity"].items() for k, v in d.items()]


def pairs_artifact(run_id: str, stats: dict[str, Any], cfg: SynthesizeConfig, filter_pool_docs: int) -> dict[str, Any]:
    """The ``table`` and ``description`` of the stage's table artifact: one row per generator, and all."""
    everything = {"generated": stats["generated"], "kept": stats["kept"], **stats["dropped"]}
    return {
        "table": [{"generator": g, **v, **stats["diversity"].get(g, {})}
                  for g, v in [*stats["by_generator"].items(), (ALL_GENERATORS, everything)]],
        "description": f"Run {run_id}: {stats['kept']} of {stats['generated']} candidate pairs kept "
                       f"(passage in the base model's top {cfg.consistency_top_k} of a pool of {filter_pool_docs} "
                       "documents; the filter_* and decontaminated columns count the candidates each filter "
                       "rejected); "
                       f"{stats['heldout_pairs']} of them held out for evaluation, {stats['with_negatives']} with a "
                       "hard negative.",
    }


def decontamination_summary(stats: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The report's words on decontamination (:mod:`tasks.synthesize.decontaminate`) from the stage's
    stats, and its examples as table rows (none when nothing was rejected, or for a run before it)."""
    dec = stats.get("decontamination")
    if not dec:
        return "", []
    if not dec["enabled"]:
        return "Decontamination is off (`synthesize.decontaminate: false`).\n", []
    sets = ", ".join(f"{name} {n:,}" for name, n in sorted(dec["evaluation_queries"].items())) or "none"
    rejected = stats["dropped"].get("decontaminated", 0)
    rules = ", ".join(f"{rule} {n:,}" for rule, n in dec["by_rule"].items() if n)
    text = (f"**Decontamination**: {rejected:,} candidate{'' if rejected == 1 else 's'} rejected as `decontaminated` "
            f"({rules or 'none'}), checked against the evaluation queries ({sets}).\n")
    rows = [{"generator": e["generator"], "query": e["query"], "rule": e["rule"],
             "evaluation set": e["evaluation_set"], "evaluation query": e["evaluation_query"]}
            for e in dec["examples"]]
    return text, rows
