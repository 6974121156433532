"""A run killed (SIGKILL, flow process and workers) in the middle of dedup, quality, publish or
synthesize, then resumed, ends exactly where a run that was never killed ends: the same books,
decisions and pairs, and the same dataset version.

Each run is the real CLI in its own process group with one Dask worker, so the stage is caught
half done: some of its shards written, its marker not. The uninterrupted reference run is made
once per module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog, StageMarker
from refinery.tasks.ingest.readers import bbc_folder

STAGES = ["ingest", "dedup", "quality", "synthesize"]
ARTICLES = 60
REFINERY = str(Path(sys.executable).parent / "refinery")
# the first shard file each stage writes: once one exists (and no marker), the stage is mid-way
FIRST_OUTPUT = {"dedup": "signatures-*.parquet", "quality": "attributes-*.parquet", "synthesize": "candidates-*.parquet",
                # publish writes the night's index files under the dataset's folder first, the catalog last
                "publish": "../../../datasets/dataset=default/index/keys/part=*/*.parquet"}


def written(stage_dir: Path, pattern: str) -> list[Path]:
    """The files ``pattern`` (relative to the stage's folder, ``..`` allowed) names."""
    folder = stage_dir
    while pattern.startswith("../"):
        folder, pattern = folder.parent, pattern[3:]
    return list(folder.glob(pattern))


def write_config(root: Path) -> Path:
    bodies = [p.read_text(encoding="utf-8").partition("\n")[2].strip()
              for p in sorted((bbc_folder() / "entertainment").glob("*.txt"))[:ARTICLES]]
    lines = [json.dumps({"id": f"e-{i:03d}", "text": b}) for i, b in enumerate(bodies)]
    lines += [json.dumps({"id": f"copy-{i}", "text": bodies[i]}) for i in range(5)]
    data = root / "corpus.jsonl"
    data.write_text("\n".join(lines) + "\n")
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({
        "home": str(root / "home"), "stages": STAGES, "dask": {"n_workers": 1},
        "ingest": {"shard_size": 4, "sources": [{"path": str(data), "name": "ent"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 40, "hard_negatives": True,
                       "hard_negative_rank_window": [3, 20]},
    }))
    return path


def refinery(env: dict, *args: str, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([REFINERY, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def finish(proc: subprocess.Popen, log: Path) -> None:
    assert proc.wait(900) == 0, log.read_text()[-4000:]


def outcome(home: Path) -> dict:
    """Everything a user would compare: books, survivors, scores, drops, pairs, registrations."""
    catalog = Catalog(home / "catalog.duckdb")
    (run_id,) = catalog.query("SELECT run_id FROM runs").column("run_id").to_pylist()
    q = lambda sql: catalog.query(sql, [run_id]).to_pylist()  # noqa: E731
    return {
        "books": q("SELECT status, docs_in, docs_kept, docs_dropped, docs_rejected FROM runs WHERE run_id = ?"),
        "corpus": q("SELECT doc_id FROM corpus WHERE run_id = ? ORDER BY doc_id"),
        "attributes": q("SELECT doc_id, name, value FROM doc_attributes WHERE run_id = ? ORDER BY doc_id, name"),
        "drops": q("SELECT doc_id, stage, reason FROM drops WHERE run_id = ? ORDER BY doc_id"),
        "clusters": q("SELECT cluster_id, doc_id FROM dedup_clusters WHERE run_id = ? ORDER BY doc_id"),
        "pairs": q("SELECT pair_id, query, doc_id, kept, rank, negative_doc_id, split FROM pairs WHERE run_id = ?"
                   " ORDER BY pair_id"),
        "documents": q("SELECT count(*) AS n, count(DISTINCT doc_id) AS distinct_ids FROM documents WHERE run_id = ?"),
        "stages": q("SELECT stage, status FROM stage_runs WHERE run_id = ? ORDER BY stage"),
        # the dataset the night published (its version is named by the run, so compare the rest)
        "curated": catalog.query("SELECT doc_id, source, location, text FROM curated ORDER BY doc_id").to_pylist(),
        "versions": catalog.query("SELECT dataset, seq, docs_added, docs_retired, docs_total, len(files) AS files,"
                                  " len(index_files) AS index_files FROM dataset_versions ORDER BY seq").to_pylist(),
        "run_id": run_id,
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, prefect_api):
    root = tmp_path_factory.mktemp("uninterrupted")
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    finish(refinery(env, "run", "--config", str(write_config(root)), log=root / "run.log"), root / "run.log")
    return outcome(root / "home")


@pytest.mark.slow  # three runs of the chain up to synthesize, each killed and resumed
@pytest.mark.parametrize("stage", ["dedup", "quality", "publish", "synthesize"])
def test_a_run_killed_mid_stage_resumes_to_the_same_result(stage, tmp_path, prefect_api, reference):
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    config, log = write_config(tmp_path), tmp_path / "run.log"
    proc = refinery(env, "run", "--config", str(config), log=log)
    runs = tmp_path / "home" / "runs"
    deadline = time.monotonic() + 600
    try:
        while True:
            assert proc.poll() is None, f"the run ended before {stage} was caught:\n" + log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{stage} never started:\n" + log.read_text()[-3000:]
            stage_dirs = list(runs.glob(f"*/{stage}")) if runs.exists() else []
            if stage_dirs and written(stage_dirs[0], FIRST_OUTPUT[stage]):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    (stage_dir,) = stage_dirs
    assert StageMarker(stage_dir).read() is None, f"{stage} had finished before the kill"
    run_id = stage_dir.parent.name

    finish(refinery(env, "run", "--config", str(config), "--resume", run_id, log=log), log)
    resumed = outcome(tmp_path / "home")
    for key in reference:
        if key != "run_id":
            assert resumed[key] == reference[key], key
    assert resumed["documents"][0]["n"] == resumed["documents"][0]["distinct_ids"]  # no shard registered twice
    # no partial file left anywhere in the run: every write is temp file + rename, and a resumed stage
    # sweeps the temp files of the writes the kill interrupted
    assert not [p for p in (runs / run_id).rglob(".*") if p.is_file()]
