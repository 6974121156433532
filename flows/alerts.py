"""Failures that reach a person: a Prefect automation that calls a webhook when a run of the nightly
deployment fails or crashes (`refinery serve`/`deploy --alert-webhook`, or `schedule.alert_webhook`).

The webhook is Prefect's own Webhook block: either one the user saved (in the UI or with
``Webhook(url=...).save(name)``, so the URL, a secret for Slack and the like, is kept by Prefect
and never written in a config), or a URL given here, saved as the block ``refinery-alert-<deployment>``.
Two events fire it:

- ``refinery.nightly.failed``, emitted by the nightly flow itself when it fails (its ``on_failure``
  hook, :func:`announce_failure`), with the state's name and message. Prefect's own
  ``prefect.flow-run.Failed`` event is not used: the server's scheduler creates scheduled runs
  without an event for their first state, and the triggers service holds every later state event
  of such a run for 15 minutes waiting for it (``PRECEDING_EVENT_LOOKBACK``), so a failed
  scheduled night would be reported a quarter of an hour late. An event of our own follows
  nothing and is evaluated at once.
- ``prefect.flow-run.Crashed``: a flow process that died without running its hooks (killed,
  out of memory). For a scheduled run that alert comes with the same 15-minute delay.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

# The POSTed body, a Jinja template Prefect renders on the server: Slack's incoming-webhook shape
# ("text") and the fields a receiver can route on. The run's page in the UI holds its report (the
# run-report artifact, written for failed runs too).
# (the state and message come from Refinery's event, else, for a crash, from the run itself)
PAYLOAD = """{% set url = (flow_run|ui_url) or "" %}{% set deployment_name = deployment.name or "" %}\
{% set state = event.payload.state or flow_run.state.name or "" %}\
{% set message = event.payload.message or flow_run.state.message or "" %}{
  "text": {{ ("Refinery nightly run " ~ flow_run.name ~ " of deployment " ~ deployment_name ~ " " ~ state ~ ": "
              ~ (message or "no message") ~ (" Report: " ~ url ~ "?tab=Artifacts" if url else "")) | tojson }},
  "flow_run_id": "{{ flow_run.id }}",
  "flow_run": {{ (flow_run.name or "") | tojson }},
  "deployment": {{ deployment_name | tojson }},
  "state": {{ state | tojson }},
  "message": {{ message | tojson }},
  "url": {{ url | tojson }},
  "report": {{ (url ~ "?tab=Artifacts" if url else "") | tojson }}
}"""

FAILED_EVENT = "refinery.nightly.failed"
FAILED_EVENTS = {FAILED_EVENT, "prefect.flow-run.Crashed"}


def announce_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """The nightly flow's ``on_failure`` hook: emit :data:`FAILED_EVENT` for the run (and its
    deployment, when it has one). Never raises: a hook's error must not hide the run's own."""
    from prefect.events import emit_event

    try:
        related = [{"prefect.resource.id": f"prefect.flow.{flow_run.flow_id}", "prefect.resource.role": "flow",
                    "prefect.resource.name": flow.name}]
        if flow_run.deployment_id:
            related.append({"prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                            "prefect.resource.role": "deployment"})
        emit_event(event=FAILED_EVENT, resource={"prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                                                 "prefect.resource.name": flow_run.name},
                   related=related, payload={"state": state.name, "message": state.message or ""})
    except Exception:  # noqa: BLE001 (reported, never raised)
        logging.getLogger(__name__).exception("could not emit %s for flow run %s", FAILED_EVENT, flow_run.id)


def automation_name(deployment: str) -> str:
    return f"refinery: {deployment} failed"


def _is_url(webhook: str) -> bool:
    return bool(re.match(r"^https?://", webhook, re.IGNORECASE))


async def _webhook_block_id(webhook: str, deployment: str) -> tuple[UUID, str]:
    """The id and name of the Webhook block to call: ``webhook`` is a URL (saved as a block of the
    deployment's) or the name of a saved Webhook block."""
    from prefect.blocks.webhook import Webhook

    if _is_url(webhook):
        name = "refinery-alert-" + re.sub(r"[^a-z0-9-]+", "-", deployment.lower()).strip("-")
        block_id = await Webhook(url=webhook).save(name, overwrite=True)
        return block_id, name
    block = await _load(Webhook, webhook)
    return block._block_document_id, webhook


async def check_webhook(webhook: str) -> None:
    """Raise ValueError, before anything is registered, when ``webhook`` names no saved Webhook block."""
    from prefect.blocks.webhook import Webhook

    if not _is_url(webhook):
        await _load(Webhook, webhook)


async def _load(webhook_type, name: str):
    try:
        return await webhook_type.load(name)
    except ValueError as exc:
        raise ValueError(f"--alert-webhook {name!r} is neither an http(s) URL nor the name of a saved Prefect "
                         "Webhook block") from exc


async def alert_on_failure(deployment_id: UUID, deployment: str, webhook: str) -> str:
    """Create (or replace) the automation that calls ``webhook`` when a run of the deployment fails
    or crashes; returns a line saying what was set up."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    block_id, block_name = await _webhook_block_id(webhook, deployment)
    name = automation_name(deployment)
    async with get_client() as client:
        for old in await client.read_automations_by_name(name):
            await client.delete_automation(old.id)
    automation = await Automation(
        name=name,
        description=f"Calls the Webhook block {block_name!r} when a run of deployment {deployment} fails or crashes.",
        trigger=EventTrigger(
            expect=FAILED_EVENTS,
            match_related=ResourceSpecification({"prefect.resource.id": f"prefect.deployment.{deployment_id}"}),
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
    ).acreate()
    return f"a failed or crashed run calls the Webhook block {block_name!r} (automation {automation.name!r})"
