"""How every bench prints its result: one JSON object on stdout, and the same in ``--json PATH``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_report(report: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
