"""The dev split of the training pairs: which passages are held out, and how a model scores on them.

The unit is the passage (``TrainPair.passage_key``, the doc id), as in the evaluation split of
:mod:`tasks.synthesize.split` and with its seeded hash, so every pair of a dev passage is held
out and no training pair keeps a hard negative drawn from one: the dev documents are never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from refinery.tasks.synthesize.split import heldout_passages
from refinery.tasks.train.batches import TrainPair

# The dev score: each dev query ranks its own passage among every dev passage.
DEV_TOP_K = 10


@dataclass(frozen=True)
class DevSplit:
    train: list[TrainPair]
    dev: list[TrainPair]
    skipped: str | None = None  # why there is no dev split, when there is none


def split_dev(examples: Sequence[TrainPair], fraction: float | None, *, min_pairs: int, seed: int) -> DevSplit:
    """Hold ``fraction`` of the passages out as the dev split (at least one passage, never all).

    A split with fewer than ``min_pairs`` pairs is not made (``skipped`` says why). A training
    pair whose hard negative is a dev document loses that negative (it stays a pair).
    """
    if fraction is None:
        return DevSplit(list(examples), [], "train.dev_fraction is null")
    held = heldout_passages([ex.passage_key for ex in examples], fraction, seed=seed)
    dev = [ex for ex in examples if ex.passage_key in held]
    if len(dev) < min_pairs:
        return DevSplit(list(examples), [], f"{len(dev)} dev pairs of {len(held)} passages "
                                            f"(train.dev_fraction {fraction}) < train.dev_min_pairs {min_pairs}")
    train = [ex if ex.negative is None or _negative_key(ex) not in held
             else replace(ex, negative=None, negative_doc_id=None, margin=None)
             for ex in examples if ex.passage_key not in held]
    return DevSplit(train, dev)


def _negative_key(ex: TrainPair) -> str | None:
    return ex.negative_doc_id if ex.negative_doc_id is not None else ex.negative


def dev_scores(query_emb: np.ndarray, passage_emb: np.ndarray, passage_keys: Sequence[str], *,
               scale: float) -> dict[str, float]:
    """MRR@10, accuracy@1 and MNRL loss of dev query ``i`` ranking its passage ``i`` among all dev passages.

    Rows are unit vectors. Another pair's passage of the same document is neither a competitor
    nor counted (it is the same document). Ties with the positive count against it.
    """
    sims = query_emb @ passage_emb.T
    keys = np.asarray(passage_keys, dtype=object)
    same_doc = keys[:, None] == keys[None, :]
    np.fill_diagonal(same_doc, False)
    own = np.diag(sims)
    competitors = np.where(same_doc, -np.inf, sims)
    np.fill_diagonal(competitors, -np.inf)
    rank = 1 + (competitors >= own[:, None]).sum(axis=1)
    logits = scale * np.where(same_doc, -np.inf, sims).astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return {
        f"mrr@{DEV_TOP_K}": float(np.where(rank <= DEV_TOP_K, 1.0 / rank, 0.0).mean()),
        "accuracy@1": float((rank == 1).mean()),
        "loss": float((log_norm - scale * own.astype(np.float64)).mean()),
    }


def better(a: dict[str, float], b: dict[str, float] | None) -> bool:
    """Whether dev score ``a`` beats ``b``: higher MRR@10, then lower loss (a tie keeps ``b``)."""
    if b is None:
        return True
    key = f"mrr@{DEV_TOP_K}"
    return (a[key], -a["loss"]) > (b[key], -b["loss"])
