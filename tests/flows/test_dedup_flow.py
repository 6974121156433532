"""Dedup through the real flow: the same clusters whatever the shard size and number of Dask workers,
and on text that overlaps in runs, no document filed under a survivor it does not nearly duplicate."""

from __future__ import annotations

import json

import pytest
from prefect_dask import DaskTaskRunner

from refinery.flows.dedup import dedup_flow
from refinery.flows.ingest import ingest_flow
from refinery.flows.nightly import prepare_run
from refinery.tasks.config import DaskConfig, parse_config
from refinery.tasks.ingest.readers import bbc_folder
from tests.fixtures.corpora import overlap_chunk


def variants(n_docs: int = 12) -> list[str]:
    """Per BBC article, a copy with 1 word in 150 replaced, and a copy of that copy with 1 more in 150.

    Each edit changes 5 word 5-grams, so copy~original and copy~copy stay near Jaccard 0.9 (above
    the 0.8 threshold); the copy of the copy is further from the original, found through the chain.
    """
    out = []
    for i in range(1, n_docs + 1):
        words = (bbc_folder() / "tech" / f"{i:03d}.txt").read_text().partition("\n")[2].split()
        edited = ["zebra" if j % 150 == 75 else w for j, w in enumerate(words)]
        twice = ["quokka" if j % 150 == 149 else w for j, w in enumerate(edited)]
        out += [json.dumps({"id": f"v{i}a", "text": " ".join(edited)}),
                json.dumps({"id": f"v{i}b", "text": " ".join(twice)})]
    return out


def runs_of_sentences(n_docs: int = 1500) -> list[str]:
    """Overlapping runs of 4-12 consecutive sentences of real articles: pairs chain through them."""
    return [json.dumps({"id": f"r{k}", "text": t}) for k, t in enumerate(overlap_chunk(0, n_docs, seed=3).texts)]


def five_grams(text: str) -> set[tuple[str, ...]]:
    tokens = text.lower().split()
    return {tuple(tokens[k : k + 5]) for k in range(len(tokens) - 4)}


def clusters_of(tmp_path, name: str, shard_size: int, address: str, extra, runs) -> set[tuple[str, str, str, bool]]:
    cfg = parse_config({
        "home": str(tmp_path / name),
        "ingest": {"shard_size": shard_size,
                   "sources": [{"path": str(bbc_folder() / "tech"), "name": "tech", "title_from_first_line": True},
                               {"path": str(extra), "name": "variants"}, {"path": str(runs), "name": "runs"}]},
    })
    run = prepare_run(cfg)
    runner = DaskTaskRunner(address=address)
    ingest = ingest_flow.with_options(task_runner=runner)(run)
    dedup_flow.with_options(task_runner=runner)(run, ingest)
    rows = run.catalog.query("""SELECT c.cluster_id, c.doc_id, d.location, c.is_survivor, c.kind, c.jaccard,
            d.text, s.text AS survivor_text
        FROM dedup_clusters c JOIN documents d USING (run_id, doc_id)
        JOIN documents s ON s.run_id = c.run_id AND s.doc_id = c.cluster_id WHERE c.run_id = ?""", [run.run_id]).to_pylist()
    # Every member of a near cluster nearly duplicates the survivor it is filed under.
    near = [r for r in rows if not r["is_survivor"] and r["kind"] == "near"]
    assert len(near) > 50
    assert min(r["jaccard"] for r in near) >= cfg.dedup.threshold
    true = sorted(len(five_grams(r["text"]) & five_grams(r["survivor_text"]))
                  / len(five_grams(r["text"]) | five_grams(r["survivor_text"])) for r in near)
    assert true[len(true) // 10] >= 0.75 and min(true) >= 0.6, true[:10]  # estimates err by ~0.04 around 0.8
    return {(r["cluster_id"], r["doc_id"], r["location"], r["is_survivor"]) for r in rows}


@pytest.mark.slow
def test_same_clusters_for_any_shard_size_and_worker_count(tmp_path, prefect_api, dask_address):
    from refinery.flows.runtime import local_cluster

    extra = tmp_path / "variants.jsonl"
    extra.write_text("\n".join(variants()) + "\n")
    runs = tmp_path / "runs.jsonl"
    runs.write_text("\n".join(runs_of_sentences()) + "\n")
    two_workers_small_shards = clusters_of(tmp_path, "a", 97, dask_address, extra, runs)
    with local_cluster(DaskConfig(n_workers=1), api_url=prefect_api) as one:
        one_worker_one_shard = clusters_of(tmp_path, "b", 5000, one.scheduler_address, extra, runs)
    assert two_workers_small_shards == one_worker_one_shard
    cluster_of = {loc: c for c, _, loc, _ in two_workers_small_shards}
    for i in range(1, 13):  # each original with its copy and its copy's copy (found through the chain)
        assert cluster_of[f"{i:03d}.txt"] == cluster_of[f"variants.jsonl:{2 * i - 1}"] == cluster_of[f"variants.jsonl:{2 * i}"]
    for cluster in set(cluster_of.values()):
        assert sum(s for c, _, _, s in two_workers_small_shards if c == cluster) == 1
