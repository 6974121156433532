"""Prefect flows: one per stage, chained by ``nightly``."""

import os

# Offline machines: Prefect's telemetry errors at every server start unless it is switched off.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
