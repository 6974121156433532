"""Run an exported sentence encoder (:mod:`tasks.onnx_export`) with ONNX Runtime on CPU.

The sentence-transformers model stays the tokenizer (same vocabulary, truncation at
``max_seq_length``, padding to the longest text of a batch) and batches are formed as
sentence-transformers forms them (longest texts first), so only the forward pass changes.

Threads follow torch's setting, as the PyTorch path does: an ONNX Runtime session's thread count
is fixed when it is created, so the encoder keeps one session per thread count and each
:meth:`OnnxEncoder.encode` uses the one for ``torch.get_num_threads()`` at that moment. On a
Dask worker (torch at one thread) that is one thread; inside :func:`tasks.embedding.all_cores`
it is every core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer

DEFAULT_BATCH_SIZE = 64
# Texts per ONNX Runtime call, whatever larger batch the caller asks for. Measured on the 2-core
# dev machine at 256 tokens and one thread (as on a Dask worker), texts per CPU second at 64 / 16 / 4
# texts a call: int8 18-28 / 30-34 / 35-36, fp32 14-18 / 21 / 22-23 (the attention tensors of
# 64 x 256 tokens, ~200 MB a layer, do not stay in cache); torch gains ~10% at one thread but
# loses at two. int8 activations are scaled per call, so its nDCG@10 moves with the batching:
# vs torch -0.0011 / -0.0029 / -0.0008 / -0.0019 / -0.0009 at 4 / 8 / 16 / 32 / 64 (bench/RESULTS.md).
RUN_BATCH_SIZE = 16


class OnnxEncoder:
    """A sentence-transformers model whose forward pass runs in ONNX Runtime.

    ``onnx_file`` is the exported graph (token tensors in, sentence embeddings out);
    ``tokenizer_model`` the sentence-transformers model it was exported from, loaded on CPU, of
    which only the tokenizer is used. Use it through :func:`tasks.embedding.encode`.
    """

    def __init__(self, onnx_file: str | os.PathLike[str], tokenizer_model: SentenceTransformer) -> None:
        self.onnx_file = Path(onnx_file)
        self._model = tokenizer_model
        self._sessions: dict[int, onnxruntime.InferenceSession] = {}
        self._lock = threading.Lock()

    @property
    def max_seq_length(self) -> int:
        """Token limit: longer texts are truncated by the tokenizer (settable, as on SentenceTransformer)."""
        return self._model.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._model.max_seq_length = value

    def get_embedding_dimension(self) -> int:
        return self._model.get_embedding_dimension()

    def session(self, threads: int | None = None) -> onnxruntime.InferenceSession:
        """The session with ``threads`` intra-op threads (default: torch's current thread count)."""
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        threads = max(int(threads), 1)
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = _new_session(self.onnx_file, threads)
            return self._sessions[threads]

    def encode(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE,
               show_progress: bool = False) -> np.ndarray:
        """``(len(texts), dim)`` float32, L2-normalised rows (as :func:`tasks.embedding.encode`).

        Runs at most :data:`RUN_BATCH_SIZE` texts per call (``batch_size`` may lower it). With int8
        a text's embedding depends slightly on the texts it is batched with (activation scales are
        computed per call); fp32 does not.
        """
        batch_size = max(1, min(batch_size, RUN_BATCH_SIZE))
        session = self.session()
        wanted = [i.name for i in session.get_inputs()]
        # Longest first, as sentence-transformers does: batches of similar length pad little.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches")
        for start in starts:
            rows = order[start : start + batch_size]
            features: dict[str, Any] = self._model.preprocess([texts[i] for i in rows])
            (emb,) = session.run(None, {name: features[name].numpy() for name in wanted})
            out[rows] = emb
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


def _new_session(onnx_file: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads block instead of spinning: on 2 shared cores a spinning thread takes the
    # core from the other worker (or from torch) between two kernels.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
