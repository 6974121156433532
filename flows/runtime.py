"""What every stage flow shares: the run it belongs to, the Dask cluster, stage bookkeeping."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import queue
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from prefect import get_run_logger, task, unmapped
from prefect.futures import PrefectFuture, as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from refinery.storage import StageMarker
from refinery.tasks.config import DaskConfig
from refinery.tasks.embedding_tasks import embed_shard
from refinery.tasks.evaluate.sampling import sample_keys_run_name
from refinery.tasks.evaluate.shard_tasks import sample_keys, select_rows
from refinery.tasks.exceptions import WorkerPreflightError, WorkersLostError
from refinery.tasks.runs import RunSpec

T = TypeVar("T")


def run_stage(run: RunSpec, stage: str, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work(stage_dir)`` once: a stage whose marker exists returns its stored stats.

    ``work`` writes shards and registers them in the catalog; the marker is written after that,
    so a run killed anywhere before it redoes (idempotently) only the unfinished stage.
    """
    out = run.stage_dir(stage)
    marker = StageMarker(out)
    logger = get_run_logger()
    if (done := marker.read()) is not None:
        logger.info("stage %s of run %s already finished; reusing its outputs", stage, run.run_id)
        return done
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    stats = work(out)
    run.catalog.record_stage(run.run_id, stage, status="completed", started_at=started, stats=stats)
    marker.write(stats)
    return stats


# The stage running now under a budget: (stage, its start by time.monotonic, its planned minutes);
# the progress bars show it. One run at a time per process (the data home's run lock).
_stage_budget: list[tuple[str, float, float]] = []


@contextlib.contextmanager
def stage_budget(stage: str, planned_minutes: float | None) -> Iterator[None]:
    """Inside the block, progress bars show the minutes ``stage`` has taken of its planned minutes
    (nothing when there is no plan)."""
    if planned_minutes is None:
        yield
        return
    _stage_budget.append((stage, time.monotonic(), planned_minutes))
    try:
        yield
    finally:
        _stage_budget.pop()


def budget_progress() -> str:
    """"synthesize 3.2/8.0 min": the budgeted stage's minutes so far and planned; "" without a budget."""
    if not _stage_budget:
        return ""
    stage, started, planned = _stage_budget[-1]
    return f"{stage} {(time.monotonic() - started) / 60:.1f}/{planned:.1f} min"


class _BudgetColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(budget_progress(), style="progress.elapsed")


def gather(futures: Sequence[PrefectFuture[T]], description: str) -> list[T]:
    """Wait for task futures with a progress bar (with the stage's budget, when the run has one);
    results in submission order. On an existing cluster, raise :class:`WorkersLostError` when it has
    had no worker for ``dask.worker_timeout`` seconds while tasks wait (see :class:`WorkerWatch`)."""
    index = {f.task_run_id: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    watch = _WATCH.get()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               _BudgetColumn())
    with Progress(*columns, transient=False, disable=os.environ.get("REFINERY_NO_PROGRESS") == "1") as bar:
        job = bar.add_task(description, total=len(futures))
        if watch is None:
            for fut in as_completed(list(futures)):
                results[index[fut.task_run_id]] = fut.result()
                bar.advance(job)
            return results
        # on an existing cluster: a queue fed by each future's done-callback, read with a timeout
        # (Prefect's own timeouts in as_completed/wait raise through SIGALRM in the flow's thread,
        # also inside a later, unrelated wait)
        pending = {f.task_run_id: f for f in futures}
        finished: queue.SimpleQueue[PrefectFuture[T]] = queue.SimpleQueue()
        for fut in futures:
            fut.add_done_callback(finished.put)
        while pending:
            try:
                fut = finished.get(timeout=watch.every)
            except queue.Empty:  # no task finished for watch.every seconds
                watch.check(len(pending), len(futures))
                continue
            if pending.pop(fut.task_run_id, None) is not None:
                results[index[fut.task_run_id]] = _result(fut, watch, len(pending) + 1, len(futures))
                bar.advance(job)
    return results


def _result(fut: PrefectFuture[T], watch: "WorkerWatch", waiting: int, total: int) -> T:
    """A finished task's result. Its data may have lived on a worker that died since (distributed
    then computes it again, which waits for a worker): watched like the stage's other tasks."""
    while True:
        try:
            return fut.result(timeout=watch.every)
        except TimeoutError:
            if fut.wrapped_future.done():  # the task's own timeout, its result
                raise
            watch.check(waiting, total)


class WorkerWatch:
    """Watches an existing Dask cluster while a stage waits for its tasks. distributed itself waits
    forever for workers, unless the scheduler was started with a no-workers timeout; a stage whose
    workers all died would hang the night. Every ``every`` seconds without a finished task the watch
    counts the scheduler's workers; none for ``timeout`` seconds fails the stage."""

    def __init__(self, address: str, timeout: float):
        self.address, self.timeout = address, timeout
        self.every = min(30.0, max(1.0, timeout / 3))
        self._client: Any = None
        self._none_since: float | None = None

    def check(self, waiting: int, total: int) -> None:
        from distributed import Client

        if self._client is None:
            self._client = Client(self.address, timeout=self.timeout, set_as_default=False)
        if self._client.scheduler_info(n_workers=-1)["workers"]:
            self._none_since = None
            return
        now = time.monotonic()
        self._none_since = self._none_since or now
        if now - self._none_since >= self.timeout:
            raise WorkersLostError(
                f"every worker of the Dask scheduler at {self.address} has been gone for {now - self._none_since:.0f} s "
                f"(dask.worker_timeout) with {waiting} of the stage's {total} tasks unfinished: start workers "
                f"(`dask worker {self.address}`) and finish the run with `refinery run --resume <run id>`; "
                "the shards already written are kept")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


_WATCH: contextvars.ContextVar[WorkerWatch | None] = contextvars.ContextVar("refinery_worker_watch", default=None)


# -- corpus samples, pools and their embeddings on the workers (synthesize and evaluate) ----------

HOUR = 3600
# Shard work (a few shards' doc ids, a pool part, one part's embeddings): one retry, an hour or two.
sample_keys_task = task(sample_keys, name="sample-keys", task_run_name=sample_keys_run_name, retries=1,
                        timeout_seconds=HOUR)
select_rows_task = task(select_rows, name="select-rows", task_run_name="{out.name}", retries=1, timeout_seconds=HOUR)
embed_task = task(embed_shard, name="embed-shard", task_run_name="embed {shard.name} ({model_name})", retries=1,
                  timeout_seconds=2 * HOUR)
_ON_WORKERS = {t.fn: t for t in (sample_keys_task, select_rows_task, embed_task)}


def on_workers(fn: Callable[..., T], description: str, *, each: Mapping[str, Sequence[Any]],
               same: Mapping[str, Any]) -> list[T]:
    """The :class:`tasks.evaluate.sampling.MapTasks` the stage flows give the sampling helpers:
    ``fn``'s task mapped on the workers, with a progress bar."""
    return gather(_ON_WORKERS[fn].map(**each, **{k: unmapped(v) for k, v in same.items()}), description)


# distributed keeps the last `distributed.admin.low-level-log-length` messages of every connection
# (and transitions, events) for developers to look at. A submitted task's message holds its whole
# payload, the Prefect context with the stage's Flow included (~0.3 MB a task), so at the stock
# 1,000 the flow process kept every task of a stage: +64 MB a stage of 200 shard tasks, the growth
# of a 1M-document run. Refinery keeps 20 unless you set another length.
DASK_STOCK_LOG_LENGTH = 1000
DASK_LOG_LENGTH = 20


def short_dask_logs() -> dict[str, Any]:
    """The dask config Refinery's flow process and LocalCluster run under: distributed's
    developer logs at :data:`DASK_LOG_LENGTH` messages, unless configured otherwise."""
    import dask

    key = "distributed.admin.low-level-log-length"
    return {key: DASK_LOG_LENGTH} if dask.config.get(key, None) == DASK_STOCK_LOG_LENGTH else {}


@contextlib.contextmanager
def local_cluster(cfg: DaskConfig, *, api_url: str | None = None) -> Iterator[Any]:
    """A LocalCluster of ``cfg``'s worker processes (``n_workers``, ``threads_per_worker``,
    ``memory_limit``) that report task runs to the Prefect API at ``api_url``.

    Tasks fail (``NoWorkerError``, so the stage and the run fail with a message) once the
    cluster has had no worker for ``cfg.no_workers_timeout`` seconds (each nanny closes its worker
    for good when the worker cannot read a message from the scheduler).
    """
    import dask
    from distributed import LocalCluster

    env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    # distributed starts workers with MALLOC_TRIM_THRESHOLD_=65536, which returns every freed
    # batch-sized numpy buffer to the OS and makes signature hashing ~3x slower; keep glibc's default
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                          "distributed.scheduler.no-workers-timeout": f"{cfg.no_workers_timeout}s",
                          **short_dask_logs()}), LocalCluster(
        env=env, n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker, processes=True,
        memory_limit=cfg.memory_limit, dashboard_address=None,
    ) as cluster:
        yield cluster


# What a worker must import to run every stage's shard tasks (imported once, before the first stage).
WORKER_IMPORTS = ", ".join(f"refinery.tasks.{m}" for m in (
    "ingest.shard_tasks", "dedup.shard_tasks", "quality.shard_tasks", "embedding_tasks",
    "synthesize.shard_tasks", "train.shard_tasks", "evaluate.shard_tasks"))


def preflight(address: str, timeout: float) -> list[str]:
    """Check an existing cluster before the run uses it; the addresses of its workers.

    Waits up to ``timeout`` seconds for a first worker, then has every worker import Refinery's
    task modules. The check is sent as source text (``exec``), so a worker without Refinery
    answers with its ImportError instead of failing to unpickle the check itself.
    """
    from distributed import Client

    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except OSError as exc:
        raise WorkerPreflightError(f"cannot reach the Dask scheduler at {address} within {timeout:.0f} s: {exc}") from exc
    with client:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise WorkerPreflightError(
                f"the Dask scheduler at {address} has no workers (none joined within {timeout:.0f} s): start "
                f"some with `dask worker {address}` where Refinery is installed") from None
        answers = client.run(exec, f"import {WORKER_IMPORTS}", on_error="return")
        names = {w: info.get("name", w) for w, info in client.scheduler_info()["workers"].items()}
        bad = {w: a for w, a in answers.items() if isinstance(a, BaseException)}
        if bad:
            lines = "; ".join(f"worker {names.get(w, w)} ({w}): {type(e).__name__}: {e}" for w, e in sorted(bad.items()))
            raise WorkerPreflightError(
                f"{len(bad)} of {len(answers)} Dask workers at {address} cannot import Refinery ({lines}); "
                "install Refinery (the same version as the flow's) in the workers' environment")
        return sorted(answers)


# Every task has a timeout; on a Dask worker tasks run in threads, where Prefect can only enforce it
# between blocking calls, and says so in a warning on every task run (~100 lines a run, in the
# terminal and the UI's logs). Refinery knows, and keeps that one message out of its logs.
THREAD_TIMEOUT_WARNING = "running in a worker thread"


class _ThreadTimeoutWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return THREAD_TIMEOUT_WARNING not in str(record.msg)


def quiet_thread_timeout_warnings() -> None:
    """Keep Prefect's per-task-run warning about timeouts in worker threads out of the task run logs."""
    logger = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, _ThreadTimeoutWarnings) for f in logger.filters):
        logger.addFilter(_ThreadTimeoutWarnings())


def _quiet_workers(address: str) -> None:
    """Install :func:`quiet_thread_timeout_warnings` on every worker of the cluster, now and on those
    that join later (a Dask worker plugin)."""
    from distributed import Client
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietThreadTimeouts(WorkerPlugin):
        name = "refinery-quiet-thread-timeouts"

        def setup(self, worker: Any) -> None:
            from refinery.flows.runtime import quiet_thread_timeout_warnings

            quiet_thread_timeout_warnings()

    with Client(address, set_as_default=False) as client:
        client.register_plugin(QuietThreadTimeouts())


@contextlib.contextmanager
def dask_cluster(cfg: DaskConfig, address: str | None = None) -> Iterator[str]:
    """Yield a scheduler address: the one given (checked by :func:`preflight`), or a LocalCluster
    started for this run; the Dask clients the stages start inside it keep short logs
    (:func:`short_dask_logs`)."""
    import dask

    quiet_thread_timeout_warnings()
    with dask.config.set(short_dask_logs()):
        yield from _cluster_address(cfg, address)


def _cluster_address(cfg: DaskConfig, address: str | None) -> Iterator[str]:
    address = address or cfg.address
    if address:
        workers = preflight(address, cfg.worker_timeout)
        get_run_logger().info("Dask cluster %s: %d workers can run Refinery's tasks", address, len(workers))
        _quiet_workers(address)
        watch = WorkerWatch(address, cfg.worker_timeout)
        token = _WATCH.set(watch)
        try:
            yield address
        finally:
            _WATCH.reset(token)
            watch.close()
        return
    from prefect.context import get_run_context

    # Workers must report task runs to the same Prefect API as the flow, also when that API is a
    # temporary server this process started: hand its address to the worker processes.
    api_url = str(get_run_context().client.api_url)
    with local_cluster(cfg, api_url=api_url) as cluster:
        _quiet_workers(cluster.scheduler_address)
        yield cluster.scheduler_address
