"""Every error Refinery raises on purpose, in one tree, so a caller knows what to catch.

    RefineryError                 the base: catch it to catch any of them
    ├── ConfigError               the config file is unreadable or invalid (also a ValueError)
    ├── InputError                what a command was asked to read cannot be used (also a ValueError)
    │   ├── QuerySetError         a query set of `evaluate.queries` is missing, malformed or judges no input
    │   └── RefilterError         a run cannot be re-decided: no finished quality stage, or the new
    │                             config changes scores, not only thresholds
    ├── CatalogError              the catalog refused a statement or cannot be opened
    │   └── HomeBusyError         another process holds the data home's run lock
    ├── ClusterError              the Dask cluster cannot run the work
    │   └── WorkerPreflightError  an existing cluster is unreachable, has no workers, or its
    │                             workers cannot import Refinery
    ├── ModelError                a model could not produce what was asked of it
    │   ├── GenerationError       an LLM endpoint failed for good (retries used up, or refused)
    │   └── OnnxExportError       a model's ONNX export does not reproduce its PyTorch embeddings
    ├── AccountingError           a run's books do not balance (a bug: every document in is kept,
    │                             dropped or rejected exactly once)
    └── DropRateError             a quality rule dropped more of the documents reaching it than
                                  `quality.guard` allows, and the guard's action is `fail`

`refinery` prints any of them as one line and exits with the code of its branch (see
:mod:`refinery.flows.cli`). The classes carry only a message; the message names what to fix.
This module imports nothing from the project, so any module can raise from it.
"""

from __future__ import annotations

__all__ = [
    "AccountingError",
    "CatalogError",
    "ClusterError",
    "ConfigError",
    "DropRateError",
    "GenerationError",
    "HomeBusyError",
    "InputError",
    "ModelError",
    "OnnxExportError",
    "QuerySetError",
    "RefilterError",
    "RefineryError",
    "WorkerPreflightError",
]


class RefineryError(Exception):
    """Base of every error Refinery raises on purpose."""


class ConfigError(RefineryError, ValueError):
    """The config file is unreadable or invalid; the message names the key and the problem."""


class InputError(RefineryError, ValueError):
    """What a command was asked to read (a query set, a run) cannot be used."""


class QuerySetError(InputError):
    """A user query set is missing, malformed, or none of its relevant ids is an input record."""


class RefilterError(InputError):
    """A run cannot be re-decided: no finished quality stage, or the new config changes how scores
    are computed, not only thresholds (a new run is needed)."""


class CatalogError(RefineryError):
    """The catalog refused a statement (not a read, not valid SQL) or cannot be opened."""


class HomeBusyError(CatalogError):
    """Another process holds the data home's run lock (a run, a refilter, a gc)."""


class ClusterError(RefineryError):
    """The Dask cluster cannot run the work."""


class WorkersLostError(ClusterError):
    """Every worker of an existing Dask cluster left in the middle of a stage and none came back
    within ``dask.worker_timeout``: the run fails naming the scheduler, instead of waiting forever."""


class WorkerPreflightError(ClusterError):
    """An existing Dask cluster cannot run Refinery's tasks: unreachable, no workers, or workers
    that cannot import Refinery. Raised before any stage starts, never a silent wait."""


class ModelError(RefineryError):
    """A model could not produce what was asked of it."""


class GenerationError(ModelError):
    """A request failed for good: its retries are used up, or the endpoint refused it."""


class OnnxExportError(ModelError):
    """The model folder could not be turned into a graph that reproduces its PyTorch embeddings."""


class AccountingError(RefineryError):
    """A run's books do not balance: some document is not kept, dropped or rejected exactly once."""


class DropRateError(RefineryError):
    """A quality rule dropped more than ``quality.guard.max_drop_share`` of the documents that reached
    it, under ``quality.guard.action: fail``. Raised after the quality stage wrote its outputs, so
    ``refinery refilter`` can re-decide the run from its stored scores."""
