"""The shard work of the synthesize stage: generate candidates per passage slice, then filter them
within the filter pool. Plain functions; flows/synthesize.py wraps them as Prefect tasks."""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash
from prefect import get_run_logger

from refinery.storage import read_shard, read_shards, write_shard
from refinery.tasks.embedding import BASE_MODEL_PATH, all_cores, encode
from refinery.tasks.embedding_tasks import cached_encoder, load_embeddings
from refinery.tasks.evaluate.query_sets import SYNTHETIC_HELDOUT
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.decontaminate import RULES, EvaluationIndex, Matches
from refinery.tasks.synthesize.diversity import query_diversity
from refinery.tasks.synthesize.filters import (
    DECONTAMINATED, REPHRASE_HELDOUT, candidate_filters, consistency_filter, mine_hard_negatives, run_filters,
)
from refinery.tasks.synthesize.generators import CACHE_SUBDIRS, build_generator, load_local_model
from refinery.tasks.synthesize.generators.prompts import shot_queries
from refinery.tasks.synthesize.split import HELDOUT, TRAIN, split_by_passage, split_of_docs

# Passages per generation task: small enough to spread over the workers, big enough to batch
# (SmolLM2 batches passages of one query style: 32 gives about 8 of each of the 4; the openai
# generator has synthesize.openai.concurrency requests in flight per task).
PASSAGES_PER_TASK = {"smollm2": 32, "openai": 64, "inverse_cloze": 500}
# The ``model`` of the diversity metrics of every kept query, whatever its generator.
ALL_GENERATORS = "all"
# Decontaminated candidates the stats show as examples (the report shows them).
DECONTAMINATED_EXAMPLES = 3

CANDIDATE_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("query", pa.string()), ("positive", pa.string()),
    ("generator", pa.string()), ("prompt_id", pa.string()),
    # what the prompt asked for (AttrPrompt): 'question', 'keywords', ... ('sentence' for inverse
    # cloze), and the attributes as a JSON object ({"length": "short", "specificity": "broad"})
    ("style", pa.string()), ("attributes", pa.string()),
    # the LLM sample hit the token limit before it ended a sentence (Candidate.unfinished): read by
    # filter_pairs for its reason, filter_unfinished, and not written to the pairs shard
    ("unfinished", pa.bool_()),
])


@functools.lru_cache(maxsize=2)
def worker_generator(name: str, settings: str, cache_dir: Path):
    """The generator ``name`` of these settings (a SynthesizeConfig's JSON), built once per worker
    process: one model load per worker and settings, not one per task."""
    cfg = SynthesizeConfig.model_validate_json(settings)
    return build_generator(name, cfg, cache_dir=cache_dir, show_progress=False)


def prepare_smollm2(cache_dir: Path, model: str | None = None) -> str:
    """Load the smollm2 generator's model once (``cache_dir``: the data home's cache folder) and
    cache a GGUF file de-quantized, so every worker then loads it in seconds."""
    load_local_model(model, cache_dir=Path(cache_dir) / CACHE_SUBDIRS["smollm2"])
    return str(cache_dir)


def generate_candidates(passages: Path, start: int, stop: int, generator: str, cfg: SynthesizeConfig,
                        out_dir: Path, cache_dir: Path) -> str:
    """Candidate queries for passages ``[start, stop)`` of the passages shard; ``cache_dir`` is the
    data home's cache folder (models, answers of the openai generator).

    Named after the passages shard (itself named by its documents and the config), so candidates
    of other passages are never reused.
    """
    out = out_dir / f"candidates-{passages.stem.removeprefix('passages-')}-{generator}-{start:06d}.parquet"
    if out.exists():
        return str(out)
    rows = read_shard(passages).slice(start, stop - start)
    doc_ids = rows.column("doc_id").to_pylist()
    texts = rows.column("text").to_pylist()
    backend = worker_generator(generator, cfg.model_dump_json(), cache_dir)
    per_passage = backend.generate(texts)
    if getattr(backend, "stats", None):
        get_run_logger().info("%s: %s", generator, ", ".join(f"{v} {k}" for k, v in backend.stats.items()))
    records = [
        {"doc_id": d, "query": c.query, "positive": c.positive or text, "generator": generator,
         "prompt_id": c.prompt_id, "style": c.style,
         "attributes": json.dumps(dict(c.attributes), sort_keys=True) if c.attributes is not None else None,
         "unfinished": c.unfinished}
        for d, text, cands in zip(doc_ids, texts, per_passage) for c in cands
    ]
    return str(write_shard(pa.Table.from_pylist(records, schema=CANDIDATE_SCHEMA), out))


def filter_pairs(candidate_shards: list[str], embedding_shards: list[str], cfg: SynthesizeConfig,
                 out_dir: Path, heldout_fraction: float | None = None, encoder: str = "torch",
                 cache_dir: str | None = None, clusters: dict[str, str] | None = None,
                 evaluation_queries: dict[str, str] | None = None,
                 exclude_negatives: Sequence[str] = (), heldout_docs: Sequence[str] | None = None,
                 rephrased_passages: str | None = None) -> dict[str, Any]:
    """Run the filters of :mod:`tasks.synthesize.filters` over every candidate; each one rejected
    stays in the pairs shard with ``kept`` false and its ``reason``.

    ``embedding_shards`` are the base model's embeddings of the filter pool (the passages'
    documents and seeded distractors); hard negatives come from it too. ``clusters`` maps the
    pool's documents that share a dedup cluster with another pool document to that cluster's id:
    ranking a cluster mate first is no failure of the consistency filter, and a cluster mate is
    never a hard negative. With ``heldout_fraction`` that share of the passages with a kept pair
    is held out, or with ``heldout_docs`` the passages of those documents (``split`` 'heldout', see
    :mod:`tasks.synthesize.split`): their pairs are
    evaluation queries, and their documents are never a mined hard negative, so training never
    sees their text; nor is a document of ``exclude_negatives`` (a dataset's frozen held-out
    passages, on the nights after the first). ``encoder`` and ``cache_dir`` choose the inference backend (``evaluate.encoder``).
    ``rephrased_passages``: the shard of rephrased passages some candidates are of
    (:func:`tasks.synthesize.rephrase.rephrased_passages`); their original document stands in for
    them in the pool and the split (see :mod:`tasks.synthesize.filters`).

    With ``cfg.decontaminate``, candidates overlapping an evaluation query are rejected as
    ``decontaminated`` (:mod:`tasks.synthesize.decontaminate`): the queries of the
    ``evaluation_queries`` shards ({task: shard with a ``query`` column}) and the held-out pairs.
    Held-out pairs are known only once the filters have run (the split draws among passages with
    a kept pair), so with a held-out split the filters run a second time, the train passages'
    candidates that overlap a held-out pair (or its passage: rule b) rejected too; held-out
    passages keep the first outcome, and the split stays as drawn.
    """
    cands = read_shards(sorted(candidate_shards))
    unfinished = [bool(u) for u in cands.column("unfinished").to_pylist()]
    cands = cands.drop_columns(["unfinished"])
    doc_ids, corpus_emb = load_embeddings(sorted(embedding_shards))
    position = {d: i for i, d in enumerate(doc_ids)}
    queries = cands.column("query").to_pylist()
    cand_docs = cands.column("doc_id").to_pylist()
    gens = cands.column("generator").to_pylist()
    origin = _originals(rephrased_passages)
    pool_docs = [origin.get(d, d) for d in cand_docs]  # a rephrasing's place in the pool is its original's
    derived = np.array([d in origin for d in cand_docs], dtype=bool)
    positive = np.array([position[d] for d in pool_docs], dtype=np.int64)
    clusters = clusters or {}
    members: dict[str, set[int]] = defaultdict(set)  # cluster id -> its pool documents' positions
    for d, c in clusters.items():
        if d in position:
            members[c].add(position[d])
    same = [members.get(clusters.get(d), set()) for d in pool_docs]
    with all_cores():  # runs alone, after every candidate is in
        q_emb = encode(cached_encoder(str(BASE_MODEL_PATH), None, encoder, cache_dir), queries, show_progress=False)
    consistent, rank = consistency_filter(q_emb, corpus_emb, positive, cfg.consistency_top_k, same_as_positive=same)
    positives = cands.column("positive").to_pylist()

    def filters(contaminated: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        return run_filters(len(queries), candidate_filters(
            cfg, queries, positives, gens, list(zip(cand_docs, gens)), rank, consistent,
            examples=shot_queries(cfg.few_shot), unfinished=unfinished, contaminated=contaminated))

    index = _evaluation_index(evaluation_queries if cfg.decontaminate else None)
    kept, reason, dropped, split, found, index = _filter_and_split(
        filters, index, queries, positives, pool_docs, heldout_fraction,
        decontaminate=cfg.decontaminate, seed=cfg.seed, heldout_docs=heldout_docs, derived=derived)
    if derived.any():
        lost = derived & (split == HELDOUT) & kept
        kept, reason = kept & ~lost, np.where(lost, REPHRASE_HELDOUT, reason)
        dropped = {**dropped, REPHRASE_HELDOUT: int(lost.sum())}
    train = kept & (split == TRAIN)
    held_docs = {position[d] for d, s in zip(pool_docs, split) if s == HELDOUT}
    held_docs |= {position[d] for d in exclude_negatives if d in position}
    negative = np.full(len(queries), -1)
    if cfg.hard_negatives and train.any():
        negative[train] = mine_hard_negatives(
            q_emb[train], corpus_emb, positive[train], rank_window=tuple(cfg.hard_negative_rank_window),
            margin=cfg.hard_negative_margin, exclude=[held_docs | same[i] for i in np.flatnonzero(train)],
            seed=cfg.seed)
    score = np.einsum("ij,ij->i", q_emb, corpus_emb[positive]) if len(queries) else np.zeros(0)
    pairs = cands.append_column("pair_id", pa.array(_pair_ids(gens, cand_docs, queries), pa.string()))
    for name, values in (("kept", pa.array(kept, pa.bool_())), ("score", pa.array(score, pa.float64())),
                         ("rank", pa.array(rank, pa.int32())),
                         ("negative_doc_id", pa.array([doc_ids[i] if i >= 0 else None for i in negative], pa.string())),
                         ("split", pa.array(split.tolist(), pa.string())),
                         ("reason", pa.array(reason.tolist(), pa.string())),
                         ("original_doc_id", pa.array([origin.get(d) for d in cand_docs], pa.string()))):
        pairs = pairs.append_column(name, values)
    path = write_shard(pairs, out_dir / "pairs.parquet")
    gen_col = np.array(gens, dtype=object)
    rejected = Counter(zip(gens, reason.tolist()))
    by_generator, diversity = {}, {}
    for g in sorted(set(gens)):
        sel = (gen_col == g) & kept
        by_generator[g] = {"generated": int((gen_col == g).sum()), "kept": int(sel.sum()),
                           **{r: rejected[(g, r)] for r in dropped}}
        diversity[g] = query_diversity([q for q, s in zip(queries, sel) if s], q_emb[sel], seed=cfg.seed)
    if len(queries):
        diversity[ALL_GENERATORS] = query_diversity([q for q, k in zip(queries, kept) if k], q_emb[kept], seed=cfg.seed)
    heldout = kept & (split == HELDOUT)
    decontamination = _decontamination_stats(cfg, index, found, reason == DECONTAMINATED,
                                              queries=queries, docs=cand_docs, gens=gens)
    return {"pairs_path": str(path), "generated": len(queries), "kept": int(kept.sum()), "dropped": dropped,
            "train_pairs": int(train.sum()), "heldout_pairs": int(heldout.sum()),
            "heldout_passages": len({d for d, h in zip(cand_docs, heldout) if h}),
            "with_negatives": int((negative >= 0).sum()), "by_generator": by_generator, "diversity": diversity,
            "decontamination": decontamination}


def _evaluation_index(evaluation_queries: dict[str, str] | None) -> EvaluationIndex:
    """The index of the evaluation queries of these shards ({task: shard with a ``query`` column}),
    with the relevant passages of a shard that has a ``passage`` column (a dataset's frozen held-out
    queries): those of headlines and user sets are corpus documents training may use."""
    texts, sets, passages = [], [], []
    for name, shard in sorted((evaluation_queries or {}).items()):
        table = read_shard(shard)
        column = table.column("query").to_pylist()
        texts += column
        sets += [name] * len(column)
        passages += table.column("passage").to_pylist() if "passage" in table.column_names else [None] * len(column)
    return EvaluationIndex.build(texts, sets=sets, passages=passages)


def _filter_and_split(filters: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, dict[str, int]]],
                      index: EvaluationIndex, queries: list[str], positives: list[str], docs: list[str],
                      heldout_fraction: float | None, *, decontaminate: bool, seed: int,
                      heldout_docs: Sequence[str] | None = None, derived: np.ndarray | None = None) -> tuple[Any, ...]:
    """``filters`` (contaminated mask -> :func:`run_filters`'s outcome) with the candidates that
    overlap ``index`` contaminated, then the split; with a held-out split and ``decontaminate``,
    again with the train passages' candidates that overlap a held-out pair contaminated too (the
    held-out passages keep the first outcome, the split stays). ``derived`` marks the candidates of
    rephrased passages (``docs`` their originals): the split draws among the others, and theirs are
    no held-out pair. Returns ``(kept, reason, dropped,
    split, matches, index)``, the index of every evaluation query checked (held-out pairs last)."""
    found = index.matches(queries, positives)
    kept, reason, dropped = filters(found.contaminated)
    derived = np.zeros(len(docs), dtype=bool) if derived is None else derived
    split = (split_by_passage(docs, kept & ~derived, heldout_fraction, seed=seed) if heldout_docs is None
             else split_of_docs(docs, heldout_docs))
    held = np.flatnonzero(kept & (split == HELDOUT) & ~derived)
    if not decontaminate or not len(held):
        return kept, reason, dropped, split, found, index
    # a held-out pair's relevant passage is its positive (the document, less the query sentence for
    # inverse cloze): never trained on, so a training query quoting it is leakage (rule b)
    both = EvaluationIndex.build([*index.queries, *(queries[i] for i in held)],
                                 sets=[*index.sets, *[SYNTHETIC_HELDOUT] * len(held)],
                                 passages=[*[None] * len(index), *(positives[i] for i in held)])
    train = split == TRAIN
    leak = both.matches(queries, positives, alive=train & ~found.contaminated)
    if leak.contaminated.any():
        take = ~found.contaminated & leak.contaminated
        found = Matches(np.where(take, leak.rule, found.rule), np.where(take, leak.query, found.query))
        again, again_reason, _ = filters(found.contaminated)
        kept, reason = np.where(train, again, kept), np.where(train, again_reason, reason)
        dropped = {r: int((reason == r).sum()) for r in dropped}
    return kept, reason, dropped, split, found, both


def _decontamination_stats(cfg: SynthesizeConfig, index: EvaluationIndex, found: Matches, rejected: np.ndarray,
                           *, queries: list[str], docs: list[str], gens: list[str]) -> dict[str, Any]:
    """What decontamination checked against and rejected: evaluation queries per task, candidates
    per rule and per task, and a few examples (candidate, the evaluation query it overlaps)."""
    evaluation, sets = index.queries, index.sets
    rows = np.flatnonzero(rejected)
    examples = []
    for i in rows[np.argsort([xxhash.xxh3_64_intdigest(queries[r].encode()) for r in rows], kind="stable")]:
        if len(examples) == DECONTAMINATED_EXAMPLES:
            break
        examples.append({"generator": gens[i], "doc_id": docs[i], "query": queries[i],
                         "rule": RULES[found.rule[i]], "evaluation_set": sets[found.query[i]],
                         "evaluation_query": evaluation[found.query[i]]})
    return {"enabled": cfg.decontaminate, "evaluation_queries": dict(Counter(sets)),
            "index_bytes": index.nbytes,
            "by_rule": {r: int((found.rule[rejected] == k).sum()) for k, r in enumerate(RULES)},
            "by_set": dict(Counter(sets[found.query[i]] for i in rows)), "examples": examples}


def _originals(rephrased_passages: str | None) -> dict[str, str]:
    """{derived doc id: its original's} of a rephrased passages shard (empty for none)."""
    if rephrased_passages is None:
        return {}
    table = read_shard(rephrased_passages)
    return dict(zip(table.column("doc_id").to_pylist(), table.column("original_doc_id").to_pylist()))


def _pair_ids(gens: list[str], docs: list[str], queries: list[str]) -> list[str]:
    """A stable id per candidate: a hash of (generator, doc, query), and of its repeat number too
    for the second and later samples of the same query (a repeat is a candidate of its own)."""
    seen: Counter[tuple[str, str, str]] = Counter()
    ids = []
    for key in zip(gens, docs, queries):
        repeat = seen[key]
        seen[key] += 1
        g, d, q = key
        ids.append(xxhash.xxh3_64_hexdigest((f"{g}\x1f{d}\x1f{q}" + (f"\x1f{repeat}" if repeat else "")).encode()))
    return ids
