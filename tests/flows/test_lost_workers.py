"""Every worker of the run's LocalCluster gone: the waiting tasks fail after the no-workers timeout,
so an unattended run ends failed with a message instead of waiting forever.

What made the workers go in the wild: a task message whose code no longer imported on the workers
(the code changed under a running flow). A worker that cannot unpickle a message from the
scheduler drops its connection and closes, and its nanny closes with it instead of starting another.
"""

from __future__ import annotations

import os

import pytest
from prefect import flow, task
from prefect_dask import DaskTaskRunner


def _rebuild(pid: int) -> "UnreadableOnWorkers":
    if os.getpid() != pid:
        raise ImportError("cannot import name 'GONE' (the code changed under the running flow)")
    return UnreadableOnWorkers()


class UnreadableOnWorkers:
    """Unpickles in the process that made it, fails with an ImportError anywhere else."""

    def __reduce__(self):
        return _rebuild, (os.getpid(),)


@task
def use(value: object) -> str:
    return "never runs"


@pytest.mark.slow
def test_a_run_whose_workers_all_left_fails_instead_of_waiting_forever(prefect_api):
    from refinery.flows.runtime import gather, local_cluster
    from refinery.tasks.config import DaskConfig

    @flow
    def doomed() -> list[str]:
        return gather([use.submit(UnreadableOnWorkers())], "doomed")

    with local_cluster(DaskConfig(n_workers=1, no_workers_timeout=5), api_url=prefect_api) as cluster:
        with pytest.raises(Exception, match="waiting without any running workers"):
            doomed.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))()
