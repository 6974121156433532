"""tasks/runs.py ``reuse_synthesis``: a run gets another run's synthesize stage (folder linked, pairs
and metrics rows copied) only when both have the same curated corpus; what `refinery ablate`'s
train-only variants stand on."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from refinery.storage import Catalog, DataHome, StageMarker, read_shard, write_shard
from refinery.tasks.runs import reuse_synthesis


def curated(home: DataHome, run_id: str, reused_from: str) -> None:
    for stage in ("ingest", "dedup", "quality"):
        StageMarker(home.stage_dir(run_id, stage)).write({"reused_from": reused_from})


@pytest.fixture()
def home(tmp_path):
    home = DataHome(tmp_path / "home").ensure()
    catalog = Catalog(home.catalog_path).ensure_schema()
    for run_id in ("src", "v1", "v2"):
        catalog.start_run(run_id, config={}, run_dir=home.run_dir(run_id))
    curated(home, "src", "ref")
    curated(home, "v1", "ref")
    curated(home, "v2", "elsewhere")
    out = home.stage_dir("src", "synthesize")
    path = write_shard(pa.table({"run_id": ["src"] * 2, "query": ["q1", "q2"], "doc_id": ["d1", "d2"],
                                 "kept": [True, True], "split": ["train", "train"]}), out / "pairs.parquet")
    catalog.put_pairs("src", [path])
    catalog.put_metrics("src", "synthesize", [("all", "diversity", "distinct", 1.0)])
    stats = {"pairs_path": str(path), "evaluation_task": "headline"}
    catalog.record_stage("src", "synthesize", status="completed", started_at=datetime.now(timezone.utc), stats=stats)
    StageMarker(out).write(stats)
    return home


def test_a_run_of_the_same_curation_trains_on_the_very_pairs(home):
    reuse_synthesis(home, "v1", "src")
    catalog = Catalog(home.catalog_path)
    marker = StageMarker(home.stage_dir("v1", "synthesize")).read()
    assert marker["reused_from"] == "src"
    assert marker["pairs_path"] == str(home.stage_dir("v1", "synthesize") / "pairs.parquet")
    assert read_shard(marker["pairs_path"]).column("query").to_pylist() == ["q1", "q2"]
    pairs = catalog.query("SELECT query, doc_id FROM pairs WHERE run_id = 'v1' ORDER BY query").to_pylist()
    assert pairs == [{"query": "q1", "doc_id": "d1"}, {"query": "q2", "doc_id": "d2"}]
    assert catalog.kept_training_pairs("v1") == 2
    assert catalog.query("SELECT status FROM stage_runs WHERE run_id = 'v1' AND stage = 'synthesize'"
                         ).to_pylist() == [{"status": "reused"}]
    assert catalog.query("SELECT count(*) AS n FROM metrics WHERE run_id = 'v1' AND stage = 'synthesize'"
                         ).to_pylist() == [{"n": 1}]


def test_another_curation_or_an_unfinished_synthesis_is_refused(home):
    with pytest.raises(ValueError, match="does not have the curated corpus"):
        reuse_synthesis(home, "v2", "src")
    with pytest.raises(ValueError, match="has not finished synthesize"):
        reuse_synthesis(home, "src", "v1")
    assert StageMarker(home.stage_dir("v2", "synthesize")).read() is None
