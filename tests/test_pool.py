"""stages.common.pool.ordered_map: results in the tasks' order, whatever the workers' timing."""

from __future__ import annotations

import os
import time

import pytest

from stages.common import pool


def _slow_square(task: tuple[int, float]) -> tuple[int, int]:
    number, delay = task
    time.sleep(delay)
    return number, os.getpid()


def test_results_keep_the_tasks_order_when_later_tasks_finish_first() -> None:
    # The first tasks sleep longest, so a map that yielded in completion order would reverse them.
    tasks = [(n, 0.02 * (24 - n) / 24) for n in range(24)]
    results = list(pool.ordered_map(_slow_square, tasks, workers=3, chunksize=1))
    assert [number for number, _ in results] == list(range(24))
    assert len({pid for _, pid in results}) > 1  # really ran in more than one process
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.parametrize("workers, n_tasks", [(1, 24), (4, pool.MIN_TASKS - 1)])
def test_one_worker_or_few_tasks_run_in_this_process(workers: int, n_tasks: int) -> None:
    results = list(pool.ordered_map(_slow_square, [(n, 0.0) for n in range(n_tasks)], workers=workers))
    assert [number for number, _ in results] == list(range(n_tasks))
    assert {pid for _, pid in results} == {os.getpid()}


def test_results_come_lazily() -> None:
    results = pool.ordered_map(_slow_square, [(n, 0.0) for n in range(3)], workers=1)
    assert next(results)[0] == 0  # a generator: the caller writes each result as it comes


def test_default_workers_is_capped() -> None:
    assert 1 <= pool.default_workers() <= pool.MAX_DEFAULT_WORKERS
