"""Where things live inside a data home.

    <home>/catalog.duckdb                 the catalog (one writer: the flow process)
    <home>/runs/<run_id>/config.yaml      the config the run was started with
    <home>/runs/<run_id>/<stage>/...      Parquet shards, one folder per stage
    <home>/runs/<run_id>/<stage>/_SUCCESS.json   written last; a stage with it is finished
    <home>/runs/<run_id>/report.md|.html  the run report, plots in report_files/
    <home>/datasets/dataset=<name>/added_in=<run_id>/*.parquet   the documents a night published
    <home>/datasets/dataset=<name>/scored/added_in=<run_id>/   what the night's quality decided from
    <home>/datasets/dataset=<name>/index/  the dataset's dedup index (storage/dataset_index.py)
    <home>/models/dataset=<name>/promoted/  the dataset's promoted model (onnx/, README.md: its card)
    <home>/cache/                         derived model files shared by runs (de-quantized LLM)
    <home>/run.lock                       held (flock) by the process running a run in this home

A home in object storage (``home: s3://bucket/prefix``, :mod:`refinery.storage.location`) holds the
same tree under its prefix, except what must be a local file: the catalog (``catalog:``, a local
path), and beside it the run lock and the cache of derived model files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from refinery.storage.location import Location, is_remote, is_url, location
from refinery.tasks.exceptions import ConfigError, HomeBusyError

DEFAULT_HOME = Path("refinery-data")
HOME_ENV = "REFINERY_HOME"
CATALOG_FILE = "catalog.duckdb"
RUN_CONFIG_FILE = "config.yaml"
LOCK_FILE = "run.lock"


@dataclass(frozen=True)
class DataHome:
    root: Location
    # the catalog file when it does not live in the home (a home in object storage)
    catalog_file: Path | None = None

    @classmethod
    def resolve(cls, configured: str | os.PathLike[str] | None = None,
                catalog: str | os.PathLike[str] | None = None) -> "DataHome":
        """``REFINERY_HOME`` wins over the config file, which wins over ``./refinery-data``; a home in
        object storage needs ``catalog`` (a local path)."""
        chosen = os.environ.get(HOME_ENV) or configured or DEFAULT_HOME
        if is_url(str(chosen)):
            if catalog is None:
                raise ConfigError(f"home {chosen} is in object storage: set `catalog:` to a local path for the "
                                  "DuckDB catalog (e.g. ./refinery-catalog/catalog.duckdb)")
            return cls(location(str(chosen).rstrip("/")), Path(catalog).expanduser().resolve())
        return cls(Path(chosen).expanduser().resolve(),
                   Path(catalog).expanduser().resolve() if catalog is not None else None)

    @classmethod
    def at(cls, home: str | os.PathLike[str], catalog: str | os.PathLike[str] | None = None) -> "DataHome":
        """The home at ``home`` as :meth:`resolve` resolved it (a run's ``home`` and config's ``catalog``)."""
        return cls(location(home), Path(catalog).expanduser().resolve() if catalog else None)

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    @property
    def catalog_path(self) -> Path:
        return self.catalog_file if self.catalog_file is not None else self.root / CATALOG_FILE

    @property
    def local_dir(self) -> Path:
        """The home's local folder: the home itself, or the catalog's folder for a home in object storage."""
        return self.catalog_path.parent if self.remote else self.root

    @property
    def cache_dir(self) -> Path:
        return self.local_dir / "cache"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def run_config_path(self, run_id: str) -> Path:
        """The config a run was started with (``config.yaml`` in its folder)."""
        return self.run_dir(run_id) / RUN_CONFIG_FILE

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / f"dataset={dataset}"

    def dataset_docs_dir(self, dataset: str, version: str) -> Path:
        """Where the documents version ``version`` added to ``dataset`` are linked."""
        return self.dataset_dir(dataset) / f"added_in={version}"

    def dataset_scored_dir(self, dataset: str, version: str) -> Path:
        """Where a night's scored documents, attributes and dedup drops are linked (refilter reads them)."""
        return self.dataset_dir(dataset) / "scored" / f"added_in={version}"

    def dataset_semantic_dir(self, dataset: str, version: str) -> Path:
        """Where a night's semantic index (its semdedup centroids, settings and kept documents'
        clusters and embeddings) is linked: later nights' semdedup builds on it."""
        return self.dataset_dir(dataset) / "semantic" / f"added_in={version}"

    def dataset_index_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "index"

    def promoted_model_dir(self, dataset: str) -> Path:
        """The dataset's promoted model: a sentence-transformers folder with ``onnx/`` and a model card."""
        return self.root / "models" / f"dataset={dataset}" / "promoted"

    def stage_dir(self, run_id: str, stage: str) -> Path:
        return self.run_dir(run_id) / stage

    def ensure(self) -> "DataHome":
        if self.remote:
            self.local_dir.mkdir(parents=True, exist_ok=True)
            bucket = self.root.path.split("/")[0]
            if not self.root.fs.exists(bucket):  # a new bucket (MinIO's first run); never re-created
                self.root.fs.mkdir(bucket)
        else:
            (self.root / "runs").mkdir(parents=True, exist_ok=True)
        return self

    @contextlib.contextmanager
    def run_lock(self, holder: str) -> Iterator[None]:
        """Hold the home's run lock while a run (or refilter) writes; fail at once if it is held.

        An OS file lock, so it is released when its process dies: a run whose row still says
        ``running`` while nobody holds the lock was killed (see :meth:`lock_holder`).
        """
        self.ensure()
        fd = os.open(self.local_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
                raise HomeBusyError(f"{other} is running in {self.root} (pid in {self.local_dir / LOCK_FILE}); "
                                    "wait for it to finish, or use another data home") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{holder} (pid {os.getpid()})".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def lock_holder(self) -> str | None:
        """Who holds the run lock right now (None: no live run in this home)."""
        path = self.local_dir / LOCK_FILE
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "a run"
        else:
            return None
        finally:
            os.close(fd)
