"""Synthesize (query, passage) training pairs: generators, consistency filter, diversity stats."""
