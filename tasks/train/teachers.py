"""Teachers: models that score (query, passage) pairs, measured on the dev split before they are used.

A teacher has one method, ``score(queries, passages)``: a score per pair, higher meaning more
relevant, in its own units. Three kinds (``train.teacher.kind``):

- ``cross_encoder``: a sentence-transformers ``CrossEncoder`` folder; its raw logits.
- ``query_likelihood``: the mean log-probability of the query's tokens after the passage under a
  causal LM (UPR, Sachan et al. 2022: a zero-shot reranker even for small LMs); by default the local
  generator's SmolLM2-135M-Instruct.
- ``fusion``: BM25 and the dense model training starts from, ``w · cosine + (1 − w) · bm25 / max``
  (the query's BM25 scores divided by its best over the collection), with ``w`` fitted on the dev split.

Before it is used, a teacher reranks each dev query's top ``rerank_depth`` dev passages by the
starting model; it is used only if its nDCG@10 there beats the starting model's (:func:`dev_check`;
a fusion's weight is cross-fitted: chosen on one half of the dev queries, measured on the other).
Then it scores every training triplet (:func:`teach`): a negative it scores at least its positive's
score minus ``false_negative_margin`` is dropped as a likely false negative, and the others get
the margin ``score(q, pos) − score(q, neg)`` for MarginMSE, rescaled to the student's units.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from refinery.tasks.embedding import encode
from refinery.tasks.evaluate.retrieval import NDCG_K, ndcg_scores
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.config import TeacherConfig

# Fusion weights tried on the dev split.
FUSION_GRID = tuple(round(0.05 * i, 2) for i in range(21))
# Training passages the dev check ranks beside the dev passages (a seeded sample): among the dev
# passages alone (80 on the bundled corpus) the starting model is near perfect and no teacher can
# show it is better.
DEV_CHECK_DISTRACTORS = 1000
# Triplets the margins' rescaling is estimated on (the starting model embeds them).
CALIBRATION_TRIPLETS = 256
# The query-likelihood prompt (UPR's), the passage cut to leave room for the query.
QL_PROMPT = "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:"
QL_MAX_TOKENS = 512


class Teacher(Protocol):
    name: str

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray: ...


class CrossEncoderTeacher:
    name = "cross_encoder"

    def __init__(self, path: str, *, batch_size: int):
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(path, local_files_only=True)
        self.batch_size = batch_size

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        import torch

        if not len(queries):
            return np.zeros(0)
        return np.asarray(self.model.predict(list(zip(queries, passages)), batch_size=self.batch_size,
                                             activation_fn=torch.nn.Identity(), show_progress_bar=False),
                          dtype=np.float64).reshape(-1)


class QueryLikelihoodTeacher:
    name = "query_likelihood"

    def __init__(self, path: str | None, *, batch_size: int, cache_dir: str | None = None):
        from refinery.tasks.synthesize.generators.local import load_local_model

        self.tokenizer, self.model = load_local_model(path or None, cache_dir=cache_dir)
        self.batch_size = batch_size

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Mean log p(query token | passage prompt, earlier query tokens) per pair."""
        import torch

        out = np.zeros(len(queries), dtype=np.float64)
        rows = []
        for q, p in zip(queries, passages):
            query_ids = self.tokenizer(" " + q, add_special_tokens=False)["input_ids"][: QL_MAX_TOKENS // 4] or [
                self.tokenizer.eos_token_id]
            prompt_ids = self.tokenizer(QL_PROMPT.format(passage=p), add_special_tokens=False)["input_ids"]
            prompt_ids = prompt_ids[-(QL_MAX_TOKENS - len(query_ids)):]  # the passage's start goes first, not the cue
            rows.append((prompt_ids, query_ids))
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                width = max(len(rows[i][0]) + len(rows[i][1]) for i in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, i in enumerate(chunk):
                    seq = rows[i][0] + rows[i][1]
                    ids[r, : len(seq)] = torch.tensor(seq)
                    mask[r, : len(seq)] = 1
                logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                for r, i in enumerate(chunk):
                    n_prompt, n_query = len(rows[i][0]), len(rows[i][1])
                    positions = torch.arange(n_prompt - 1, n_prompt + n_query - 1)  # each predicts the next token
                    targets = ids[r, n_prompt : n_prompt + n_query]
                    out[i] = float(logprobs[r, positions, targets].mean())
        return out


class FusionTeacher:
    """BM25 over a collection of passages and a dense model, ``w · cosine + (1 − w) · bm25 / max``."""

    name = "fusion"

    def __init__(self, encoder, collection: Sequence[str], *, k1: float = 0.9, b: float = 0.4, weight: float = 0.5):
        import bm25s

        self.encoder, self.weight = encoder, weight
        self._position = {text: i for i, text in enumerate(collection)}
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index(self._tokens(collection), show_progress=False)

    @staticmethod
    def _tokens(texts: Sequence[str]):
        import bm25s

        return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)

    def components(self, queries: Sequence[str], passages: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(cosine, normalized BM25) per pair; every passage must be in the collection."""
        q_emb = encode(self.encoder, list(dict.fromkeys(queries)), show_progress=False)
        q_row = {q: i for i, q in enumerate(dict.fromkeys(queries))}
        p_emb = encode(self.encoder, list(dict.fromkeys(passages)), show_progress=False)
        p_row = {p: i for i, p in enumerate(dict.fromkeys(passages))}
        cosine = np.array([float(q_emb[q_row[q]] @ p_emb[p_row[p]]) for q, p in zip(queries, passages)])
        lexical = np.zeros(len(queries))
        by_query: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_query.setdefault(q, []).append(i)
        for q, rows in by_query.items():
            scores = self._bm25.get_scores(self._tokens([q])[0])
            top = float(scores.max()) if len(scores) else 0.0
            for i in rows:
                lexical[i] = float(scores[self._position[passages[i]]]) / top if top > 0 else 0.0
        return cosine, lexical

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        cosine, lexical = self.components(queries, passages)
        return self.weight * cosine + (1 - self.weight) * lexical


def load_teacher(cfg: TeacherConfig, *, encoder, collection: Sequence[str], cache_dir: str | None = None) -> Teacher:
    """The teacher ``cfg`` names; a fusion one is built over ``collection`` with ``encoder``."""
    if cfg.kind == "cross_encoder":
        return CrossEncoderTeacher(cfg.path, batch_size=cfg.batch_size)
    if cfg.kind == "query_likelihood":
        return QueryLikelihoodTeacher(cfg.path, batch_size=cfg.batch_size, cache_dir=cache_dir)
    if cfg.kind == "fusion":
        return FusionTeacher(encoder, collection)
    raise ValueError(f"no teacher of kind {cfg.kind!r}")


def _dev_passages(dev: Sequence[TrainPair]) -> tuple[list[str], list[int]]:
    """The dev split's passages (one per document) and each dev pair's passage index."""
    texts: dict[str, str] = {}
    for ex in dev:
        texts.setdefault(ex.passage_key, ex.positive)
    keys = list(texts)
    index = {k: i for i, k in enumerate(keys)}
    return [texts[k] for k in keys], [index[ex.passage_key] for ex in dev]


def _ndcg(order: np.ndarray, candidates: np.ndarray, relevant: Sequence[int]) -> np.ndarray:
    """Per-query nDCG@10 of the candidates in ``order`` (row-wise indices into ``candidates``)."""
    ranked = np.take_along_axis(candidates, order, axis=1)
    hits = ranked == np.asarray(relevant)[:, None]
    return ndcg_scores(hits[:, :NDCG_K], np.ones(len(relevant), dtype=np.int64), NDCG_K)


def dev_check(teacher: Teacher, dev: Sequence[TrainPair], encoder, *, depth: int,
              distractors: Sequence[str] = ()) -> dict[str, Any]:
    """Rerank each dev query's top ``depth`` passages by ``encoder`` (of the dev passages and
    ``distractors``: passages relevant to no dev query) with the teacher: both nDCG@10 means,
    ``used`` (the teacher's is higher) and, for a fusion teacher, its fitted weight."""
    passages, relevant = _dev_passages(dev)
    own = set(passages)
    passages += [p for p in dict.fromkeys(distractors) if p not in own]
    queries = [ex.query for ex in dev]
    q_emb = encode(encoder, queries, show_progress=False)
    p_emb = encode(encoder, passages, show_progress=False)
    sims = q_emb @ p_emb.T
    depth = min(depth, len(passages))
    candidates = np.argsort(-sims, axis=1, kind="stable")[:, :depth]
    start = _ndcg(np.tile(np.arange(depth), (len(queries), 1)), candidates, relevant)
    flat_q = [q for q in queries for _ in range(depth)]
    flat_p = [passages[j] for row in candidates for j in row]
    out: dict[str, Any] = {"dev_queries": len(queries), "dev_passages": len(set(relevant)),
                           "distractors": len(passages) - len(set(relevant)), "rerank_depth": depth}
    if isinstance(teacher, FusionTeacher):
        cosine, lexical = (c.reshape(len(queries), depth) for c in teacher.components(flat_q, flat_p))
        per_weight = {w: _ndcg(np.argsort(-(w * cosine + (1 - w) * lexical), axis=1, kind="stable"), candidates,
                               relevant) for w in FUSION_GRID}
        halves = np.arange(len(queries)) % 2
        crossfit = np.zeros(len(queries))
        for h in (0, 1):  # the weight best on one half, scored on the other
            best = max(FUSION_GRID, key=lambda w: (per_weight[w][halves != h].mean(), -abs(w - 0.5)))
            crossfit[halves == h] = per_weight[best][halves == h]
        teacher.weight = max(FUSION_GRID, key=lambda w: (per_weight[w].mean(), -abs(w - 0.5)))
        scored = crossfit
        out["fusion_weight"] = teacher.weight
    else:
        scores = teacher.score(flat_q, flat_p).reshape(len(queries), depth)
        scored = _ndcg(np.argsort(-scores, axis=1, kind="stable"), candidates, relevant)
    out |= {"ndcg@10_start": float(start.mean()), "ndcg@10_teacher": float(scored.mean()),
            "used": bool(scored.mean() > start.mean())}
    return out


def teach(teacher: Teacher, examples: Sequence[TrainPair], encoder, *, false_negative_margin: float | None,
          scale: float, seed: int) -> tuple[list[TrainPair], dict[str, Any]]:
    """Score every triplet of ``examples``: drop its negative when the teacher scores it within
    ``false_negative_margin`` of the positive (or above), else give it the margin, rescaled so its
    spread matches that of ``scale`` × the starting model's cosine margins (one constant, estimated
    on at most :data:`CALIBRATION_TRIPLETS` seeded triplets). Pairs without a negative pass as they are."""
    at = [i for i, ex in enumerate(examples) if ex.negative is not None]
    queries = [examples[i].query for i in at]
    pos = teacher.score(queries, [examples[i].positive for i in at])
    neg = teacher.score(queries, [examples[i].negative for i in at])
    raw = pos - neg
    false_negative = (np.zeros(len(at), dtype=bool) if false_negative_margin is None
                      else neg >= pos - false_negative_margin)
    kept = [k for k in range(len(at)) if not false_negative[k]]
    factor = _calibration(encoder, [examples[at[k]] for k in kept], raw[kept], scale=scale, seed=seed)
    out = list(examples)
    for k, i in enumerate(at):
        if false_negative[k]:
            out[i] = replace(examples[i], negative=None, negative_doc_id=None, margin=None)
        else:
            out[i] = replace(examples[i], margin=float(raw[k] * factor))
    stats = {"triplets_scored": len(at), "false_negatives_dropped": int(false_negative.sum()),
             "margin_scale": factor, "teacher_margin_mean": float(raw[kept].mean()) if kept else None,
             "examples_of_dropped": [{"query": examples[at[k]].query, "negative_doc_id": examples[at[k]].negative_doc_id,
                                      "positive": float(pos[k]), "negative": float(neg[k])}
                                     for k in np.flatnonzero(false_negative)[:3]]}
    return out, stats


def _calibration(encoder, triplets: Sequence[TrainPair], raw: np.ndarray, *, scale: float, seed: int) -> float:
    """The constant that maps the teacher's margins to the spread of the student's (``scale`` × cosine)."""
    if len(triplets) < 2 or float(np.std(raw)) == 0.0:
        return 1.0
    pick = sorted(random.Random(seed).sample(range(len(triplets)), min(CALIBRATION_TRIPLETS, len(triplets))))
    q = encode(encoder, [triplets[i].query for i in pick], show_progress=False)
    p = encode(encoder, [triplets[i].positive for i in pick], show_progress=False)
    n = encode(encoder, [triplets[i].negative for i in pick], show_progress=False)
    student = scale * ((q * p).sum(axis=1) - (q * n).sum(axis=1))
    spread = float(np.std(raw[pick]))
    return float(np.std(student)) / spread if spread > 0 and float(np.std(student)) > 0 else 1.0
