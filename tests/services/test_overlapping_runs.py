"""A served schedule shorter than a run, as a new user sets one up: runs of the deployment never
overlap (they would share the data home's run lock, and the second would fail with HomeBusyError,
an alarm for nothing). With `--overlap wait` the run that came due waits and then completes; with
`--overlap skip` it is cancelled. Either way no run fails, and the failure alert (a webhook) is
never called: a skipped run is no alarm."""

from __future__ import annotations

import pytest

from tests.services.services import BIN, WebhookReceiver, log_of, started, wait_for, write_config

INTERVAL = "4"  # seconds; a curation-only run of the user corpus takes tens of seconds
RUN_TIMEOUT = 600
FAILED = ("FAILED", "CRASHED")


@pytest.mark.parametrize("overlap", ["wait", "skip"])
def test_a_schedule_shorter_than_a_run_never_overlaps_and_never_fails(overlap, prefect_server, user_corpus, tmp_path):
    config = write_config(tmp_path, user_corpus)
    name = f"overlap-{overlap}"
    hook = WebhookReceiver()
    argv = [str(BIN / "refinery"), "serve", "--interval", INTERVAL, "--overlap", overlap, "--config", str(config),
            "--name", name, "--alert-webhook", f"{hook.url}/alerts"]
    with hook, started(f"refinery-serve-{name}", argv, cwd=tmp_path, env=prefect_server.env()) as proc:
        dep = wait_for(lambda: proc.poll() is None and prefect_server.deployment(name), timeout=180,
                       what="`refinery serve` to register its deployment")
        assert dep["global_concurrency_limit"]["limit"] == 1
        assert dep["concurrency_options"]["collision_strategy"] == {"wait": "ENQUEUE", "skip": "CANCEL_NEW"}[overlap]

        def settled():
            assert proc.poll() is None, log_of(f"refinery-serve-{name}")[-3000:]
            runs = prefect_server.flow_runs(dep["id"])
            failed = [r for r in runs if r["state_type"] in FAILED]
            assert not failed, (failed[0]["state"], log_of(f"refinery-serve-{name}")[-4000:])
            done = [r for r in runs if r["state_type"] == "COMPLETED"]
            cancelled = [r for r in runs if r["state_type"] == "CANCELLED"]
            enough = len(done) >= 2 if overlap == "wait" else (done and cancelled)
            return runs if enough else None

        runs = wait_for(settled, timeout=RUN_TIMEOUT, what=f"two runs to settle with --overlap {overlap}", every=2)
        prefect_server.post(f"/deployments/{dep['id']}/pause_deployment")
        assert not hook.received, hook.received
    ran = sorted((r for r in runs if r["total_run_time"] > 0), key=lambda r: r["start_time"])
    # one run at a time: each started after the one before it ended
    for before, after in zip(ran, ran[1:]):
        assert before["end_time"] and after["start_time"] >= before["end_time"], (before["name"], after["name"])
    if overlap == "skip":
        # a skipped run was due while another was running, and never ran
        skipped = [r for r in runs if r["state_type"] == "CANCELLED"]
        assert all(r["total_run_time"] == 0 for r in skipped)
