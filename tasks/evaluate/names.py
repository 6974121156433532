"""Names of derived outputs, taken from what they derive from.

A pool's part shards are named by the pool's documents, and its embeddings by the pool, the
model's files and the encoder settings. An output re-derived from other input (a refiltered
corpus, a retrained model, another backend) gets another name, so "reuse what exists" can never
serve a stale one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import xxhash

DIGEST_CHARS = 16
_READ_CHUNK = 1 << 20


def content_key(*parts: str | Iterable[str]) -> str:
    """A short hex digest of strings (an iterable part contributes each of its items, in order)."""
    h = xxhash.xxh3_128()
    for part in parts:
        for item in [part] if isinstance(part, str) else part:
            h.update(item.encode())
            h.update(b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()[:DIGEST_CHARS]


def model_fingerprint(path: str | os.PathLike[str]) -> str:
    """Digest of every file of a model folder (names and bytes): a retrained model in the same
    folder has another fingerprint."""
    root = Path(path)
    h = xxhash.xxh3_128()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(root)).encode() + b"\x1f")
        with open(file, "rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                h.update(chunk)
        h.update(b"\x1e")
    return h.hexdigest()[:DIGEST_CHARS]


def embeddings_key(pool: str, model_fingerprint: str, *, backend: str, max_seq_length: int | None) -> str:
    """Name of one model's embeddings of one pool under one encoder configuration."""
    return content_key(pool, model_fingerprint, backend, str(max_seq_length))
