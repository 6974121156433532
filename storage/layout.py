"""Where things live inside a data home.

    <home>/catalog.duckdb                 the catalog (one writer: the flow process)
    <home>/runs/<run_id>/config.yaml      the config the run was started with
    <home>/runs/<run_id>/<stage>/...      Parquet shards, one folder per stage
    <home>/runs/<run_id>/<stage>/_SUCCESS.json   written last; a stage with it is finished
    <home>/runs/<run_id>/report.md|.html  the run report, plots in report_files/
    <home>/cache/                         derived model files shared by runs (de-quantized LLM)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("refinery-data")
HOME_ENV = "REFINERY_HOME"
CATALOG_FILE = "catalog.duckdb"


@dataclass(frozen=True)
class DataHome:
    root: Path

    @classmethod
    def resolve(cls, configured: str | os.PathLike[str] | None = None) -> "DataHome":
        """``REFINERY_HOME`` wins over the config file, which wins over ``./refinery-data``."""
        chosen = os.environ.get(HOME_ENV) or configured or DEFAULT_HOME
        return cls(Path(chosen).expanduser().resolve())

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def stage_dir(self, run_id: str, stage: str) -> Path:
        return self.run_dir(run_id) / stage

    def ensure(self) -> "DataHome":
        (self.root / "runs").mkdir(parents=True, exist_ok=True)
        return self
