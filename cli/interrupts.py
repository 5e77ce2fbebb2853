"""Ctrl-C: exit 130 within a second, one line, no traceback, nothing half-written.

The first SIGINT raises KeyboardInterrupt in the main thread, so commands unwind normally
(locks released, the one-line "interrupted"). Threads that SDKs leave behind (gRPC, the Pulumi
mock monitor, boto3 transfers) can hold the interpreter at exit, and an interrupt inside an
import can surface as another exception; a watchdog therefore ends the process if it is not
gone within GRACE_S, and a second Ctrl-C ends it at once. Files dsinfra writes are replaced
atomically or appended line by line, so ending here leaves nothing half-written.

A Ctrl-C can also reach the process without its Python handler ever running: CPython runs
that handler in the main thread only, and a main thread asleep on a lock is not woken when the
signal lands just before it falls asleep, or is taken by another thread (dsinfra/waits.py,
which our own waits use). The C handler still writes the signal's number to the wake-up fd,
so a backstop thread reading it ends the process if the handler has not run within GRACE_S.

Standard library only: the console script installs this before importing typer or anything
heavier, so even an early Ctrl-C gets the same treatment.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

EXIT_INTERRUPTED = 130
GRACE_S = 0.8
received = False
_reported = False
_backstop_installed = False


def install() -> None:
    """Take over SIGINT, unless it was ignored when we started (a background job keeps
    ignoring it, as shells expect)."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread (an embedding caller): keep its handler
        return
    _install_backstop()


def _install_backstop() -> None:
    """The wake-up fd and the thread that reads it, once per process; never one that
    another library set first (asyncio's loop sets its own: ours then steps aside)."""
    global _backstop_installed
    if _backstop_installed:
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block on it
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (ValueError, OSError):
        previous = None
    if previous != -1:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
        return
    _backstop_installed = True
    threading.Thread(target=_backstop, args=(read_end,), name="dsinfra-ctrl-c",
                     daemon=True).start()


def _backstop(read_end: int) -> None:
    while True:
        try:
            taken = os.read(read_end, 64)
        except OSError:
            return
        if not taken:
            return
        if signal.SIGINT not in taken:
            continue
        time.sleep(GRACE_S)
        # Only while our handler is the one installed: a caller that took SIGINT over (a test
        # harness, an embedding program) decides for itself.
        if not received and signal.getsignal(signal.SIGINT) is _on_sigint:
            exit_now()


def report() -> None:
    """The one line, printed once however many paths see the interrupt."""
    global _reported
    if not _reported:
        _reported = True
        try:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed stderr must not become a traceback
            pass


def exit_now() -> None:
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed pipe must not turn into a traceback
        pass
    report()
    os._exit(EXIT_INTERRUPTED)


def _on_sigint(signum, frame) -> None:  # noqa: ANN001 - signal handler signature
    global received
    received = True
    watchdog = threading.Timer(GRACE_S, exit_now)
    watchdog.daemon = True
    watchdog.start()
    signal.signal(signal.SIGINT, lambda *_: exit_now())  # a second Ctrl-C: now
    raise KeyboardInterrupt


def run_guarded(main) -> None:  # noqa: ANN001 - any callable
    """Run ``main``; any way it ends after a Ctrl-C (SystemExit included) is exit 130."""
    try:
        main()
    except BaseException:  # noqa: BLE001
        if received:
            exit_now()
        raise
