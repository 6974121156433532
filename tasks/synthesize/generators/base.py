"""The one-method interface every query generator implements, and what it returns."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Candidate:
    """One proposed query for a passage.

    ``positive`` is the text to train against when it differs from the passage (inverse cloze
    removes the query sentence from it); ``None`` means the passage itself. ``style`` and
    ``attributes`` say what was asked for (AttrPrompt: a style such as 'question' or 'keywords',
    attributes such as ``{"length": "short", "specificity": "broad"}``); inverse cloze has style
    'sentence' and no attributes. ``unfinished``: the sample hit the token limit before it ended a
    sentence or line (the filters reject it as ``filter_unfinished``).
    """

    query: str
    prompt_id: str
    positive: str | None = None
    style: str | None = None
    attributes: Mapping[str, str] | None = None
    unfinished: bool = False


class QueryGenerator(Protocol):
    """The seam between the synthesize stage and a query-generation backend."""

    name: str

    def generate(self, passages: Sequence[str]) -> list[list[Candidate]]:
        """Candidates for each passage, in passage order (a list may be empty)."""
        ...


def passage_rng(seed: int, passage: str, salt: str = "") -> random.Random:
    """A random generator seeded by ``seed`` and the passage text (not its position), so a passage
    gets the same draw whatever batch or worker it lands in."""
    digest = hashlib.blake2b(passage.encode("utf-8"), digest_size=8).digest()
    return random.Random(f"{seed}:{digest.hex()}{salt}")


def progress(iterable, show: bool, desc: str):
    """``iterable``, with a progress bar when ``show``."""
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc)
