"""Failures reach a person: `refinery serve --alert-webhook` sets up a Prefect automation, and a
scheduled night that fails POSTs its error and a link to its report to a webhook receiver started
on loopback, through the Prefect server's own triggers and its Webhook block."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.services.services import BIN, WebhookReceiver, log_of, started, wait_for, write_config

RUN_TIMEOUT = 600


def test_a_failed_scheduled_night_posts_its_error_and_report_link(prefect_server, user_corpus, tmp_path):
    missing = tmp_path / "no-such-positives.txt"  # the night fails in quality, after ingest and dedup
    config = write_config(tmp_path, user_corpus, quality={"classifier": {"enabled": True, "positives": str(missing)}})
    name = "alerting-nightly"
    with WebhookReceiver() as hook:
        argv = [str(BIN / "refinery"), "serve", "--interval", "5", "--config", str(config), "--name", name,
                "--alert-webhook", f"{hook.url}/chat/hook"]
        with started("refinery-serve-alerts", argv, cwd=tmp_path, env=prefect_server.env()) as proc:
            dep = wait_for(lambda: proc.poll() is None and prefect_server.deployment(name), timeout=180,
                           what="`refinery serve --alert-webhook` to register its deployment")
            # serve registers the deployment, then the automation that names it, then serves
            (automation,) = wait_for(lambda: [a for a in prefect_server.post("/automations/filter", {})
                                              if a["name"] == f"refinery: {name} failed"], timeout=60,
                                     what="the alert automation")
            assert automation["enabled"]

            def first_failed():
                assert proc.poll() is None, log_of("refinery-serve-alerts")[-3000:]
                runs = [r for r in prefect_server.flow_runs(dep["id"]) if r["state_type"] in ("FAILED", "CRASHED")]
                return runs[0] if runs else None

            final = wait_for(first_failed, timeout=RUN_TIMEOUT, what="the first scheduled night to fail", every=2)
            prefect_server.post(f"/deployments/{dep['id']}/pause_deployment")
            assert final["auto_scheduled"] and final["state_type"] == "FAILED"

            def its_call():
                return [c for c in hook.received if final["id"] in c["body"]]

            (call,) = wait_for(its_call, timeout=120, what="the automation to call the webhook", every=2,
                               explain=lambda: f"received: {hook.received}\nautomation events: "
                               f"{prefect_server.events('prefect.automation')}\nthe deployment: {dep['id']}; failed "
                               f"runs' events: {prefect_server.events('prefect.flow-run.Failed', 3)}")
    assert call["path"] == "/chat/hook"
    body = json.loads(call["body"])
    assert body["flow_run_id"] == final["id"] and body["flow_run"] == final["name"]
    assert body["deployment"] == name and body["state"] == "Failed"
    assert "no-such-positives" in body["message"]  # the run's error, as the stage raised it
    assert final["id"] in body["url"] and body["report"].startswith(body["url"])
    assert "no-such-positives" in body["text"] and body["report"] in body["text"]  # Slack shows "text"


def test_a_webhook_that_is_neither_a_url_nor_a_saved_block_is_a_one_line_error(prefect_server, user_corpus, tmp_path):
    config = write_config(tmp_path, user_corpus, schedule={"alert_webhook": "no-such-block"})
    argv = [str(BIN / "refinery"), "deploy", "--config", str(config), "--name", "alert-typo", "--pool", "alert-typo"]
    done = subprocess.run(argv, cwd=tmp_path, env=prefect_server.env(COLUMNS="200"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "'no-such-block' is neither an http(s) URL nor the name of a saved Prefect Webhook block" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert prefect_server.deployment("alert-typo") is None  # checked before anything was registered


@pytest.fixture
def saved_block(prefect_server, tmp_path):
    """A Webhook block saved by the user (as in the UI), so the URL never appears in a config."""
    def save(url: str, name: str) -> None:
        code = f"from prefect.blocks.webhook import Webhook; Webhook(url={url!r}).save({name!r}, overwrite=True)"
        subprocess.run([str(BIN / "python"), "-c", code], cwd=tmp_path, env=prefect_server.env(), check=True,
                       timeout=120)
    return save


def test_deploy_with_a_saved_webhook_block_alerts_on_that_deployment_only(prefect_server, user_corpus, tmp_path,
                                                                          saved_block):
    """`deploy` names a saved block; the automation matches its own deployment's runs, not another's."""
    saved_block("http://127.0.0.1:9/never-called", "team-chat")
    config = write_config(tmp_path, user_corpus, schedule={"alert_webhook": "team-chat"})
    argv = [str(BIN / "refinery"), "deploy", "--config", str(config), "--name", "alert-block", "--pool", "alert-block"]
    done = subprocess.run(argv, cwd=tmp_path, env=prefect_server.env(COLUMNS="200"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'team-chat'" in done.stdout
    dep = prefect_server.deployment("alert-block")
    (automation,) = [a for a in prefect_server.post("/automations/filter", {}) if a["name"] == "refinery: alert-block failed"]
    assert automation["trigger"]["match_related"] == {"prefect.resource.id": f"prefect.deployment.{dep['id']}"}
    assert set(automation["trigger"]["expect"]) == {"refinery.nightly.failed", "prefect.flow-run.Crashed"}
    (action,) = automation["actions"]
    block = prefect_server.get(f"/block_documents/{action['block_document_id']}")
    assert block["name"] == "team-chat"
    # deploying again replaces the automation instead of adding a second one
    subprocess.run(argv, cwd=tmp_path, env=prefect_server.env(), capture_output=True, timeout=300, check=True)
    assert len([a for a in prefect_server.post("/automations/filter", {})
                if a["name"] == "refinery: alert-block failed"]) == 1
