"""The ONNX Runtime encoder backends (tasks/onnx_export.py, tasks/onnx_encoder.py, evaluate.encoder).

The export is made from the packaged model with the network cut off; one export of the base
model (fp32 and int8) is shared by the tests that only read it.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading

import numpy as np
import pytest

from refinery.tasks import onnx_encoder, onnx_export
from refinery.tasks.embedding import BASE_MODEL_PATH, all_cores, encode, load_encoder
from refinery.tasks.embedding_tasks import cached_encoder
from refinery.tasks.onnx_encoder import OnnxEncoder

pytestmark = pytest.mark.slow

# Token limit of these tests: long enough that every body is truncated, short enough to be cheap.
SEQ = 128
# fp32 runs the same arithmetic as torch (measured cosine 1.0000 on all 2,092 BBC bodies);
# dynamic int8 rounds the MatMul inputs of layers 2-6: 0.990 at worst on those bodies (bench/encode.py).
MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.98}


class NetworkUsed(AssertionError):
    pass


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (a download would need one)."""

    def refuse(*args, **kwargs):
        raise NetworkUsed("the encoder tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def texts(bbc_articles):
    return [body for _, body in bbc_articles[:6]] + [headline for headline, _ in bbc_articles[:6]]


def entries(cache) -> list[str]:
    root = cache / onnx_export.CACHE_SUBDIR
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_embeddings_agree_with_torch_offline(backend, texts, shared_cache, no_network):
    torch_model = load_encoder(max_seq_length=SEQ)
    onnx_model = load_encoder(max_seq_length=SEQ, backend=backend, cache_dir=shared_cache)
    assert isinstance(onnx_model, OnnxEncoder) and onnx_model.max_seq_length == SEQ
    ref = encode(torch_model, texts, show_progress=False)
    got = encode(onnx_model, texts, show_progress=False)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.sum(got * ref, axis=1).min() > MIN_COSINE[backend]
    # What retrieval sees: every headline finds the same body as with torch.
    bodies, headlines = slice(0, 6), slice(6, 12)
    assert (np.argmax(got[headlines] @ got[bodies].T, 1) == np.argmax(ref[headlines] @ ref[bodies].T, 1)).all()
    # A text embeds alike in any batch (padding is masked in the graph). int8 only nearly: its
    # activations are quantized with one scale per batch, so the batch's other texts move it a little.
    alone = encode(onnx_model, texts[6:7], show_progress=False)[0]
    if backend == "onnx":
        assert np.allclose(alone, got[6], atol=1e-4)
    else:
        assert float(alone @ got[6]) > MIN_COSINE[backend]
    assert encode(onnx_model, [], show_progress=False).shape == (0, 384)


def test_the_export_is_cached_and_reused(shared_cache, monkeypatch, texts):
    first = load_encoder(backend="onnx-int8", cache_dir=shared_cache)
    before = {p: p.stat().st_mtime_ns for p in (shared_cache / "onnx").rglob("*")}

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this model")

    monkeypatch.setattr(onnx_export, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_export, "_quantize_int8", no_export)
    again = load_encoder(backend="onnx-int8", cache_dir=shared_cache)
    assert again.onnx_file == first.onnx_file
    assert {p: p.stat().st_mtime_ns for p in (shared_cache / "onnx").rglob("*")} == before
    # int8 is made from the fp32 export: one entry per backend, named by backend and content
    assert entries(shared_cache) == sorted(onnx_export.cache_key(b, onnx_export.model_fingerprint(BASE_MODEL_PATH))
                                           for b in ("onnx", "onnx-int8"))


def test_a_changed_model_folder_gets_its_own_export(tmp_path, shared_cache, texts, no_network):
    from safetensors.numpy import load_file, save_file

    model_dir = tmp_path / "retrained"
    shutil.copytree(BASE_MODEL_PATH, model_dir)
    weights = load_file(model_dir / "model.safetensors")
    weights["encoder.layer.0.attention.output.dense.weight"] *= 1.5  # as if training had moved it
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache)  # the base model's exports are already there

    retrained = load_encoder(model_dir, max_seq_length=SEQ, backend="onnx", cache_dir=cache)
    assert len(entries(cache)) == len(entries(shared_cache)) + 1
    assert retrained.onnx_file.parent.name not in entries(shared_cache)
    got = encode(retrained, texts, show_progress=False)
    # the export computes the changed model, not the base one it was copied from
    ref = encode(load_encoder(model_dir, max_seq_length=SEQ), texts, show_progress=False)
    base = encode(load_encoder(max_seq_length=SEQ), texts, show_progress=False)
    assert np.sum(got * ref, axis=1).min() > MIN_COSINE["onnx"]
    assert np.sum(got * base, axis=1).min() < MIN_COSINE["onnx"]


def test_two_loaders_at_once_export_once(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    calls = []
    real_export = onnx_export._export_fp32

    def counted(*args, **kwargs):
        calls.append(threading.get_ident())
        return real_export(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "_export_fp32", counted)
    found, errors = [], []

    def load():
        try:
            found.append(onnx_export.onnx_model_file(BASE_MODEL_PATH, backend="onnx", cache_dir=cache))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and len(calls) == 1
    assert len(set(found)) == 1 and found[0].is_file()
    # nothing half-written is left beside the entry
    assert [p.name for p in (cache / "onnx").iterdir() if p.is_dir()] == [found[0].parent.name]


def test_sessions_use_the_thread_count_torch_uses(shared_cache, monkeypatch, texts):
    import torch

    created = []
    real_session = onnx_encoder._new_session

    def recorded(path, threads):
        created.append(threads)
        return real_session(path, threads)

    monkeypatch.setattr(onnx_encoder, "_new_session", recorded)
    model = load_encoder(max_seq_length=SEQ, backend="onnx", cache_dir=shared_cache)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as on a Dask worker
    try:
        encode(model, texts[:2], show_progress=False)
        with all_cores() as cores:
            encode(model, texts[:2], show_progress=False)
        encode(model, texts[:2], show_progress=False)
    finally:
        torch.set_num_threads(before)
    # one session per thread count, kept: back at one thread the first session is used again
    assert created == ([1, cores] if cores > 1 else [1])


def test_cached_encoder_passes_backend_and_cache_dir(shared_cache):
    model = cached_encoder(str(BASE_MODEL_PATH), SEQ, "onnx", str(shared_cache))
    assert isinstance(model, OnnxEncoder) and model.max_seq_length == SEQ
    assert model.onnx_file.is_relative_to(shared_cache)
    assert cached_encoder(str(BASE_MODEL_PATH), SEQ, "onnx", str(shared_cache)) is model


def test_onnx_backends_need_a_cache_dir_and_unknown_backends_are_refused():
    with pytest.raises(ValueError, match="cache_dir"):
        load_encoder(backend="onnx")
    with pytest.raises(ValueError, match="unknown encoder backend 'tensorrt'"):
        load_encoder(backend="tensorrt")  # type: ignore[arg-type]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
