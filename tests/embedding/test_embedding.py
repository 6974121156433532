"""Loading the packaged encoder and embedding text (tasks/embedding.py)."""

from __future__ import annotations

import os
import subprocess
import sys

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


# After load_encoder, in a process started without HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE (tests/conftest.py
# sets them for the test process, so this needs a process of its own), a request to the hub fails as
# offline instead of being sent: HF_ENDPOINT points at a closed port, so a request that was sent would
# fail to connect instead.
OFFLINE_PROBE = """
from huggingface_hub.errors import OfflineModeIsEnabled
from refinery.tasks.embedding import load_encoder
load_encoder()
import huggingface_hub
try:
    huggingface_hub.model_info("sentence-transformers/all-MiniLM-L6-v2")
    print("answered")
except OfflineModeIsEnabled:
    print("offline")
except Exception as error:
    print(type(error).__name__)
"""


@pytest.mark.slow  # a fresh Python that imports torch and loads the model: ~20 s on 2 busy cores
def test_loading_turns_the_hub_off_for_the_process():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    probe = subprocess.run([sys.executable, "-c", OFFLINE_PROBE], env=env, capture_output=True, text=True,
                           timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split()[-1] == "offline"


def test_token_limit_can_be_overridden():
    assert (BASE_MODEL_PATH / "modules.json").is_file()
    model = load_encoder(BASE_MODEL_PATH, max_seq_length=32)
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
