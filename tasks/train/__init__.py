"""Fine-tune the sentence-embedding model on synthesized (query, passage) pairs."""
