"""Separately started services: `prefect server start` on a free loopback port with its state in a
PostgreSQL server of its own, as production Prefect servers keep it (one per test session, ~20 s
to start), and a user's corpus that is not BBC-shaped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services.services import (BIN, PrefectServer, clean_env, free_port, log_of, postgresql, started,
                                     wait_for)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port, its database in PostgreSQL."""
    home = tmp_path_factory.mktemp("prefect-server")
    with postgresql("postgres") as database:
        yield from _prefect_server(home, database)


def _prefect_server(home: Path, database: str) -> Iterator[PrefectServer]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        PREFECT_HOME=str(home), PREFECT_UI_API_URL=f"{url}/api", PREFECT_UI_URL=url, PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port), PREFECT_API_DATABASE_CONNECTION_URL=database,
        # the server's own scheduler: look for new deployments and due runs every few seconds
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
    )
    with started("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=home, env=env) as proc:
        def healthy():
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited ({proc.returncode}):\n{log_of('prefect-server')[-3000:]}")
            try:
                return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(healthy, timeout=120, what="prefect server start")
        yield PrefectServer(url, home, database)


@pytest.fixture(scope="session")
def user_corpus(tmp_path_factory) -> Path:
    """A JSONL corpus that is not BBC-shaped: no titles, ids of the user's own, one broken line."""
    from tests.fixtures.corpora import synthetic_chunk

    path = tmp_path_factory.mktemp("user-corpus") / "notes.jsonl"
    texts = synthetic_chunk(0, 160, chunk_docs=160, seed=3).texts
    lines = [json.dumps({"note_id": f"n{i:04d}", "body": t}) for i, t in enumerate(texts)]
    lines.insert(17, '{"note_id": "broken", "body": ')
    path.write_text("\n".join(lines) + "\n")
    return path
