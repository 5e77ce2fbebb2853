"""The console script's process: a short-lived CLI's garbage collection and exit.

Two costs of the interpreter itself, measured on `dsinfra cost check --enforce` over 1,000
instances (bench/bench_cost_check.py, docs/BENCHMARKS.md):

- The cyclic collector ran 541 times (0.18-0.24 s) while botocore parsed the answers: every
  700 container allocations start a collection, and a parse allocates millions. A CLI run
  lives seconds, so collections are started every ``GEN0_THRESHOLD`` allocations instead, as
  mypy does for the same reason (``gc.set_threshold(200 * 1000, ...)`` in mypy/build.py);
  the collector still runs, so a long `watch` or `top` does not grow without bound.
- After the last atexit handler, tearing the interpreter down (module dicts, botocore's
  service models, every object freed one by one) took 0.12-0.16 s that nobody waits for
  usefully. Once the command has ended with a known exit code and every atexit handler has
  run, the process ends with ``os._exit`` (Instagram's "Dismissing Python Garbage Collection"
  did the same: ``atexit.register(os._exit, 0)``).

Why that loses nothing: by the time atexit handlers run, the interpreter has joined every
non-daemon thread (executors included); the handlers registered after this one have run
(logging's flush, temporary directories' finalizers); stdout and stderr are flushed here; the
audit log is fsynced per record (cloud/audit.py) and the ledger is SQLite in WAL mode, whose
committed transactions are in the file already. The exit is skipped, and Python's own
teardown runs, when a handler was registered before this one (coverage's, a site hook's: it
would not run), when the command ended in an uncaught exception (the interpreter prints it
and decides the status), when the exit code is not an integer, when flushing fails (a closed
pipe: Python reports it as it always does), or with ``DSINFRA_FULL_EXIT=1``.

Standard library only, installed by cli/entry.py before anything else loads.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

GEN0_THRESHOLD = 100_000
FULL_EXIT_ENV = "DSINFRA_FULL_EXIT"

_code: int | None = None  # the command's exit code, once it has ended without a traceback


def install() -> None:
    """Tune the collector and register the quick exit (first, so it runs last)."""
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
    registered = getattr(atexit, "_ncallbacks", None)
    if registered is None or registered() or os.environ.get(FULL_EXIT_ENV) == "1":
        return  # an earlier handler would be skipped, or we cannot tell: exit as usual
    atexit.register(_exit)


def run(main) -> None:  # noqa: ANN001 - any callable
    """``main()``, remembering how it ended for the quick exit."""
    global _code
    try:
        main()
    except SystemExit as exc:
        if exc.code is None or (isinstance(exc.code, int) and not isinstance(exc.code, bool)):
            _code = exc.code or 0
        raise
    _code = 0


def _exit() -> None:
    if _code is None:
        return
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: Python's own exit reports it
            return
    os._exit(_code & 0xFF)
