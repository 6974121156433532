"""Every task has a timeout; on Dask workers (threads) Prefect warns on every task run that it can
only enforce it between blocking calls. Refinery keeps that one warning out of the logs, on the
flow process and on every worker of the cluster, and nothing else."""

from __future__ import annotations

import logging

from prefect import flow

from refinery.flows.runtime import THREAD_TIMEOUT_WARNING, dask_cluster, quiet_thread_timeout_warnings
from refinery.tasks.config import DaskConfig


# Prefect 3.8.8's own text (task_engine.py, run_context)
PREFECT_WARNING = ("Timeout of %s seconds configured for this task, but the task is running in a worker thread. "
                   "Timeouts in worker threads cannot ...")


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("prefect.task_runs", logging.WARNING, __file__, 1, msg, None, None)


def test_only_the_thread_timeout_warning_is_kept_out():
    quiet_thread_timeout_warnings()
    quiet_thread_timeout_warnings()  # installed once however often it is asked
    logger = logging.getLogger("prefect.task_runs")
    assert len([f for f in logger.filters if type(f).__name__ == "_ThreadTimeoutWarnings"]) == 1
    assert not logger.filter(_record(PREFECT_WARNING))
    assert THREAD_TIMEOUT_WARNING in "running in a worker thread"
    assert logger.filter(_record("Task run failed with exception: TaskRunTimeoutError"))
    assert logger.filter(_record("Finished in state Completed()"))


def _worker_filters() -> list[str]:
    return [type(f).__name__ for f in logging.getLogger("prefect.task_runs").filters]


def test_every_worker_of_an_existing_cluster_gets_the_filter(dask_address, prefect_api):
    from distributed import Client

    @flow
    def probe() -> None:
        with dask_cluster(DaskConfig(), dask_address):
            pass

    probe()
    with Client(dask_address, set_as_default=False) as client:
        answers = client.run(_worker_filters)
    assert answers and all("_ThreadTimeoutWarnings" in names for names in answers.values())
