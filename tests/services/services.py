"""Processes started as a user starts them, for the service tests: from another working directory,
with only the environment a user would give them, stopped (whole process group) when done, their
output kept in the test output folder."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, every: float = 1.0,
             explain: Callable[[], str] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and ``explain()``,
    what the services say) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{explain()}" if explain else ""))
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


class WebhookReceiver:
    """An HTTP server on a free loopback port that keeps every request's path and body, as a Slack
    or chat webhook would receive them."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "body": body.decode("utf-8", "replace")})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> "WebhookReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (initdb, postgres), the newest version."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (folder / "initdb").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextmanager
def postgresql(name: str) -> Iterator[str]:
    """A PostgreSQL server of its own (Debian's package) on a free loopback port, with a database
    ``prefect``; yields its SQLAlchemy URL for Prefect. Run as the ``postgres`` user when the tests
    run as root (CI), since PostgreSQL refuses to."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    # not under pytest's tmp folders: those are 0700 to their owner, and the server may run as postgres
    root = Path(tempfile.mkdtemp(prefix="refinery-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    initdb = subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                             "-E", "UTF8", "--no-locale"], capture_output=True, text=True)
    if initdb.returncode:
        pytest.fail(f"initdb failed ({initdb.returncode}): {initdb.stderr[-2000:]}")
    argv = [*as_postgres, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    try:
        with started(name, argv, cwd=root, env=clean_env()) as proc:
            def ready():
                if proc.poll() is not None:
                    pytest.fail(f"postgres exited ({proc.returncode}):\n{log_of(name)[-3000:]}")
                check = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                         "-tAc", "SELECT 1"]
                return subprocess.run(check, capture_output=True).returncode == 0
            wait_for(ready, timeout=60, what="postgres to accept connections")
            subprocess.run([str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                            "-c", "CREATE DATABASE prefect"], check=True, capture_output=True)
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        shutil.rmtree(root, ignore_errors=True)


# What a user exports for an S3-compatible server (MinIO, R2, moto): credentials and the endpoint
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "refinery-test", "AWS_SECRET_ACCESS_KEY": "refinery-test-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_server(name: str) -> Iterator[dict[str, str]]:
    """An S3 server of its own (moto's server mode) on a free loopback port; yields the environment
    a user gives Refinery to reach it (credentials and ``AWS_ENDPOINT_URL``)."""
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="refinery-s3-"))
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    try:
        with started(name, argv, cwd=root, env=clean_env()) as proc:
            url = f"http://127.0.0.1:{port}"

            def ready():
                if proc.poll() is not None:
                    pytest.fail(f"moto exited ({proc.returncode}):\n{log_of(name)[-3000:]}")
                try:
                    return httpx.get(url, timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False
            wait_for(ready, timeout=60, what="the S3 server (moto) to answer", every=0.3)
            yield {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": url}
    finally:
        shutil.rmtree(root, ignore_errors=True)


class PrefectServer:
    def __init__(self, url: str, home: Path, database: str):
        self.url = url.rstrip("/")
        self.database = database  # the server's PostgreSQL, as a SQLAlchemy URL
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

    def sql(self, query: str) -> list[str]:
        """Rows (tab-separated) of ``query`` run in the server's own PostgreSQL database with psql."""
        address = self.database.split("@", 1)[1]  # host:port/db
        host_port, db = address.split("/", 1)
        host, port = host_port.split(":")
        out = subprocess.run([str(postgres_bin() / "psql"), "-h", host, "-p", port, "-U", "postgres", "-d", db,
                              "-tAF", "\t", "-c", query], check=True, capture_output=True, text=True).stdout
        return out.splitlines()

    def events(self, prefix: str, limit: int = 20) -> list[dict]:
        """The server's newest events whose name starts with ``prefix`` (e.g. ``prefect.automation``)."""
        return self.post("/events/filter", {"filter": {"event": {"prefix": [prefix]},
                                                       "order": "DESC"}, "limit": limit})["events"]

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


