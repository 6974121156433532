"""MNRL fine-tuning (tasks/train/finetune.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from refinery.tasks.embedding import BASE_MODEL_PATH, encode, load_encoder
from refinery.tasks.synthesize.generators import InverseClozeGenerator
from refinery.tasks.train.config import TrainConfig
from refinery.tasks.train.finetune import TRAINING_STATS_FILE, fine_tune, make_batches


def test_batches_never_repeat_a_text_and_keep_columns_apart():
    examples = [(f"q{i}", f"p{i % 5}") for i in range(20)] + [("qa", "pa", "na"), ("qb", "pb", "nb")]
    batches = make_batches(examples, 4, seed=0)
    for batch in batches:
        texts = [t for ex in batch for t in ex]
        assert len(texts) == len(set(texts))
        assert len({len(ex) for ex in batch}) == 1
        assert 2 <= len(batch) <= 4
    # Only 5 distinct passages: at most 5 pairs fit in a batch, nothing is dropped here.
    assert sorted(ex for b in batches for ex in b) == sorted(examples)
    assert make_batches(examples, 4, seed=0) == batches


def test_train_config_validates():
    with pytest.raises(ValidationError):
        TrainConfig(batch_size=1)
    with pytest.raises(ValidationError):
        TrainConfig(report_to="wandb")


@pytest.mark.slow
def test_one_step_fine_tune_saves_a_changed_loadable_model(bbc_articles, encoder, tmp_path):
    bodies = [body for _, body in bbc_articles]
    pairs = [
        (c.query, c.positive)
        for cands in InverseClozeGenerator(seed=0, candidates_per_passage=2).generate(bodies[:8])
        for c in cands
    ]
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
