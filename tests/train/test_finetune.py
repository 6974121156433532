"""MNRL fine-tuning (tasks/train/): batching, the dev split and its score, one real step on the packaged model.

The training loop itself (loss falling, best checkpoint, resume after a kill) is in
test_train_checkpoints.py, on a one-layer cut of the packaged model.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from refinery.tasks.embedding import BASE_MODEL_PATH, encode, load_encoder
from refinery.tasks.train.batches import TrainPair, as_train_pairs
from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.dev import dev_scores, split_dev
from refinery.tasks.train.finetune import TRAINING_STATS_FILE, fine_tune, make_batches, plan_training
from tests.train.training_data import article_pairs


def _batch_conflicts(batch: list[TrainPair]) -> list[str]:
    queries = Counter(ex.query for ex in batch)
    texts = Counter(t for ex in batch for t in ex.columns()[1:])
    docs = Counter(d for ex in batch for d in (ex.passage_key, ex.negative_doc_id) if d is not None)
    return [k for c in (queries, texts, docs) for k, n in c.items() if n > 1]


def test_batches_never_repeat_a_text_and_keep_columns_apart():
    examples = as_train_pairs([(f"q{i}", f"p{i % 5}") for i in range(20)] + [("qa", "pa", "na"), ("qb", "pb", "nb")])
    batches = make_batches(examples, 4, seed=0)
    for batch in batches:
        assert not _batch_conflicts(batch)
        assert len({ex.negative is None for ex in batch}) == 1
        assert 2 <= len(batch) <= 4
    # Only 5 distinct passages: at most 5 pairs fit in a batch, nothing is dropped here.
    key = lambda ex: ex.columns()  # noqa: E731
    assert sorted(map(key, (ex for b in batches for ex in b))) == sorted(map(key, examples))
    assert make_batches(examples, 4, seed=0) == batches


def test_batches_never_pair_two_examples_of_one_document_or_one_query():
    """Two pairs of one document have different positive texts, yet each would be the other's
    in-batch negative: the document decides. So does an identical query, and a hard negative
    that is another example's document."""
    examples = [TrainPair(f"q{i}", f"passage {i}", doc_id=f"d{i % 6}") for i in range(18)]  # 3 pairs a document
    examples += [TrainPair("same query", f"other passage {i}", doc_id=f"e{i}") for i in range(3)]
    examples += [TrainPair(f"t{i}", f"triplet passage {i}", f"negative {i}", doc_id=f"t{i}",
                           negative_doc_id=f"t{(i + 1) % 4}") for i in range(4)]
    batches = make_batches(examples, 8, seed=3)
    for batch in batches:
        assert not _batch_conflicts(batch), batch
    pairs_seen = Counter(ex.query for b in batches for ex in b if ex.negative is None)
    # every pair fits somewhere (6 documents, batches of up to 8); the query shared 3 times lands in 3 batches
    assert sum(pairs_seen.values()) == 21 and pairs_seen["same query"] == 3
    # t0..t3 each clash with the next one's document: at most two of them fit one batch
    triplet_batches = [b for b in batches if b[0].negative is not None]
    assert triplet_batches and all(len(b) == 2 for b in triplet_batches)


def test_dev_split_holds_out_whole_documents_and_their_negatives():
    examples = [TrainPair(f"q{i}", f"p{i}", f"n{i}", doc_id=f"d{i % 10}", negative_doc_id=f"d{(i + 3) % 10}")
                for i in range(30)]
    split = split_dev(examples, 0.2, min_pairs=1, seed=7)
    dev_docs = {ex.doc_id for ex in split.dev}
    assert len(dev_docs) == 2 and len(split.dev) == 6 and len(split.train) == 24
    assert not dev_docs & {ex.doc_id for ex in split.train}
    # a training pair whose negative was a dev document keeps its pair, not the negative
    for ex in split.train:
        assert ex.negative_doc_id not in dev_docs
    stripped = [ex for ex in split.train if ex.negative is None]
    assert stripped and all(f"d{(int(ex.query[1:]) + 3) % 10}" in dev_docs for ex in stripped)
    # seeded, and a function of the documents, not of the order
    assert split_dev(examples[::-1], 0.2, min_pairs=1, seed=7).dev == split.dev[::-1]
    # too few dev pairs: no dev split at all, and the stats say why
    small = split_dev(examples, 0.2, min_pairs=7, seed=7)
    assert small.dev == [] and small.train == examples and "train.dev_min_pairs 7" in small.skipped
    assert split_dev(examples, None, min_pairs=1, seed=7).dev == []


def test_plan_trains_on_no_dev_document(bbc_articles):
    pairs = article_pairs(bbc_articles)
    cfg = TrainConfig(batch_size=4, epochs=2, dev_fraction=0.25, dev_min_pairs=2)
    plan = plan_training(pairs, cfg)
    dev_docs = {ex.doc_id for ex in plan.dev}
    assert len(dev_docs) == 3 and len(plan.dev) == 6
    trained = [ex for b in plan.batches for ex in b]
    assert not dev_docs & {ex.doc_id for ex in trained}
    dev_texts = {t for ex in plan.dev for t in ex.columns()}
    assert not dev_texts & {t for ex in trained for t in ex.columns()}
    # two epochs over the training pairs (each pair at most once an epoch), each in its own seeded order
    assert set(trained) <= set(plan.train) and max(Counter(trained).values()) <= 2
    assert len(trained) > len(plan.train)
    assert plan_training(pairs, cfg).batches == plan.batches
    assert plan_training(pairs, cfg.model_copy(update={"seed": 1})).batches != plan.batches


def test_plan_trains_on_a_negative_exactly_where_a_pair_has_one():
    """One switch (synthesize.hard_negatives) decides whether pairs get negatives; training uses what they have."""
    pairs = [TrainPair(f"q{i}", f"p{i}", f"n{i}" if i < 3 else None, doc_id=f"d{i}",
                       negative_doc_id=f"x{i}" if i < 3 else None) for i in range(8)]
    plan = plan_training(pairs, TrainConfig(batch_size=4, dev_fraction=None))
    trained = [ex for b in plan.batches for ex in b]
    assert set(trained) <= set(pairs)  # each as given: its negative kept where it has one, none added
    assert any(ex.negative is not None for ex in trained) and any(ex.negative is None for ex in trained)


def test_dev_scores_rank_each_query_against_every_dev_passage():
    e = np.eye(3, dtype=np.float32)
    passages = e
    # q0 is p0; q1 is nearer p0 than p1 (rank 2); q2 is nearest p0, then p1, then p2 (rank 3)
    queries = np.array([[1, 0, 0], [0.8, 0.6, 0], [0.8, 0.5, 0.33]], dtype=np.float32)
    scores = dev_scores(queries, passages, ["a", "b", "c"], scale=1.0)
    assert scores["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert scores["accuracy@1"] == pytest.approx(1 / 3)
    sims = queries @ passages.T
    expected = np.mean([np.log(np.exp(sims[i]).sum()) - sims[i, i] for i in range(3)])
    assert scores["loss"] == pytest.approx(expected, rel=1e-5)
    # another pair's passage of the same document is no competitor: q1 now ranks its own first
    same_doc = dev_scores(queries, passages, ["a", "a", "c"], scale=1.0)
    assert same_doc["accuracy@1"] == pytest.approx(2 / 3)


def test_train_config_validates():
    with pytest.raises(ValidationError):
        TrainConfig(batch_size=1)
    with pytest.raises(ValidationError):
        TrainConfig(report_to="wandb")
    for bad in ({"dev_fraction": 0}, {"dev_fraction": 1}, {"eval_every": 0}, {"checkpoint_every": 0}):
        with pytest.raises(ValidationError):
            TrainConfig(**bad)
    assert TrainConfig(dev_fraction=None, checkpoint_every=None).dev_fraction is None


@pytest.mark.slow
def test_one_step_fine_tune_saves_a_changed_loadable_model(bbc_articles, encoder, tmp_path):
    pairs = [ex.columns() for ex in article_pairs(bbc_articles[:8])]  # plain tuples: no doc ids
    assert len(pairs) == 16
    out = tmp_path / "tuned"
    out.mkdir()
    (out / "stale.txt").write_text("left by an earlier run")
    cfg = TrainConfig(batch_size=16, max_seq_length=64, learning_rate=1e-4, warmup_ratio=0.0)
    assert fine_tune(pairs, base_path=BASE_MODEL_PATH, out_dir=out, cfg=cfg, show_progress=False) == out

    # Replaced as a whole, nothing left beside it.
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tuned"]
    stats = json.loads((out / TRAINING_STATS_FILE).read_text())
    assert stats["steps"] == 1 and stats["examples"] == 16
    # 16 pairs are too few for a dev split of train.dev_min_pairs (16): all are trained on
    assert stats["dev_pairs"] == 0 and stats["train_pairs"] == 16 and "dev_min_pairs" in stats["dev_skipped"]
    assert stats["device"] == "cpu" and len(stats["losses"]) == 1

    tuned = load_encoder(out)
    assert tuned.max_seq_length == encoder.max_seq_length
    texts = [q for q, _ in pairs[:4]]
    base_emb = encode(encoder, texts, show_progress=False)
    tuned_emb = encode(tuned, texts, show_progress=False)
    assert tuned_emb.shape == base_emb.shape
    assert np.allclose(np.linalg.norm(tuned_emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(tuned_emb, base_emb, atol=1e-4)


def test_fine_tune_rejects_too_few_pairs(tmp_path):
    with pytest.raises(ValueError):
        fine_tune([("q", "p")], out_dir=tmp_path / "m", show_progress=False)


def test_mini_batches_give_the_loss_and_gradient_of_the_whole_batch(bbc_articles):
    """GradCache (train.mini_batch_size) only bounds memory: with dropout off, one step's loss and
    gradient equal plain MultipleNegativesRankingLoss over the same batch."""
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    bodies = [body for _, body in bbc_articles][:8]
    columns = [[b[:80] for b in bodies], [b[80:400] for b in bodies]]
    results = []
    for cached in (False, True):
        model = load_encoder(BASE_MODEL_PATH, max_seq_length=48)
        model.eval()  # no dropout: both passes see the same network
        loss_fn = (CachedMultipleNegativesRankingLoss(model, mini_batch_size=3, show_progress_bar=False)
                   if cached else MultipleNegativesRankingLoss(model))
        loss = loss_fn([model.preprocess(c) for c in columns], torch.empty(0))
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((float(loss.detach()), grads))
    (plain_loss, plain_grad), (cached_loss, cached_grad) = results
    assert abs(plain_loss - cached_loss) < 1e-5
    assert torch.allclose(plain_grad, cached_grad, atol=1e-5, rtol=1e-3)
    assert TrainConfig().mini_batch_size < TrainConfig().batch_size  # the default bounds memory
