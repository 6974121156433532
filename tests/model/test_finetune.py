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
