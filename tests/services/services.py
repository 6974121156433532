"""Processes started as a user starts them, for the service tests: from another working directory,
with only the environment a user would give them, stopped (whole process group) when done, their
output kept in the test output folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
# screenshots and the logs of started processes stay here after the run
OUTPUT = Path(os.environ.get("REFINERY_TEST_OUTPUT", ROOT / "test-output"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a process a user starts: no test-session Prefect settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REFINERY_HOME"))}
    # as in a shell with the venv activated: `python` and `prefect` are the venv's
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", REFINERY_NO_PROGRESS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


@contextmanager
def started(name: str, argv: list[str], *, cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """Start a process in its own session; on exit stop its whole group. Output goes to OUTPUT/name.log."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log = (OUTPUT / f"{name}.log").open("w")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def log_of(name: str) -> str:
    path = OUTPUT / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


class PrefectServer:
    def __init__(self, url: str, home: Path):
        self.url = url.rstrip("/")
        self.api = f"{self.url}/api"
        self.home = home

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(PREFECT_API_URL=self.api, PREFECT_HOME=str(self.home / "client"), **extra)

    def post(self, path: str, body: dict | None = None) -> Any:
        r = httpx.post(f"{self.api}{path}", json=body or {}, timeout=30)
        r.raise_for_status()
        return r.json()

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.api}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def deployment(self, name: str) -> dict | None:
        found = self.post("/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
        return found[0] if found else None

    def flow_runs(self, deployment_id: str) -> list[dict]:
        return self.post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}},
                                               "sort": "EXPECTED_START_TIME_ASC", "limit": 50})

    def wait_final(self, flow_run_id: str, *, timeout: float) -> dict:
        def final():
            run = self.get(f"/flow_runs/{flow_run_id}")
            return run if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None
        return wait_for(final, timeout=timeout, what=f"flow run {flow_run_id} to finish", every=2)

    def artifacts(self, flow_run_id: str) -> list[dict]:
        return self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})


def write_config(root: Path, corpus: Path, **overrides: Any) -> Path:
    """A curation-only config over ``corpus``: the runs these tests schedule take seconds."""
    cfg: dict[str, Any] = {
        "home": str(root / "home"),
        "stages": ["ingest", "dedup", "quality"],
        "dask": {"n_workers": 1},
        "ingest": {"shard_size": 50, "sources": [{"path": str(corpus), "name": "notes", "text_field": "body",
                                                  "id_field": "note_id", "title_field": None}]},
        **overrides,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


