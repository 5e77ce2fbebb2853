"""dsinfra/waits.py: our waits on other threads let a Ctrl-C in within a slice, and answer as
the calls they replace.

The lost wake-up is reproduced every time with ``_thread.interrupt_main()``: it trips the same
flag as the C signal handler and interrupts nothing, as a SIGINT does that lands just before
the main thread falls asleep (CPython issue #85300). A plain ``list(pool.map(...))`` then
raises only when the work ends (bench/bench_ctrl_c_wait.py measures both with real signals)."""

from __future__ import annotations

import _thread
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dsinfra import waits

HELD_S = 30  # the work's own length: an interrupt taken only when it ends fails the bound
BOUND_S = 5 * waits.SLICE_S + 2  # a slice, and a loaded machine's scheduling


def _interrupt_main_once(started: threading.Event) -> dict:
    """Trip the main thread's SIGINT flag once ``started`` is set; the time it did."""
    sent: dict = {}

    def press() -> None:
        started.wait(30)
        time.sleep(0.1)  # the main thread is asleep in its wait by now (it is not, at worst,
        # and the flag is then seen at once: either way the bound below holds)
        sent["at"] = time.monotonic()
        _thread.interrupt_main()

    threading.Thread(target=press, daemon=True).start()
    return sent


def _held(started: threading.Event, release: threading.Event):
    def work(value=None):
        started.set()
        release.wait(HELD_S)
        return value
    return work


@pytest.mark.parametrize("wait", ["map_all", "in_order", "result"])
def test_a_ctrl_c_the_wait_missed_is_raised_within_a_slice(wait, foreground_sigint):
    started, release = threading.Event(), threading.Event()
    work = _held(started, release)
    sent = _interrupt_main_once(started)
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            with pytest.raises(KeyboardInterrupt):
                if wait == "map_all":
                    waits.map_all(pool, work, [1, 2])
                elif wait == "in_order":
                    waits.in_order([pool.submit(work, 1)])
                else:
                    waits.result(pool.submit(work, 1))
            raised_after = time.monotonic() - sent["at"]
        finally:
            release.set()
    assert raised_after < BOUND_S, f"raised {raised_after:.2f}s after the interrupt"


def test_map_all_answers_in_order_and_raises_the_first_error_in_order():
    def slow_square(n: int) -> int:
        time.sleep(0.3 if n == 1 else 0)
        return n * n

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert waits.map_all(pool, slow_square, [1, 2, 3]) == [1, 4, 9]
        assert waits.map_all(pool, pow, [2, 3], [3, 2]) == [8, 9]
        assert waits.map_all(pool, slow_square, []) == []

        def fails(n: int) -> int:
            if n in (2, 3):
                raise ValueError(f"item {n}")
            return n

        with pytest.raises(ValueError, match="item 2"):
            waits.map_all(pool, fails, [1, 2, 3])


def test_an_error_cancels_the_work_that_has_not_started():
    from concurrent.futures import Future

    failed, running, queued = Future(), Future(), Future()
    running.set_running_or_notify_cancel()  # a pool thread has it: it cannot be cancelled
    failed.set_exception(RuntimeError("first"))
    with pytest.raises(RuntimeError, match="first"):
        waits.in_order([failed, running, queued])
    assert (failed.cancelled(), running.cancelled(), queued.cancelled()) == (False, False, True)


def test_the_calls_own_timeout_error_is_raised_not_waited_on_forever():
    def times_out() -> None:
        raise TimeoutError("the call's own")

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(TimeoutError, match="the call's own"):
            waits.result(pool.submit(times_out))
