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

Kill points of a person's commands (tests/cost/test_kill_points_down_resume.py sends SIGKILL
at each; ``<action>`` is the intent's action: ``down``, ``resume``, ``stop``):

- ``<action>:intent-ledger``: the intent is in the ledger, its audit record still owed;
- ``<action>:intent-audit``: the audit ``intent`` record is appended, not marked delivered;
- ``<action>:intent-delivered``: the intent is whole; nothing asked of AWS yet;
- ``teardown:terminated``: AWS took the terminations; addresses, volumes, load balancers not
  asked yet (mid-teardown);
- ``teardown:swept``: every delete asked of AWS; nothing verified yet;
- ``down:aws-done``, ``resume:aws-done``: AWS did its part; no result written;
- ``<action>:result-ledger``: the result is in the ledger, its audit record still owed;
- ``<action>:result-audit``: the audit ``result`` record is appended, not marked delivered.
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
