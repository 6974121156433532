"""What a night's model half reads: the version of its dataset that the night published.

A version's documents are the files every night of the dataset published up to it, less the
documents that later nights retired. A file with nothing retired is read where it lies; a file with
retired documents is copied without them (retirements are few: a changed or removed input file, a
refilter) by a worker, under the publish stage's folder. Synthesize samples its passages and
filter pool from these shards, train reads its passages from them, evaluate draws its pool from
them, and the query sets are matched to the version's documents (the catalog verbs' ``dataset``
scope): the model half of night N sees everything the dataset holds, not only night N's new
documents.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.storage import read_shard, write_shard


def without_retired(path: str, retired: list[str], out: str) -> str | None:
    """Write the documents of the shard ``path`` less those with doc ids in ``retired`` to ``out``;
    its path, or None when every document of it was retired."""
    table = read_shard(path)
    kept = table.filter(pc.invert(pc.is_in(table.column("doc_id"), value_set=pa.array(retired, pa.string()))))
    return str(write_shard(kept, out)) if kept.num_rows else None


def model_corpus(quality: dict[str, Any], published: dict[str, Any]) -> dict[str, Any]:
    """What synthesize, train and evaluate read, in the shape of quality's stats (``corpus_shards``,
    ``kept``): the dataset version the night published, when the night curated some new document;
    else quality's own corpus. A run that reused another run's curation reads that run's; a night
    that curated nothing new has an empty one, and its model half is skipped, saying so; a run
    re-decided by ``refinery refilter RUN`` and resumed reads its re-decided corpus, as that command
    promises (the dataset keeps what the night published: ``refilter --dataset`` re-decides it)."""
    if published.get("corpus") and quality.get("kept") and not quality.get("refiltered"):
        return {**quality, **published["corpus"]}
    return quality


def corpus_dataset(corpus: dict[str, Any]) -> str | None:
    """The dataset whose version ``corpus`` is (the scope of the catalog's query-set verbs), or None
    for a run's own corpus."""
    return corpus.get("version_of")
