"""The ingest flow on the shared Dask cluster: a big JSONL file is read by several ingest units, and
what they register is exactly what reading the file whole gives, every record accounted for."""

from __future__ import annotations

import json

from prefect_dask import DaskTaskRunner

from refinery.flows.ingest import ingest_flow
from refinery.flows.nightly import prepare_run
from refinery.tasks.config import parse_config
from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.readers import Record, Reject, bbc_folder, plan_units, read_unit

SPLIT_BYTES = 64 * 1024


def big_jsonl(path) -> int:
    """~300 BBC articles as JSONL (every third without an id), a broken line every 40, blank lines;
    returns the number of records (non-blank lines)."""
    articles = sorted((bbc_folder() / "politics").glob("*.txt"))[:300]
    lines = []
    for i, article in enumerate(articles):
        text = article.read_bytes().decode("utf-8", "replace")
        record = {"text": text} if i % 3 == 0 else {"id": f"p{i}", "text": text}
        lines.append(json.dumps(record, ensure_ascii=False) if i % 40 != 39 else '{"text": "cut off')
        if i % 50 == 0:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sum(1 for line in lines if line)


def test_a_big_file_is_read_by_several_units_and_every_record_is_accounted_for(tmp_path, prefect_api, dask_address):
    path = tmp_path / "big.jsonl"
    n_records = big_jsonl(path)
    cfg = parse_config({
        "home": str(tmp_path / "home"),
        "ingest": {"shard_size": 40, "split_bytes": SPLIT_BYTES, "sources": [{"path": str(path), "name": "big"}]},
    })
    run = prepare_run(cfg)
    stats = ingest_flow.with_options(task_runner=DaskTaskRunner(address=dask_address))(run)

    assert stats["units"] == -(-path.stat().st_size // SPLIT_BYTES) >= 5
    assert stats["docs"] + stats["rejects"] == n_records
    docs = run.catalog.query("SELECT doc_id, location, record_id, text FROM documents WHERE run_id = ?",
                             [run.run_id]).to_pylist()
    rejects = run.catalog.query("SELECT location, reason FROM rejects WHERE run_id = ?", [run.run_id]).to_pylist()
    assert len(docs) + len(rejects) == n_records and len(rejects) == 7

    whole = IngestConfig(sources=[SourceConfig(path=str(path), name="big")], split_bytes=0)
    (unit,) = plan_units(whole)
    expected = list(read_unit(unit))
    assert sorted((d["doc_id"], d["location"], d["record_id"], d["text"]) for d in docs) == sorted(
        (r.doc_id, r.location, r.record_id, r.text) for r in expected if isinstance(r, Record))
    assert sorted((r["location"], r["reason"]) for r in rejects) == sorted(
        (r.location, r.reason) for r in expected if isinstance(r, Reject))
