"""Loading the packaged encoder and embedding text (tasks/embedding.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from refinery.tasks.embedding import BASE_MODEL_PATH, encode, load_encoder


def test_encode_returns_unit_float32_rows(encoder, bbc_articles):
    texts = [headline for headline, _ in bbc_articles[:3]]
    emb = encode(encoder, texts, show_progress=False)
    assert emb.dtype == np.float32 and emb.shape == (3, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # The same text embeds the same way whatever batch it is in.
    assert np.allclose(encode(encoder, texts[:1], show_progress=False)[0], emb[0], atol=1e-5)
    assert encode(encoder, [], show_progress=False).shape == (0, 384)


def test_loading_is_offline_and_token_limit_can_be_overridden():
    assert (BASE_MODEL_PATH / "modules.json").is_file()
    model = load_encoder(BASE_MODEL_PATH, max_seq_length=32)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert model.max_seq_length == 32
    long_text = "word " * 500
    short = encode(model, [long_text, "word " * 40], show_progress=False)
    # Truncated at 32 tokens, both texts look the same to the model.
    assert np.allclose(short[0], short[1], atol=1e-5)


def test_all_cores_uses_every_core_and_restores_the_worker_setting():
    import torch

    from refinery.tasks.embedding import all_cores

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as on a Dask worker
    try:
        with all_cores() as n:
            assert n == torch.get_num_threads() == (os.cpu_count() or 1)
        assert torch.get_num_threads() == 1
        with pytest.raises(RuntimeError), all_cores():
            raise RuntimeError("task failed")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
