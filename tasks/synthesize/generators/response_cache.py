"""Answers of a remote generator on disk, one JSON file per request, so a rerun asks nothing twice.

A request is keyed by everything that shapes its answer: the model, the prompt messages, the
sampling parameters and the sample index (see :func:`request_key`). Files are written to a
temporary name and renamed into place, so a killed run leaves whole answers or none, and two
workers writing the same answer leave one of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def request_key(request: dict[str, Any]) -> str:
    """A hex digest of ``request`` (JSON-serializable; key order does not matter)."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """``get``/``put`` of answers under ``root`` (``<root>/<key[:2]>/<key>.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The answer stored under ``key``, or ``None``."""
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            # Not ours (files are renamed into place whole): ask again and overwrite it.
            return None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(answer, f, ensure_ascii=False, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
