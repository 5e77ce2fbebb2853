"""Test points: places where a test holds a command so that it can act at a moment the command
reports (send Ctrl-C, kill it) instead of after a guessed delay, which a fast machine beats and
a loaded one misses.

With ``DSINFRA_TEST_PAUSE_AT=<point>`` in the environment, a command that reaches ``<point>``
prints ``dsinfra: paused at <point>`` on stderr and waits there (60 s at most) for the test to
act. Without the variable, or for any other point, ``pause_at`` returns at once and nothing is
printed: users never see it. Standard library only.

Points (and the test that uses each, tests/validation/test_terminals_signals.py):

- ``program-import``: the Pulumi program's module is being imported (``plan``, ``up``): a
  Ctrl-C lands inside an import statement, with pulumi_aws not yet loaded.
- ``program-run``: the program has run under the offline plan's mocks and its resources are
  being registered.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "DSINFRA_TEST_PAUSE_AT"
WAIT_S = 60


def pause_at(point: str) -> None:
    if os.environ.get(ENV) != point:
        return
    sys.stderr.write(f"dsinfra: paused at {point}\n")
    sys.stderr.flush()
    time.sleep(WAIT_S)
