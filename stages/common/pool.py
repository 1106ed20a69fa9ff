"""An ordered parallel map over worker processes, for the per-image work of acquire and ingest.

Results come back in the tasks' order whatever the number of workers, and each task must be a
pure function of its arguments (its own seeded generator, no shared state), so the files a stage
writes are byte-identical with one worker or many: the worker count is a speed setting, not a
parameter of the outputs. Processes, not threads: the work is numpy and PIL code that holds the GIL.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Few tasks do not pay for starting the processes; up to 4 workers (ours: the stages' files are
# small, and more processes than that mostly wait on the disk).
MIN_TASKS = 8
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def ordered_map(function: Callable[[T], R], tasks: Sequence[T], workers: int | None = None,
                chunksize: int = 8) -> Iterator[R]:
    """``map(function, tasks)``, run by ``workers`` processes (default :func:`default_workers`),
    yielding the results lazily and in order, so a caller can write each one as it comes."""
    workers = default_workers() if workers is None else int(workers)
    if workers <= 1 or len(tasks) < MIN_TASKS:
        yield from map(function, tasks)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        yield from pool.map(function, tasks, chunksize=chunksize)
