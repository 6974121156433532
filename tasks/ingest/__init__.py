"""Readers for the input formats and the ingest shard tasks."""
