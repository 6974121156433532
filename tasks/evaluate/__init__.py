"""Headline -> article retrieval: rankings (dense and BM25) and ranking metrics."""
