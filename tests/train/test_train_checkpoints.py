"""The training loop of tasks/train/finetune.py: it learns, scores its dev split, keeps the best
step, and a training SIGKILLed mid-way resumes from its checkpoint to the uninterrupted result.

Real training on CPU, kept small: a one-layer cut of the packaged model, batches of 4 at 32 tokens,
a handful of steps, one thread (the same in the killed subprocess, so both sum in the same order).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict

import pytest
import torch

from refinery.tasks.embedding import encode, load_encoder
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.checkpoint import CHECKPOINT_FILE, fingerprint, load_checkpoint, save_checkpoint
from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.dev import dev_scores, split_dev
from refinery.tasks.train.finetune import fine_tune, plan_training, read_training_stats
from tests.train.training_data import article_pairs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
CFG = TrainConfig(batch_size=4, mini_batch_size=2, max_seq_length=32, epochs=2, learning_rate=1e-4,
                  warmup_ratio=0.0, dev_fraction=0.25, dev_min_pairs=4, eval_every=2, checkpoint_every=2)
KILL_AT = 5  # the killed run dies after step 5, its last checkpoint is step 4's


@pytest.fixture(scope="module")
def reference(tiny_base, pairs, tmp_path_factory):
    """An uninterrupted training (with checkpoints along the way) and its stats."""
    root = tmp_path_factory.mktemp("reference")
    out = fine_tune(pairs, base_path=tiny_base, out_dir=root / "model", cfg=CFG, checkpoint_dir=root / "checkpoint",
                    show_progress=False)
    return {"root": root, "model": out, "stats": read_training_stats(out)}


def _weights(path):
    return {k: v.clone() for k, v in load_encoder(path).state_dict().items()}


def test_loss_falls_and_the_dev_split_is_scored_as_training_goes(reference, pairs):
    stats = reference["stats"]
    plan = plan_training(pairs, CFG)
    assert stats["steps"] == len(plan.batches) == len(stats["losses"]) >= 8
    assert stats["train_pairs"] + stats["dev_pairs"] == len(pairs) and stats["dev_pairs"] == len(plan.dev)
    # the second pass over the same pairs costs less than the first, and the held-out pairs gain too
    per_epoch = len(plan.batches) // 2
    losses = stats["losses"]
    assert sum(losses[per_epoch:]) / len(losses[per_epoch:]) < sum(losses[:per_epoch]) / per_epoch
    curve = stats["dev"]
    assert [p["step"] for p in curve] == [0, *range(2, stats["steps"], 2), stats["steps"]]
    assert curve[-1]["step"] == stats["steps"]
    assert curve[-1]["loss"] < curve[0]["loss"]
    # the checkpoint is gone once the model is saved
    assert not (reference["root"] / "checkpoint").exists()


def test_the_saved_model_is_the_best_dev_step(tiny_base, pairs, tmp_path):
    """Trained on mismatched pairs, the model gets worse on the (correct) dev pairs step by step:
    the saved model is the first scored step, not the last."""
    split = split_dev(pairs, CFG.dev_fraction, min_pairs=CFG.dev_min_pairs, seed=CFG.seed)
    dev_docs = {ex.doc_id for ex in split.dev}
    train = [ex for ex in pairs if ex.doc_id not in dev_docs]
    # each training query gets the passage of the next training document
    wrong = [TrainPair(ex.query, train[(i + 2) % len(train)].positive, doc_id=ex.doc_id) for i, ex in enumerate(train)]
    cfg = CFG.model_copy(update={"epochs": 1, "learning_rate": 5e-4, "eval_every": 1, "checkpoint_every": None})
    out = fine_tune(wrong + split.dev, base_path=tiny_base, out_dir=tmp_path / "model", cfg=cfg, show_progress=False)
    stats = read_training_stats(out)
    assert stats["dev_pairs"] == len(split.dev)
    scored = [p for p in stats["dev"] if p["step"] > 0]
    assert scored[-1]["loss"] > scored[0]["loss"]  # training made it worse
    best = max(scored, key=lambda p: (p["mrr@10"], -p["loss"], -p["step"]))
    assert stats["saved_step"] == best["step"] < stats["steps"]
    # the folder holds that step's weights: scoring it again gives that step's figures
    model = load_encoder(out, max_seq_length=cfg.max_seq_length)
    again = dev_scores(encode(model, [ex.query for ex in split.dev], show_progress=False),
                       encode(model, [ex.positive for ex in split.dev], show_progress=False),
                       [ex.doc_id for ex in split.dev], scale=cfg.scale)
    assert again == pytest.approx({k: v for k, v in best.items() if k != "step"}, abs=1e-4)
    assert again["loss"] != pytest.approx(scored[-1]["loss"], abs=1e-4)


KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    from refinery.tasks.train.batches import TrainPair
    from refinery.tasks.train.config import TrainConfig
    from refinery.tasks.train.finetune import fine_tune

    args = json.loads(sys.argv[1])
    torch.set_num_threads(1)

    def on_step(step, loss):
        if step == args["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

    fine_tune([TrainPair(**p) for p in args["pairs"]], base_path=args["base"], out_dir=args["out"],
              cfg=TrainConfig.model_validate_json(args["cfg"]), checkpoint_dir=args["checkpoint"],
              show_progress=False, on_step=on_step)
""")


def test_a_killed_training_resumes_from_its_checkpoint_to_the_uninterrupted_result(reference, tiny_base, pairs,
                                                                                    tmp_path):
    out, ckpt = tmp_path / "model", tmp_path / "checkpoint"
    args = {"pairs": [asdict(p) for p in pairs], "base": str(tiny_base), "out": str(out), "checkpoint": str(ckpt),
            "cfg": CFG.model_dump_json(), "kill_at": KILL_AT}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(args)], capture_output=True, text=True,
                            timeout=900)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    state = load_checkpoint(ckpt, fingerprint(pairs, CFG, tiny_base))
    assert state is not None and state["step"] == 4

    steps = []
    fine_tune(pairs, base_path=tiny_base, out_dir=out, cfg=CFG, checkpoint_dir=ckpt, show_progress=False,
              on_step=lambda step, loss: steps.append(step))
    stats, ref = read_training_stats(out), reference["stats"]
    assert stats["resumed_from_step"] == 4 and steps == list(range(5, ref["steps"] + 1))
    assert stats["losses"] == pytest.approx(ref["losses"], abs=1e-5)
    assert [p["step"] for p in stats["dev"]] == [p["step"] for p in ref["dev"]]
    assert [p["loss"] for p in stats["dev"]] == pytest.approx([p["loss"] for p in ref["dev"]], abs=1e-5)
    assert stats["saved_step"] == ref["saved_step"]
    resumed, uninterrupted = _weights(out), _weights(reference["model"])
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-5, rtol=1e-4), name
    assert not ckpt.exists()

    # a second call finds this training's model in place and trains nothing
    again = []
    fine_tune(pairs, base_path=tiny_base, out_dir=out, cfg=CFG, checkpoint_dir=ckpt, show_progress=False,
              on_step=lambda step, loss: again.append(step))
    assert again == [] and read_training_stats(out) == stats


def test_hard_negatives_train_under_gradcache(tiny_base, pairs, tmp_path):
    """Triplets with mini-batches (CachedMultipleNegativesRankingLoss): loss and gradient are those
    of plain MNRL over the three columns, and a training over them runs and keeps its negatives."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    columns = [[p.query for p in pairs[:6]], [p.positive for p in pairs[:6]], [p.positive for p in pairs[6:12]]]
    results = []
    for cached in (False, True):
        model = load_encoder(tiny_base, max_seq_length=32)
        model.eval()
        loss_fn = (CachedMultipleNegativesRankingLoss(model, mini_batch_size=2, show_progress_bar=False)
                   if cached else MultipleNegativesRankingLoss(model))
        loss = loss_fn([model.preprocess(c) for c in columns], torch.empty(0))
        loss.backward()
        results.append((float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters()
                                                         if p.grad is not None])))
    (plain_loss, plain_grad), (cached_loss, cached_grad) = results
    assert abs(plain_loss - cached_loss) < 1e-5
    assert torch.allclose(plain_grad, cached_grad, atol=1e-5, rtol=1e-3)

    # each article's pair with the next article's body as its hard negative
    triplets = [TrainPair(p.query, p.positive, pairs[(i + 2) % len(pairs)].positive, doc_id=p.doc_id,
                          negative_doc_id=pairs[(i + 2) % len(pairs)].doc_id) for i, p in enumerate(pairs)]
    cfg = CFG.model_copy(update={"epochs": 1, "checkpoint_every": None})
    stats = read_training_stats(fine_tune(triplets, base_path=tiny_base, out_dir=tmp_path / "model", cfg=cfg,
                                          show_progress=False))
    assert stats["triplets"] > 0 and stats["steps"] >= 2


def test_a_checkpoint_of_other_inputs_is_not_resumed(pairs, tmp_path):
    save_checkpoint(tmp_path, {"fingerprint": fingerprint(pairs, CFG, "base"), "step": 3})
    assert load_checkpoint(tmp_path, fingerprint(pairs, CFG, "base"))["step"] == 3
    # other pairs, other options or another base model: another training
    assert load_checkpoint(tmp_path, fingerprint(pairs[1:], CFG, "base")) is None
    assert load_checkpoint(tmp_path, fingerprint(pairs, CFG.model_copy(update={"seed": 1}), "base")) is None
    assert load_checkpoint(tmp_path, fingerprint(pairs, CFG, "other")) is None
    # how often checkpoints are written changes nothing that is computed
    assert fingerprint(pairs, CFG.model_copy(update={"checkpoint_every": 7}), "base") == fingerprint(pairs, CFG, "base")
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"torn")
    assert load_checkpoint(tmp_path, fingerprint(pairs, CFG, "base")) is None


def test_the_train_task_trains_on_kept_training_pairs_of_the_shard(tiny_base, bbc_articles, tmp_path):
    """What the train stage runs: pairs and hard negatives read from the synthesize shard (held-out
    and filtered-out pairs left out), the dev split drawn by doc id, and the stats the stage keeps."""
    import pyarrow as pa

    from refinery.storage import Catalog, write_shard
    from refinery.tasks.train.shard_tasks import train_model
    from refinery.tasks.train.summary import DEV_TASK, LOSS_TASK, training_metric_rows

    pairs = article_pairs(bbc_articles)
    n_docs = len(bbc_articles)
    rows = [{"doc_id": p.doc_id, "query": p.query, "positive": p.positive,
             "kept": i != 5, "split": "heldout" if p.doc_id == "doc0" else "train",
             "negative_doc_id": f"doc{(int(p.doc_id[3:]) + 1) % n_docs}"} for i, p in enumerate(pairs)]
    pairs_path = write_shard(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    corpus = write_shard(pa.table({"doc_id": [f"doc{i}" for i in range(n_docs)],
                                   "text": [body for _, body in bbc_articles]}), tmp_path / "corpus.parquet")
    # the rest of a large corpus, no negative among it: the task reads the negatives' texts only (this
    # shard has no text column to read), never the whole corpus into the worker
    rest = write_shard(pa.table({"doc_id": [f"rest{i}" for i in range(1000)]}), tmp_path / "rest.parquet")
    # the task trains on every core (all_cores), which on a busy machine is slower than one: few steps
    cfg = CFG.model_copy(update={"epochs": 1, "batch_size": 8, "checkpoint_every": None})
    stats = train_model(pairs_path, [str(corpus), str(rest)], str(tiny_base), tmp_path / "model", cfg,
                        tmp_path / "checkpoint")
    used = len(pairs) - 2 - 1  # doc0's two pairs are held out for evaluation, pair 5 was filtered out
    assert stats["examples"] == stats["with_negatives"] == used
    assert stats["train_pairs"] + stats["dev_pairs"] == used and stats["dev_pairs"] >= CFG.dev_min_pairs
    assert 0 < stats["triplets"] <= stats["train_pairs"]
    assert len(stats["losses"]) == stats["steps"] and stats["dev"][0]["step"] == 0
    assert load_encoder(stats["model_path"]) is not None
    # the dev split is written beside the model (what the hybrid's weight is fitted on): held out of
    # training, whole passages, none of them held out for evaluation
    from refinery.storage import read_shard
    dev = read_shard(stats["dev_pairs_path"]).to_pylist()
    assert len(dev) == stats["dev_pairs"]
    by_doc = {}
    for p in pairs:
        by_doc.setdefault(p.doc_id, set()).add(p.query)
    dev_docs = {r["doc_id"] for r in dev}
    assert "doc0" not in dev_docs and len(dev_docs) == stats["dev_passages"]
    assert {r["query"] for r in dev} == {q for d in dev_docs for q in by_doc[d]} - {pairs[5].query}

    # the rows the stage puts in `metrics`, read back from a catalog
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    catalog.put_metrics("run", "train", training_metric_rows(stats))
    metrics = catalog.query("SELECT * FROM metrics").to_pylist()
    got = {(r["model"], r["task"], r["metric"]): r["value"] for r in metrics}
    assert got[("base", DEV_TASK, "mrr@10")] == stats["dev"][0]["mrr@10"]
    assert got[("tuned", DEV_TASK, "loss")] == stats["saved_dev"]["loss"]
    assert got[("tuned", DEV_TASK, "step")] == stats["saved_step"]
    assert got[("tuned", LOSS_TASK, "last")] == stats["losses"][-1]
    assert {(r["run_id"], r["stage"]) for r in metrics} == {("run", "train")}
