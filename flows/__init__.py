"""Prefect flows: one per stage, chained by ``nightly``."""

import os

# Offline machines: Prefect's telemetry errors at every server start unless it is switched off.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# `refinery run` without PREFECT_API_URL starts a temporary server. Its first start on a new
# machine creates and migrates the database, which takes longer than Prefect's 20 s on 2 cores
# (a fresh clone's `make run` failed with "Timed out while attempting to connect").
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
