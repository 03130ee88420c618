"""Worker processes that never outlive the command that started them.

A plain ``ProcessPoolExecutor`` leaves its workers running when the parent is stopped by SIGTERM (a
``timeout``, a scheduler): they are re-parented to init and run to the end of their task (Lightning inside
them even turns SIGTERM into a graceful stop). :func:`worker_pool` turns SIGTERM in the parent into
``KeyboardInterrupt`` for the duration of the pool and kills every worker on the way out of an interrupted
or failed pool. Workers ignore SIGINT (Ctrl+C reaches the whole process group: the parent decides) and, on
Linux, ask the kernel to kill them when the parent dies, which covers a parent killed by SIGKILL.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Iterator
from types import FrameType

PR_SET_PDEATHSIG = 1


def _worker_init() -> None:
    """In each worker: ignore SIGINT; die with the parent (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def kill_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """SIGKILL every live worker of ``pool`` and wait for them to be reaped."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=5)


@contextlib.contextmanager
def worker_pool(jobs: int) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A spawn-context process pool of ``jobs`` workers, torn down with its workers on any exit but success."""
    pool = concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield pool
    except BaseException:
        kill_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
