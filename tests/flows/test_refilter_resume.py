"""refilter then --resume: the later stages are redone on the new corpus, and nothing derived
from the old corpus (passages, candidates, pools, embeddings, pairs) is reused.

Real chain on a small titleless corpus (inverse cloze only, a tiny training), so it is evaluated on
held-out synthetic pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog, StageMarker

ARTICLES = 60


@pytest.mark.slow  # two passes of synthesize, train and evaluate
def test_refilter_that_drops_documents_then_resume_recomputes_what_changed(tmp_path, prefect_api, dask_address,
                                                                          bbc_jsonl):
    from refinery.flows.nightly import nightly
    from refinery.flows.quality import refilter_run
    from refinery.tasks.config import load_config

    data = bbc_jsonl(tmp_path / "corpus.jsonl", "business", ARTICLES, prefix="b")
    bodies = [json.loads(line)["text"] for line in data.read_text().splitlines()]
    config = {"home": str(tmp_path / "home"),
              "ingest": {"shard_size": 20, "sources": [{"path": str(data), "name": "b"}]},
              "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": ARTICLES},
              "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    first = nightly(config_path=str(path), dask_address=dask_address)
    run_id, run_dir = first["run_id"], Path(first["run_dir"])
    catalog = Catalog(tmp_path / "home" / "catalog.duckdb")
    corpus = lambda: set(catalog.query("SELECT doc_id FROM corpus WHERE run_id = ?", [run_id])  # noqa: E731
                         .column("doc_id").to_pylist())
    before = corpus()
    derived_before = {p.name for p in (run_dir / "pools").iterdir()} | {p.name for p in (run_dir / "embeddings").iterdir()}

    # a stricter word minimum drops the shorter articles
    lengths = sorted(len(b.split()) for b in bodies)
    stricter = {**config, "quality": {"gopher_quality": {"min_doc_words": lengths[len(lengths) // 3]}}}
    refilter_run(run_id, load_config(_write(tmp_path / "stricter.yaml", stricter)), dask_address)
    after = corpus()
    assert after < before and len(before - after) >= ARTICLES // 5
    nightly(config_path=str(path), dask_address=dask_address, run_id=run_id)

    for stage in ("synthesize", "train", "evaluate"):
        assert StageMarker(run_dir / stage).read() is not None
    pairs = catalog.query("SELECT doc_id, negative_doc_id FROM pairs WHERE run_id = ?", [run_id]).to_pylist()
    assert pairs and {p["doc_id"] for p in pairs} <= after
    assert {p["negative_doc_id"] for p in pairs if p["negative_doc_id"]} <= after
    passages = StageMarker(run_dir / "synthesize").read()
    assert passages["passages"] <= len(after)
    # evaluated on the new corpus: pools and embeddings derived from it, none reused from before
    derived_after = {p.name for p in (run_dir / "pools").iterdir()} | {p.name for p in (run_dir / "embeddings").iterdir()}
    assert derived_after - derived_before
    evaluation = StageMarker(run_dir / "evaluate").read()
    assert evaluation["pool_docs"] == evaluation["corpus_docs"] == len(after)  # the whole new corpus
    assert evaluation["pool"] not in derived_before
    metrics = catalog.query("SELECT model, metric, value FROM metrics WHERE run_id = ? AND stage = 'evaluate' "
                            "AND model IN ('base', 'tuned', 'bm25')", [run_id]).to_pylist()
    assert {m["model"] for m in metrics} == {"base", "tuned", "bm25"}
    (row,) = catalog.query("SELECT status, docs_kept FROM runs WHERE run_id = ?", [run_id]).to_pylist()
    assert row == {"status": "completed", "docs_kept": len(after)}


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
