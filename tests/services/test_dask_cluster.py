"""`refinery run --dask-address` against a separately started `dask scheduler` and `dask worker`s.

The workers start from another working directory that holds folders named `storage`, `tasks` and
`flows` (as a user's project might): Refinery must import as `refinery.*` there. A cluster that
cannot run Refinery fails the run quickly, with a message that says why.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest
from distributed import Client

from refinery.storage import Catalog
from tests.services.services import BIN, free_port, log_of, started, write_config

# the CLI gives up on a run that did not end by then: a hang fails the test instead of the suite
RUN_TIMEOUT = 600


def shadowing_folders(cwd):
    for name in ("storage", "tasks", "flows", "bench"):
        (cwd / name).mkdir()
        (cwd / name / "__init__.py").write_text(f"raise ImportError('the {name} folder of the working directory')\n")


def scheduler(stack: ExitStack, name: str, cwd, env) -> str:
    port = free_port()
    stack.enter_context(started(name, [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard"], cwd=cwd, env=env))
    return f"tcp://127.0.0.1:{port}"


def worker_argv(address: str, name: str) -> list[str]:
    return [str(BIN / "dask"), "worker", address, "--name", name, "--nthreads", "1", "--no-dashboard",
            "--memory-limit", "4GiB"]


def refinery_run(config, address: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "refinery"), "run", "--config", str(config), "--dask-address", address],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("dask-cwd")
    shadowing_folders(cwd)
    env = prefect_server.env()
    with ExitStack() as stack:
        address = scheduler(stack, "dask-scheduler", cwd, env)
        for name in ("worker-a", "worker-b"):
            stack.enter_context(started(f"dask-{name}", worker_argv(address, name), cwd=cwd, env=env))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            client.get_task_stream()  # starts the scheduler's task-stream recording
        yield {"address": address, "cwd": cwd}


def test_run_on_a_separately_started_cluster_uses_both_workers(cluster, prefect_server, user_corpus, tmp_path):
    config = write_config(tmp_path, user_corpus, ingest={
        "shard_size": 20, "sources": [{"path": str(user_corpus), "name": "notes", "text_field": "body",
                                       "id_field": "note_id", "title_field": None}]})
    result = refinery_run(config, cluster["address"], cluster["cwd"], prefect_server.env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    (row,) = Catalog(tmp_path / "home" / "catalog.duckdb").query("SELECT * FROM runs").to_pylist()
    assert row["status"] == "completed" and row["docs_in"] == 161
    with Client(cluster["address"], timeout=60) as client:
        stream = client.get_task_stream()
    by_worker = {}
    for t in stream:
        by_worker.setdefault(t["worker"], set()).add(t["key"] if isinstance(t["key"], str) else str(t["key"]))
    assert len(by_worker) == 2, f"tasks ran on {sorted(by_worker)} only"
    # the workers' task runs reported to the same Prefect API as the flow
    tasks = prefect_server.post("/task_runs/filter", {"task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                                                      "limit": 200})
    names = {t["name"].split(" ")[0] for t in tasks}
    assert {"ingest", "signatures", "quality"} <= names, sorted(names)[:20]


def test_a_cluster_without_workers_fails_the_run_with_a_message(prefect_server, user_corpus, tmp_path):
    config = write_config(tmp_path, user_corpus, dask={"worker_timeout": 10})
    with ExitStack() as stack:
        address = scheduler(stack, "dask-scheduler-alone", tmp_path, prefect_server.env())
        with Client(address, timeout=60):
            pass
        result = refinery_run(config, address, tmp_path, prefect_server.env())
    assert result.returncode != 0
    assert f"the Dask scheduler at {address} has no workers" in result.stdout + result.stderr
    (row,) = Catalog(tmp_path / "home" / "catalog.duckdb").query("SELECT status, error FROM runs").to_pylist()
    assert row["status"] == "failed" and "has no workers" in row["error"]


def test_a_worker_that_cannot_import_refinery_fails_the_run_with_a_message(prefect_server, user_corpus, tmp_path):
    config = write_config(tmp_path, user_corpus)
    env = prefect_server.env()
    # a worker process in which `refinery` is not importable (as in an environment without it)
    blind = [str(BIN / "python"), "-c", "import sys; sys.modules['refinery'] = None; "
             "from distributed.cli.dask_worker import main; sys.argv[0] = 'dask-worker'; main()"]
    with ExitStack() as stack:
        address = scheduler(stack, "dask-scheduler-blind", tmp_path, env)
        stack.enter_context(started("dask-worker-blind", blind + worker_argv(address, "blind")[2:] + ["--no-nanny"],
                                    cwd=tmp_path, env=env))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        result = refinery_run(config, address, tmp_path, env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, log_of("dask-worker-blind")[-2000:]
    assert "refinery run failed: WorkerPreflightError: 1 of 1 Dask workers at" in out, out[-3000:]
    assert "cannot import Refinery (worker blind (" in out and "No module named" in out, out[-3000:]


def test_a_cluster_whose_workers_all_die_mid_stage_fails_the_run_naming_the_scheduler(prefect_server, tmp_path):
    """distributed would wait for workers forever; the run fails after dask.worker_timeout instead,
    and its record and report say which scheduler lost them."""
    import json
    import os
    import signal
    import time

    from tests.fixtures.corpora import synthetic_chunk
    from tests.services.services import wait_for

    corpus = tmp_path / "notes.jsonl"
    texts = synthetic_chunk(0, 600, chunk_docs=600, seed=5).texts
    corpus.write_text("".join(json.dumps({"note_id": f"n{i:04d}", "body": t}) + "\n" for i, t in enumerate(texts)))
    config = write_config(tmp_path, corpus, dask={"worker_timeout": 5})
    text = config.read_text()
    assert "shard_size: 50" in text
    config.write_text(text.replace("shard_size: 50", "shard_size: 5"))  # many small dedup tasks
    env = prefect_server.env()
    home = tmp_path / "home"
    with ExitStack() as stack:
        address = scheduler(stack, "dask-scheduler-doomed", tmp_path, env)
        worker = stack.enter_context(started("dask-worker-doomed", worker_argv(address, "doomed"), cwd=tmp_path,
                                             env=env))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        run = stack.enter_context(started("refinery-run-doomed", [str(BIN / "refinery"), "run", "--config",
                                          str(config), "--dask-address", address], cwd=tmp_path, env=env))
        # in the middle of dedup: its first shard written, most still to come
        wait_for(lambda: run.poll() is None and next(home.rglob("signatures-*.parquet"), None), timeout=300,
                 what="dedup's first shard", every=0.2)
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its nanny: nothing restarts it
        killed = time.monotonic()
        wait_for(lambda: run.poll() is not None, timeout=120, what="the run to fail after its workers died")
        took = time.monotonic() - killed
    out = log_of("refinery-run-doomed")
    assert run.returncode != 0
    assert f"every worker of the Dask scheduler at {address} has been gone for" in out, out[-3000:]
    assert "dask.worker_timeout" in out and "refinery run --resume" in out
    print(f"the run failed {took:.1f} s after its last worker was killed (worker_timeout 5 s)")
    (row,) = Catalog(home / "catalog.duckdb").query("SELECT status, error, run_dir FROM runs").to_pylist()
    assert row["status"] == "failed" and row["error"].startswith("dedup: WorkersLostError: every worker of the Dask")
    report = (Path(row["run_dir"]) / "report.md").read_text()
    assert f"every worker of the Dask scheduler at {address}" in report
