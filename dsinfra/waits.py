"""Waiting on other threads without losing a Ctrl-C.

CPython runs a Python signal handler only in the main thread, between bytecodes or when a
blocking call in the main thread returns EINTR. A SIGINT that lands after the main thread has
released the interpreter to block on a lock but before it is asleep in ``sem_wait`` is taken by
the C handler only: nothing interrupts the wait that follows, and KeyboardInterrupt is raised
when the wait ends on its own (CPython issue #85300, "Signal handlers should not hang during
blocked main thread", open). ``list(pool.map(...))`` and ``future.result()`` with no timeout
wait until the work is done, so a Ctrl-C during a bootstrap step could wait for the whole step
(a driver install: minutes).

Measured with bench/bench_ctrl_c_wait.py (Python 3.11.7, a pool thread holding its item 2 s,
one or two other threads busy, a real SIGINT sent with ``pthread_kill`` to the main thread):
16 and 7 of 300 runs raised only when the work ended; waiting in slices of ``SLICE_S``, none
of 900 did, the slowest 0.255 s after the signal (docs/RELIABILITY.md).
``_thread.interrupt_main()`` sets the same flag without interrupting anything, so tests
reproduce the lost wake-up every time with it.

So the waits here never block longer than ``SLICE_S`` at a time: after each slice the main
thread takes the interpreter back, which looks for pending signals (CPython bpo-40010), and
the Ctrl-C is raised then. Same answers and exceptions as the calls they replace.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

SLICE_S = 0.2


def result(future: concurrent.futures.Future[T]) -> T:
    """``future.result()``, woken every ``SLICE_S`` to let a Ctrl-C in."""
    while True:
        try:
            return future.result(timeout=SLICE_S)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the call's own TimeoutError, not our slice


def in_order(futures: Iterable[concurrent.futures.Future[T]]) -> list[T]:
    """Every result in order, as ``list(executor.map(...))`` gives them: the first exception
    in order is raised, and whatever ends the wait (that exception, a Ctrl-C) cancels the
    futures that have not started."""
    futures = list(futures)
    try:
        return [result(f) for f in futures]
    finally:
        for future in futures:
            future.cancel()  # a no-op on those done or running


def map_all(pool: concurrent.futures.Executor, fn: Callable[..., T],
            *iterables: Iterable[Any]) -> list[T]:
    """``list(pool.map(fn, *iterables))`` with the waits above."""
    return in_order([pool.submit(fn, *args) for args in zip(*iterables)])
