"""One run at a time per data home, and a killed run shows as `interrupted`, not `running` forever.

The run holds an OS file lock on `<home>/run.lock` for as long as its process lives; these tests
use real second processes (a lock holder, a `refinery run` that is SIGKILLed).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import Catalog, DataHome
from refinery.storage.layout import HomeBusyError


def _hold(home: str, started, release) -> None:
    with DataHome(Path(home)).run_lock("run 20990101-000000-beef"):
        started.set()
        release.wait(120)


@pytest.fixture()
def other_process_holds_the_home(home):
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(home), started, release))
    holder.start()
    assert started.wait(60)
    yield holder
    release.set()
    holder.join(60)


def test_a_second_run_on_the_same_home_exits_at_once_with_a_message(home, other_process_holds_the_home,
                                                                      prefect_api, tmp_path):
    from refinery.flows.nightly import nightly

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"stages": ["ingest", "dedup", "quality"]}))
    with pytest.raises(HomeBusyError, match=r"run 20990101-000000-beef \(pid \d+\) is running in"):
        nightly(config_path=str(cfg))
    assert not (home / "catalog.duckdb").exists()  # nothing was started


def test_a_killed_run_is_interrupted_and_the_next_run_says_so(home, prefect_api, tmp_path):
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text("".join(f'{{"id": "n{i}", "text": "Note {i} says the river rose by {i} metres in the night."}}\n'
                              for i in range(400)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"stages": ["ingest", "dedup", "quality"], "dask": {"n_workers": 1},
                                   "ingest": {"shard_size": 20, "sources": [{"path": str(corpus)}]}}))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "REFINERY_HOME": str(home)}
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "refinery"), "run", "--config", str(cfg)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    catalog = Catalog(home / "catalog.duckdb")
    deadline = time.monotonic() + 300
    try:
        while not (catalog.path.exists() and DataHome(home).lock_holder()
                   and catalog.query("SELECT count(*) AS n FROM runs").to_pylist()[0]["n"]):
            assert proc.poll() is None and time.monotonic() < deadline, \
                "the run never started:\n" + (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
        log.close()
    (killed,) = catalog.query("SELECT run_id, status FROM runs").to_pylist()
    assert killed["status"] == "running"  # what the dead process left behind
    result = CliRunner().invoke(app, ["runs", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert f"{killed['run_id']},interrupted" in result.output

    # the next run in this home records it as interrupted
    from refinery.flows.nightly import prepare_run
    from refinery.tasks.config import load_config

    with DataHome(home).run_lock("a test run"):
        prepare_run(load_config(cfg))
    statuses = {r["run_id"]: r["status"] for r in catalog.query("SELECT run_id, status FROM runs").to_pylist()}
    assert statuses[killed["run_id"]] == "interrupted"
