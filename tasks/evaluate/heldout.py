"""Held-out synthetic queries as an evaluation set, for a corpus without titles.

An extractive query (inverse cloze: a sentence of the passage) occurs word for word in its own
document, so ranking the unchanged document would test string matching. As in training, where
the positive is the passage without the query sentence, the sentence is cut from its document
before the corpus is ranked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def cut_verbatim(text: str, queries: Iterable[str]) -> str:
    """``text`` without any occurrence of each query (words in order, any whitespace between).

    A query that does not occur leaves the text unchanged (generated queries rarely do occur:
    the generator rejects copies of six passage words or more).
    """
    cut = 0
    for query in queries:
        words = query.split()
        if words:
            text, n = re.subn(r"[ \t]*" + r"\s+".join(map(re.escape, words)), "", text)
            cut += n
    return text.strip() if cut else text
