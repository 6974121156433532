"""The flow process keeps no finished task's payload: its memory does not grow with the number of
shard tasks a corpus makes (at 1M documents, ~200 a stage).

distributed logs the last messages of each connection for developers; each task's message holds the
task's parameters and the Prefect context shipped with it. At distributed's stock log length the
flow process (the client, and a LocalCluster's scheduler) kept 1,000 such messages a connection.
"""

from __future__ import annotations

import gc
from fractions import Fraction

from prefect import flow, task
from prefect_dask import DaskTaskRunner

MARK = 7919  # the denominator that tells this test's payloads from any other Fraction


@task
def shard(piece: Fraction) -> int:
    return piece.numerator


@flow
def stage(n_tasks: int) -> int:
    from refinery.flows.runtime import gather

    return sum(gather([shard.submit(Fraction(i, MARK)) for i in range(1, n_tasks + 1)], "shards"))


def live_payloads() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Fraction and o.denominator == MARK)


def test_a_finished_stage_leaves_none_of_its_task_payloads_in_the_flow_process(dask_address):
    from refinery.flows.runtime import DASK_LOG_LENGTH, dask_cluster
    from refinery.tasks.config import DaskConfig

    n_tasks = 150

    @flow
    def run() -> int:
        with dask_cluster(DaskConfig(), dask_address) as address:
            return stage.with_options(task_runner=DaskTaskRunner(address=address))(n_tasks)

    assert run() == n_tasks * (n_tasks + 1) // 2
    # the last few messages of each connection may stay (a short log), never the stage's tasks
    assert live_payloads() <= 3 * DASK_LOG_LENGTH < n_tasks
