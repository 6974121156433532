"""The benchmark corpora: real BBC text, injected copies with recorded provenance, reproducible chunks."""

import numpy as np

from bench.corpora import corpus_texts, load_bbc, synthetic_chunk, synthetic_corpus
from refinery.tasks.dedup import normalize_for_exact


def test_bbc_articles_load_in_a_stable_order() -> None:
    articles = load_bbc()
    assert len(articles) == 2225
    assert {a.label for a in articles} == {"business", "entertainment", "politics", "sports", "tech"}
    assert articles[0].headline and articles[0].paragraphs
    assert 2000 < np.mean([len(a.text) for a in articles]) < 2500


def test_chunks_are_reproducible_and_record_their_copies() -> None:
    chunk = synthetic_chunk(1, 3000, seed=5, chunk_docs=1000)
    again = synthetic_chunk(1, 3000, seed=5, chunk_docs=1000)
    assert chunk.texts == again.texts and chunk.first_row == 1000
    copies = np.flatnonzero(chunk.source >= 0)
    assert set(chunk.kind[copies]) == {"exact", "near"} and (chunk.kind[chunk.source < 0] == "base").all()
    assert (chunk.source[copies] < chunk.first_row + copies).all()  # a copy's source comes earlier
    for row in copies[chunk.kind[copies] == "exact"][:20]:
        source = chunk.texts[chunk.source[row] - chunk.first_row]
        assert normalize_for_exact(chunk.texts[row]) == normalize_for_exact(source)
    for row in copies[(chunk.kind[copies] == "near") & (chunk.edit_rate[copies] == 0)][:20]:
        assert chunk.texts[row] == chunk.texts[chunk.source[row] - chunk.first_row]


def test_small_corpora_use_the_real_articles_and_rows_can_be_regenerated() -> None:
    chunks = list(synthetic_corpus(1500, seed=2))
    assert len(chunks) == 1
    real = {a.text for a in load_bbc()}
    bases = [t for t, k in zip(chunks[0].texts, chunks[0].kind) if k == "base"]
    assert all(t in real for t in bases)
    assert corpus_texts([3, 1499], 1500, seed=2) == {3: chunks[0].texts[3], 1499: chunks[0].texts[1499]}
