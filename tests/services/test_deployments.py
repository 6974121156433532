"""The nightly deployment against a separately started `prefect server start`: the server's own
scheduler fires it (served by `refinery serve`, and deployed to a work pool with `refinery deploy`
and run by a `prefect worker`), the UI's Run button starts it, and the UI shows the run and its report.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from refinery.storage import Catalog
from tests.services.browser import Chromium
from tests.services.services import BIN, OUTPUT, log_of, started, wait_for, write_config

RUN_TIMEOUT = 420  # seconds a curation-only run may take on a loaded 2-core machine before the test fails


def _scheduled_run(server, deployment_id: str) -> dict | None:
    runs = [r for r in server.flow_runs(deployment_id) if r["auto_scheduled"] and r["state_type"] != "SCHEDULED"]
    return runs[0] if runs else None


def _pause(server, deployment_id: str) -> None:
    """Stop the interval schedule after its first run, so runs do not pile up on two cores."""
    server.post(f"/deployments/{deployment_id}/pause_deployment")


@pytest.fixture(scope="module")
def served(prefect_server, user_corpus, tmp_path_factory):
    """`refinery serve --interval 30` started from an unrelated working directory."""
    root = tmp_path_factory.mktemp("served")
    config = write_config(root, user_corpus)
    cwd = root / "elsewhere"
    cwd.mkdir()
    argv = [str(BIN / "refinery"), "serve", "--interval", "30", "--config", str(config), "--name", "served-nightly"]
    with started("refinery-serve", argv, cwd=cwd, env=prefect_server.env()) as proc:
        def registered():
            if proc.poll() is not None:
                pytest.fail(f"`refinery serve` exited ({proc.returncode}):\n{log_of('refinery-serve')[-3000:]}")
            return prefect_server.deployment("served-nightly")
        deployment = wait_for(registered, timeout=180, what="`refinery serve` to register its deployment")
        yield {"deployment": deployment, "catalog": Catalog(root / "home" / "catalog.duckdb")}


def test_served_schedule_fires_and_the_run_completes(served, prefect_server):
    dep = served["deployment"]
    assert dep["entrypoint"] == "refinery.flows.nightly.nightly"
    assert [s["schedule"]["interval"] for s in dep["schedules"]] == [30.0]
    run = wait_for(lambda: _scheduled_run(prefect_server, dep["id"]), timeout=180,
                   what="the server's scheduler to create a run that the served process picks up")
    _pause(prefect_server, dep["id"])
    final = prefect_server.wait_final(run["id"], timeout=RUN_TIMEOUT)
    print(f"scheduled run (served): {final['total_run_time']:.1f} s, due {final['expected_start_time']}, "
          f"started {final['start_time']}")
    assert final["state_type"] == "COMPLETED", log_of("refinery-serve")[-4000:]
    assert final["auto_scheduled"] and final["deployment_id"] == dep["id"]
    # the run is in the catalog with balanced books: 160 notes and a broken line
    (row,) = served["catalog"].query("SELECT * FROM runs WHERE status = 'completed' ORDER BY started_at LIMIT 1").to_pylist()
    assert row["docs_in"] == 161 and row["docs_rejected"] == 1
    assert row["docs_in"] == row["docs_kept"] + row["docs_dropped"] + row["docs_rejected"]


def test_prefect_cli_lists_the_deployment_and_its_runs(served, prefect_server):
    env = prefect_server.env(COLUMNS="250")  # rich would cut the table's columns at 80
    ls = subprocess.run([str(BIN / "prefect"), "deployment", "ls"], env=env, capture_output=True, text=True, timeout=120)
    assert ls.returncode == 0, ls.stdout + ls.stderr
    assert "served-nightly" in ls.stdout
    # the list is newest expected start first, 15 by default: the schedule's future runs and the
    # nightly's subflows would push a finished run off it, so ask as a user would for the finished ones
    runs = subprocess.run([str(BIN / "prefect"), "flow-run", "ls", "--flow-name", "nightly",
                           "--state-type", "COMPLETED", "--limit", "100"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert runs.returncode == 0, runs.stdout + runs.stderr
    completed = [r for r in prefect_server.flow_runs(served["deployment"]["id"]) if r["state_type"] == "COMPLETED"]
    assert completed and all(r["name"] in runs.stdout for r in completed)


@pytest.fixture(scope="module")
def ui_run(served, prefect_server):
    """A run created through the endpoint the UI's Run button calls."""
    dep = served["deployment"]
    created = prefect_server.post(f"/deployments/{dep['id']}/create_flow_run", {})
    final = prefect_server.wait_final(created["id"], timeout=RUN_TIMEOUT)
    return {"created": created, "final": final}


def test_run_started_from_the_ui_completes_and_publishes_its_report(ui_run, prefect_server):
    final = ui_run["final"]
    print(f"UI-triggered run: {final['total_run_time']:.1f} s")
    assert final["state_type"] == "COMPLETED", log_of("refinery-serve")[-4000:]
    assert not final["auto_scheduled"]
    (report,) = [a for a in prefect_server.artifacts(final["id"]) if a["key"] == "run-report"]
    assert report["type"] == "markdown"
    assert "## Accounting" in report["data"] and "docs_in" in report["data"]
    # the server keeps its state in PostgreSQL: the run and its report are rows there
    assert prefect_server.sql(f"SELECT state_type FROM flow_run WHERE id = '{final['id']}'") == ["COMPLETED"]
    assert prefect_server.sql(f"SELECT key FROM artifact WHERE flow_run_id = '{final['id']}' AND key = 'run-report'")


def test_a_ui_run_may_not_point_the_deployment_at_another_config(served, prefect_server, tmp_path):
    """The Run button takes any parameters: a config outside the deployment's folder is refused."""
    stray = tmp_path / "stray.yaml"
    stray.write_text(f"home: {tmp_path / 'stray-home'}\n")
    dep = served["deployment"]
    created = prefect_server.post(f"/deployments/{dep['id']}/create_flow_run",
                                  {"parameters": {"config_path": str(stray)}})
    final = prefect_server.wait_final(created["id"], timeout=RUN_TIMEOUT)
    assert final["state_type"] == "FAILED"
    assert "is outside the folders this deployment may read config from" in final["state"]["message"]
    assert not (tmp_path / "stray-home").exists()


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium`; "
                    ".ci/run installs it), so the UI is not rendered")
def test_the_ui_renders_the_flow_run_and_the_report(ui_run, prefect_server, tmp_path):
    final = ui_run["final"]
    (report,) = [a for a in prefect_server.artifacts(final["id"]) if a["key"] == "run-report"]
    with Chromium(CHROMIUM, tmp_path / "profile") as browser:
        page = browser.open(f"{prefect_server.url}/runs/flow-run/{final['id']}")
        text = page.wait_for_text([final["name"], "nightly", "Completed"], timeout=90)
        page.screenshot(OUTPUT / "ui-flow-run.png")
        assert final["name"] in text
        page = browser.open(f"{prefect_server.url}/artifacts/artifact/{report['id']}")
        text = page.wait_for_text(["Accounting", "docs_in"], timeout=90)
        page.screenshot(OUTPUT / "ui-run-report.png")
        assert "Drops and rejects" in text
    assert (OUTPUT / "ui-flow-run.png").stat().st_size > 10_000


def test_deployed_to_a_work_pool_a_prefect_worker_runs_the_scheduled_run(prefect_server, user_corpus, tmp_path):
    config = write_config(tmp_path, user_corpus)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = prefect_server.env()
    deploy = subprocess.run([str(BIN / "refinery"), "deploy", "--pool", "refinery-test", "--interval", "30",
                             "--config", str(config), "--name", "pooled-nightly"],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    dep = prefect_server.deployment("pooled-nightly")
    assert dep["work_pool_name"] == "refinery-test"
    assert prefect_server.get("/work_pools/refinery-test")["type"] == "process"
    # one run at a time: a run due while the last is going waits for it
    assert dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    with started("prefect-worker", [str(BIN / "prefect"), "worker", "start", "--pool", "refinery-test"],
                 cwd=cwd, env=env):
        run = wait_for(lambda: _scheduled_run(prefect_server, dep["id"]), timeout=180,
                       what="the scheduled run to be picked up by the Prefect worker")
        _pause(prefect_server, dep["id"])
        final = prefect_server.wait_final(run["id"], timeout=RUN_TIMEOUT)
    print(f"scheduled run (work pool): {final['total_run_time']:.1f} s")
    assert final["state_type"] == "COMPLETED", log_of("prefect-worker")[-4000:]
    assert final["work_pool_name"] == "refinery-test"
    (row,) = Catalog(tmp_path / "home" / "catalog.duckdb").query("SELECT status, docs_in FROM runs").to_pylist()
    assert row == {"status": "completed", "docs_in": 161}


def test_the_shipped_prefect_yaml_deploys_the_nightly_on_its_cron(prefect_server, tmp_path):
    """`prefect deploy --all` from the project folder, as README says, registers what prefect.yaml holds."""
    import yaml

    from tests.services.services import ROOT

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"][0]
    env = prefect_server.env()
    pool = subprocess.run([str(BIN / "prefect"), "work-pool", "create", spec["work_pool"]["name"], "--type", "process"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    result = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    dep = prefect_server.deployment(spec["name"])
    assert dep["entrypoint"] == "refinery.flows.nightly.nightly" == spec["entrypoint"]
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in dep["schedules"]] == [("0 2 * * *", "UTC")]
    assert dep["parameters"] == {"config_path": None, "dask_address": None, "default_budget_minutes": 240}
    assert dep["work_pool_name"] == spec["work_pool"]["name"]
    assert dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "ENQUEUE"
