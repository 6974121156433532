"""Query -> document retrieval (headlines, or held-out synthetic queries): rankings (dense and BM25) and ranking
metrics."""
