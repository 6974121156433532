"""A data home in object storage (``home: s3://bucket/prefix``), against an S3 server this module
starts on loopback (moto's server mode), reached only as a user's environment says (credentials and
``AWS_ENDPOINT_URL``): two nights of the whole chain on a small corpus, run by Dask workers that
share no folder with the flow process but the bucket, then queried with ``refinery sql``.

The second night builds on the first through the bucket alone: it dedups its new documents against
the dataset index the first night wrote there, and trains from the promoted model the first night
published there.
"""

from __future__ import annotations

import json
import os

import fsspec
import pytest
import yaml
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import Catalog, StageMarker, link_tree, read_shard, remove_tree, swap_folder, write_shard
from refinery.storage.location import REMOTE_CACHE_ENV, local_copy, location
from tests.flows.test_corpus_shapes import titleless_records
from tests.services.services import s3_server

pytestmark = pytest.mark.slow  # two nights that train a model

BUCKET = "refinery-nights"
NEW_DOCS = 12
REPEATED = 4  # first-night documents sent again on the second night, under new ids


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3 server, and this process's environment pointing at it (as a user's shell would)."""
    with s3_server("moto-s3") as env:
        env = {**env, REMOTE_CACHE_ENV: str(tmp_path_factory.mktemp("remote-cache"))}
        before = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        fsspec.filesystem("s3").mkdir(BUCKET)
        try:
            yield env
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            fsspec.filesystem("s3").clear_instance_cache()


@pytest.fixture(scope="module")
def s3_workers(s3, prefect_api):
    """Two Dask workers started with the S3 environment (no data folder shared with this process)."""
    from refinery.flows.runtime import local_cluster
    from refinery.tasks.config import DaskConfig

    with local_cluster(DaskConfig(n_workers=2), api_url=prefect_api) as cluster:
        yield cluster.scheduler_address


def _objects(prefix: str) -> list[str]:
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    return sorted(fs.find(f"{BUCKET}/{prefix}"))


@pytest.fixture(scope="module")
def nights(tmp_path_factory, s3, s3_workers):
    """Two nights on one dataset whose home is in the bucket; the second reads new documents and
    repeats of the first night's."""
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("s3-nights")
    records = titleless_records(60)
    first, later = records[:60 - NEW_DOCS], records[60 - NEW_DOCS:]
    repeats = [json.dumps({**json.loads(r), "id": json.loads(r)["id"] + "-again"}) for r in first[:REPEATED]]
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "night1.jsonl").write_text("\n".join(first) + "\n")
    config = {
        "home": f"s3://{BUCKET}/home", "catalog": str(root / "local" / "catalog.duckdb"),
        "ingest": {"shard_size": 20, "sources": [{"path": str(corpus), "name": "plain"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 60, "heldout_fraction": 0.25,
                       "hard_negatives": True, "hard_negative_rank_window": [5, 20]},
        # a gate that always promotes: the second night must find the first night's model in the bucket
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 128,
                  "promotion": {"min_delta": -1.0, "min_ci_low": -1.0}},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    one = nightly(config_path=str(path), dask_address=s3_workers)
    (corpus / "night2.jsonl").write_text("\n".join(later + repeats) + "\n")
    two = nightly(config_path=str(path), dask_address=s3_workers)
    catalog = Catalog(root / "local" / "catalog.duckdb")
    return {"root": root, "config": path, "one": one, "two": two, "catalog": catalog,
            "repeated": [json.loads(r)["id"] for r in first[:REPEATED]]}


def test_storage_verbs_hold_on_object_storage(s3, tmp_path):
    """Shards, markers, a linked (copied) stage, a swapped folder and a removal, in the bucket."""
    import pyarrow as pa

    stage = location(f"s3://{BUCKET}/verbs/runs/r1/ingest")
    table = pa.table({"doc_id": ["a", "b"], "text": ["x", "y"]})
    shard = write_shard(table, stage / "documents-0.parquet")
    assert read_shard(shard).equals(table) and read_shard(str(shard), ["doc_id"]).num_rows == 2
    assert StageMarker(stage).read() is None
    StageMarker(stage).write({"docs": 2, "shards": [str(shard)]})
    assert StageMarker(stage).read() == {"docs": 2, "shards": [str(shard)]}

    copied = location(f"s3://{BUCKET}/verbs/runs/r2/ingest")
    assert link_tree(stage, copied, rewrite=(str(stage), str(copied)), skip=["_SUCCESS.json"]) == 1
    assert read_shard(copied / "documents-0.parquet").equals(table)
    assert StageMarker(copied).read() is None  # the caller writes the marker last

    local = location(f"s3://{BUCKET}/verbs/model")
    for text in ("old", "new"):
        folder = tmp_path / f"build-{text}"
        folder.mkdir()
        (folder / "weights.txt").write_text(text)
        swap_folder(folder, local)
        assert not folder.exists()
    assert (local / "weights.txt").read_text() == "new"
    assert (local_copy(local) / "weights.txt").read_text() == "new"

    remove_tree(f"s3://{BUCKET}/verbs/runs/r2")
    assert not _objects("verbs/runs/r2")


def test_two_nights_in_a_bucket_complete_and_balance(nights):
    q = nights["catalog"].query
    rows = q("SELECT run_id, status, docs_in, docs_kept, docs_dropped, docs_rejected FROM runs ORDER BY run_id").to_pylist()
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert [r["docs_in"] for r in rows] == [60 - NEW_DOCS, NEW_DOCS + REPEATED]
    for r in rows:
        assert r["docs_in"] == r["docs_kept"] + r["docs_dropped"] + r["docs_rejected"]
    # every stage's files and marker are in the bucket; the local folder holds the catalog, its lock
    # and caches, not one shard
    for stats in (nights["one"], nights["two"]):
        run = f"home/runs/{stats['run_id']}"
        for stage in ("ingest", "dedup", "quality", "publish", "synthesize", "train", "evaluate", "promote"):
            assert f"{BUCKET}/{run}/{stage}/_SUCCESS.json" in _objects(run), stage
        assert f"{BUCKET}/{run}/report.md" in _objects(run)
    local = [p.relative_to(nights["root"] / "local") for p in (nights["root"] / "local").rglob("*.parquet")]
    assert local == []


def test_the_second_night_dedups_against_the_index_in_the_bucket(nights):
    """The repeats of first-night documents are dropped by dedup: within the second night they have
    no twin, so what matched them is the dataset index the first night wrote to the bucket."""
    q = nights["catalog"].query
    one, two = nights["one"]["run_id"], nights["two"]["run_id"]
    kept = set(q("SELECT record_id FROM corpus WHERE run_id = ?", [one]).column("record_id").to_pylist())
    expected = sorted(f"{rid}-again" for rid in nights["repeated"] if rid in kept)
    assert expected  # the first night kept some of the documents sent again
    dropped = q("SELECT d.record_id FROM drops x JOIN documents d USING (run_id, doc_id) "
                "WHERE x.run_id = ? AND x.stage = 'dedup'", [two]).column("record_id").to_pylist()
    assert sorted(dropped) == expected


def test_the_second_night_trains_from_the_model_promoted_in_the_bucket(nights):
    q = nights["catalog"].query
    one, two = nights["one"]["run_id"], nights["two"]["run_id"]
    promoted = "home/models/dataset=default/promoted"
    files = _objects(promoted)
    assert f"{BUCKET}/{promoted}/README.md" in files and any(f.endswith("model.safetensors") for f in files)
    assert any(f.endswith(".onnx") for f in files)
    (row,) = q("SELECT base FROM models WHERE run_id = ? AND name = 'tuned'", [two]).to_pylist()
    assert row["base"] == f"promoted:{one}"


def test_refinery_sql_answers_over_the_buckets_parquet(nights):
    config = str(nights["config"])
    kept = sum(nights["catalog"].query("SELECT docs_kept FROM runs").column("docs_kept").to_pylist())
    result = CliRunner().invoke(app, ["sql", "--config", config, "--format", "json",
                                      "SELECT count(*) AS n, count(DISTINCT doc_id) AS ids FROM curated"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"n": kept, "ids": kept}]
    # the door still only reads what the home holds
    outside = CliRunner().invoke(app, ["sql", "--config", config, f"SELECT * FROM read_parquet('s3://{BUCKET}/elsewhere/x.parquet')"])
    assert outside.exit_code != 0 and "disabled by configuration" in outside.output


def test_gc_deletes_an_old_nights_objects_and_the_dataset_stays(nights):
    """(Last: it deletes the first night.) The dataset's versions are their own objects, so the
    curated documents outlive the run that published them."""
    config, catalog = str(nights["config"]), nights["catalog"]
    one, two = nights["one"]["run_id"], nights["two"]["run_id"]
    curated = catalog.query("SELECT count(*) AS n FROM curated").column("n")[0].as_py()
    assert _objects(f"home/runs/{one}")
    result = CliRunner().invoke(app, ["gc", "--keep", "1", "--config", config])
    assert result.exit_code == 0, result.output
    assert _objects(f"home/runs/{one}") == [] and _objects(f"home/runs/{two}")
    assert catalog.query("SELECT run_id FROM runs").column("run_id").to_pylist() == [two]
    assert catalog.query("SELECT count(*) AS n FROM curated").column("n")[0].as_py() == curated
