"""Export a sentence-transformers model folder to ONNX (fp32, or dynamically quantized int8), cached by content.

    path = onnx_model_file(model_dir, backend="onnx-int8", cache_dir=home / "cache")

The graph is traced locally from the model folder with ``torch.onnx`` (nothing is downloaded)
and holds the whole sentence-transformers pipeline after the tokenizer (transformer, pooling,
normalisation), so ONNX Runtime returns sentence embeddings. It is cached under
``<cache_dir>/onnx/<backend>-<fingerprint>/model.onnx``, where the fingerprint hashes every
file of the model folder: a retrained model (new weights, same path) gets a new entry and never a
stale export. An entry is built in a temporary folder and renamed into place, under a file lock,
so two Dask workers that load the same model at once export it once and never see half a file.

sentence-transformers' own ``backend="onnx"`` needs optimum-onnx, which does not support the
transformers 5 that Refinery runs; this module needs only torch, onnx and onnxruntime.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import xxhash

from refinery.storage.location import local_copy
from refinery.tasks.exceptions import OnnxExportError

OnnxBackend = Literal["onnx", "onnx-int8"]
ONNX_BACKENDS: tuple[str, ...] = ("onnx", "onnx-int8")

CACHE_SUBDIR = "onnx"
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "export.json"
# Part of every cache key: bump it when the export recipe below changes, so old entries are not reused.
EXPORT_RECIPE = "1"
OPSET_VERSION = 17
OUTPUT_NAME = "sentence_embedding"
# Tokenizer outputs the graph may take, in this order (a model without token types takes two).
TOKEN_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
# The traced graph must reproduce torch on texts of other lengths than the trace's (dynamic axes).
PROBE_TEXTS: tuple[str, ...] = (
    "Shares in the company rose after profits beat forecasts.",
    "The minister said the new rules would come into force next year, after a consultation with "
    "businesses, unions and consumer groups that is due to end in the spring.",
)
PROBE_MIN_COSINE = 0.999
# int8 keeps the first transformer layer's MatMuls in fp32 (1/6 of all-MiniLM-L6-v2's MatMul work).
# Measured on the BBC headline task (bench/encode.py), nDCG@10 vs torch: every MatMul int8 -0.0040;
# first layer fp32 -0.0009; last layer fp32 -0.0044; every FFN output fp32 -0.0008 (but 1/3 fp32).
# The node names are the traced module paths (``.../encoder/layer.0/...``); a model named otherwise
# is quantized whole.
FP32_LAYER_MARK = "/layer.0/"
_HASH_CHUNK = 1 << 20


def model_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """A hash of every file of a model folder (relative path and content), hex.

    Weights, tokenizer and pooling settings all change what the exported graph computes, so all
    of them are in the key; the hash is xxh3-128, ~0.1 s for the 90 MB all-MiniLM-L6-v2 folder.
    """
    root = local_copy(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder {root} does not exist")
    digest = xxhash.xxh3_128()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def cache_key(backend: OnnxBackend, fingerprint: str) -> str:
    """The name of the cache entry of a model folder (by :func:`model_fingerprint`) exported for ``backend``."""
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown ONNX backend {backend!r}; expected one of {', '.join(ONNX_BACKENDS)}")
    return f"{backend}-r{EXPORT_RECIPE}-{fingerprint[:32]}"


def onnx_model_file(model_dir: str | os.PathLike[str], *, backend: OnnxBackend,
                    cache_dir: str | os.PathLike[str]) -> Path:
    """The cached ONNX file of ``model_dir`` for ``backend``, exported first if not cached yet.

    ``onnx``: the fp32 graph. ``onnx-int8``: the same graph with the MatMul weights of every
    transformer layer but the first quantized to int8 per output channel, activations quantized at
    run time (ONNX Runtime's dynamic quantization: no calibration data). Raises :class:`OnnxExportError` when the traced graph
    does not reproduce the PyTorch model.
    """
    model_dir = local_copy(model_dir)
    return _cached_file(model_dir, backend, model_fingerprint(model_dir), Path(cache_dir) / CACHE_SUBDIR)


def _cached_file(model_dir: Path, backend: OnnxBackend, fingerprint: str, root: Path) -> Path:
    key = cache_key(backend, fingerprint)
    final = root / key
    if (final / ONNX_FILE).exists():
        return final / ONNX_FILE
    root.mkdir(parents=True, exist_ok=True)
    # int8 starts from the fp32 entry; take that (and its lock) before this one's, always in that order
    source = _cached_file(model_dir, "onnx", fingerprint, root) if backend == "onnx-int8" else None
    with _locked(root / f"{key}.lock"):
        if (final / ONNX_FILE).exists():  # another process exported it while this one waited
            return final / ONNX_FILE
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            if source is None:
                _export_fp32(model_dir, tmp / ONNX_FILE)
            else:
                _quantize_int8(source, tmp / ONNX_FILE)
            (tmp / MANIFEST_FILE).write_text(json.dumps(_manifest(model_dir, backend, fingerprint), indent=2))
            os.replace(tmp, final)  # atomic: readers see no entry or a complete one
        except OSError:
            if not (final / ONNX_FILE).exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / ONNX_FILE


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest(model_dir: Path, backend: str, fingerprint: str) -> dict[str, str]:
    import onnxruntime
    import torch

    return {"model_dir": str(Path(model_dir).resolve()), "backend": backend, "recipe": EXPORT_RECIPE,
            "fingerprint": fingerprint, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}


def _export_fp32(model_dir: Path, out: Path) -> None:
    import numpy as np
    import torch

    from refinery.tasks.embedding import encode, load_encoder

    model = load_encoder(model_dir)
    # The eager attention traces to plain MatMul/Softmax, which ONNX Runtime fuses into its
    # Attention kernel; SDPA traces to a pattern it does not fuse.
    transformer = getattr(model[0], "auto_model", None)
    if transformer is not None and hasattr(transformer, "set_attn_implementation"):
        transformer.set_attn_implementation("eager")
    features = model.preprocess(list(PROBE_TEXTS))
    names = [n for n in TOKEN_INPUTS if isinstance(features.get(n), torch.Tensor)]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise OnnxExportError(f"{model_dir}: the tokenizer gives {sorted(features)}, not input_ids and attention_mask")

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors)))[OUTPUT_NAME]

    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {OUTPUT_NAME: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter, not actionable here
        # The TorchScript exporter traces without the onnxscript package the dynamo exporter needs.
        torch.onnx.export(Pipeline().eval(), tuple(features[n] for n in names), str(out), dynamo=False,
                          input_names=names, output_names=[OUTPUT_NAME], dynamic_axes=axes,
                          opset_version=OPSET_VERSION)
    # A trace records one path through Python: check the graph on other lengths than the trace's.
    from refinery.tasks.onnx_encoder import OnnxEncoder

    reference = encode(model, list(PROBE_TEXTS) + [PROBE_TEXTS[0][:20]], show_progress=False)
    got = encode(OnnxEncoder(out, model), list(PROBE_TEXTS) + [PROBE_TEXTS[0][:20]], show_progress=False)
    cosine = float(np.min(np.sum(reference * got, axis=1)))
    if cosine < PROBE_MIN_COSINE:
        raise OnnxExportError(f"{model_dir}: the exported graph disagrees with PyTorch (cosine {cosine:.4f})")


def _quantize_int8(source: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {w.name for w in graph.initializer}
    keep_fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights
                 and FP32_LAYER_MARK in n.name]
    # MatMul weights only, per output channel (the most accurate dynamic scheme); the embedding
    # tables (Gather) stay fp32. Signed int8 weights suit VNNI/AVX-512 CPUs such as the dev machine's.
    with _quiet_root_logger():
        quantize_dynamic(source, out, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_exclude=keep_fp32)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # quantize_dynamic logs a root-logger warning advising shape pre-processing; measured, it
    # changes nothing for this graph (same nDCG@10 to 5 decimals), so it is only noise in task logs.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
