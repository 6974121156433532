"""Checkpoints of a training in progress: one file, replaced atomically, valid only for its inputs.

A checkpoint holds what the next step needs to go on exactly as an uninterrupted training would:
the model's and optimizer's tensors, the scheduler, the random number generators, the step
reached (the batches are a seeded function of the inputs, so the step is the batch position),
the losses and dev scores so far and the best model yet. It is tagged with the fingerprint of the
inputs (pairs, options, base model), so one left by a training of other pairs is never resumed.
"""

from __future__ import annotations

import io
import json
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xxhash

from refinery.storage import remove_tree, write_bytes_atomic
from refinery.storage.location import is_remote, location
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.config import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"
# Options that change how often work is saved, not what is computed; when work stops (``max_minutes``:
# a training stopped by it is saved, and a rerun finds it done; ``fit_minutes``: the steps re-planned from
# the clock, which a checkpoint keeps); and options that change no
# step of a training (``init`` and ``replay_ratio`` change its base model or
# its examples, which the fingerprint holds themselves).
_NOT_IN_FINGERPRINT = {"checkpoint_every", "max_minutes", "fit_minutes", "init", "replay_ratio", "promotion"}


def fingerprint(examples: Sequence[TrainPair], cfg: TrainConfig, base_path: str | os.PathLike[str]) -> str:
    """Identifies a training's result: the same examples, options and base model give the same one.

    The base model is named by its files' content, not its path: the dataset's promoted model lives
    at one path whose content a later night may replace."""
    from refinery.tasks.onnx_export import model_fingerprint

    h = xxhash.xxh3_128()
    options = {k: v for k, v in cfg.model_dump().items() if k not in _NOT_IN_FINGERPRINT}
    base = model_fingerprint(base_path) if location(base_path).is_dir() else str(base_path)
    h.update(json.dumps({"options": options, "base": base}, sort_keys=True).encode())
    for ex in examples:
        h.update(json.dumps([ex.query, ex.positive, ex.negative, ex.doc_id, ex.negative_doc_id]
                            + ([ex.margin] if ex.margin is not None else [])).encode())
    return h.hexdigest()


def rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` through a temporary file and a rename: the file
    is the previous checkpoint or the new one, whole, whenever the process dies."""
    import torch

    if is_remote(directory):  # a bucket: one PUT, whole or absent
        buf = io.BytesIO()
        torch.save(state, buf)
        return write_bytes_atomic(buf.getvalue(), directory / CHECKPOINT_FILE)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT_FILE}-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(directory: Path | None, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` when it is one of the training ``expected_fingerprint``
    names; None when there is none, it is another training's, or it cannot be read."""
    import torch

    if directory is None or not (directory / CHECKPOINT_FILE).exists():
        return None
    try:
        # weights_only: tensors, numbers, strings and containers, which is all a checkpoint holds
        with (directory / CHECKPOINT_FILE).open("rb") as f:
            state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint only means starting over
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != expected_fingerprint:
        return None
    return state


def remove_checkpoint(directory: Path | None) -> None:
    if directory is None:
        return
    if is_remote(directory):
        remove_tree(directory)
        return
    (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
    for leftover in directory.glob(f".{CHECKPOINT_FILE}-*"):  # temporary files of a killed write
        leftover.unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:
        pass  # not empty: something else lives there
