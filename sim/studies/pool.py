"""Process pools for the studies' independent tasks: a sweep's chunks, validation rows, claims,
a design search's generation.

- ``default_workers``: every core this process may use (its CPU affinity, not the machine's
  count); ``pool_size`` caps that by the tasks there are (no idle worker is forked).
- ``process_pool``: workers forked where the platform can (they inherit the loaded modules and
  data; Python 3.14's forkserver default would make each worker's parent the server, which
  ``die_with_parent`` takes for a dead parent), each watching the process that started it and
  ending itself when that process is gone (a pool cannot shut its workers down after a
  SIGKILL); an error or Ctrl-C in the parent cancels every task not yet started and waits only
  for the running ones.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any


def default_workers() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_size(workers: int | None, tasks: int) -> int:
    """``workers`` (None: ``default_workers``), at most one a task and at least one."""
    return max(1, min(workers or default_workers(), tasks))


def die_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this worker process when the process that started it (pid ``parent``, passed in so
    one that dies before the worker starts is noticed too) is gone. A daemon thread watches the
    worker's parent pid."""
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="roofsim-parent-watch", daemon=True).start()


def _start(parent: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def process_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()
) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes, each running ``initializer(*initargs)`` first; on leaving
    (an error, Ctrl-C, or done) the tasks not started are cancelled and the running ones
    awaited, once."""
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork") if "fork" in methods else None
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start,
                               initargs=(os.getpid(), initializer, initargs))  # fmt: skip
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
