"""The console script's quick exit (cli/process.py, tests/test_process_exit.py) ending a real
`dsinfra cost check` against moto: what the check committed to the ledger is there for the
next check."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from .conftest import hours_later, make_stack


# The console script's entry (cli/entry.py run) with a marker that the interpreter's teardown
# would write (see tests/test_process_exit.py): absent, the quick exit ended the check.
ENTRY = """
import os, sys
class Teardown:
    def __del__(self, fd_open=os.open, path=sys.argv[1]):
        fd_open(path, os.O_WRONLY | os.O_CREAT, 0o600)
KEEP = Teardown()
sys.argv = ["dsinfra", *sys.argv[2:]]
from dsinfra.cli.entry import run
run()
"""


def test_a_check_ended_by_the_quick_exit_leaves_its_ledger_to_the_next(aws, state_dir,
                                                                      tmp_path):
    """The check's committed ledger rows are there for the next process after the quick exit,
    which skips the interpreter's teardown (the check closes its ledger itself: cli/cost.py)."""
    make_stack("qx", nodes=2)
    env = {**os.environ, "DSINFRA_REGIONS": "us-east-1", "DSINFRA_FULL_EXIT": "0"}
    first, teardown = hours_later(1), tmp_path / "teardown-ran"
    done = subprocess.run([sys.executable, "-c", ENTRY, str(teardown), "cost", "check",
                           "--json", "--now", first.isoformat()],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not teardown.exists(), "the interpreter's teardown ran: no quick exit"
    stack = next(s for s in json.loads(done.stdout)["stacks"] if s["stack"] == "qx")
    with sqlite3.connect(state_dir / "ledger.sqlite3") as db:
        metered = db.execute("SELECT COUNT(*) FROM intervals").fetchone()[0]
    assert metered >= 2, "the check's intervals are not in the ledger"
    dsinfra = str(Path(sys.executable).with_name("dsinfra"))  # the console script itself
    later = subprocess.run([dsinfra, "cost", "check", "--json", "--now",
                            (first + timedelta(hours=1)).isoformat()],
                           env=env, capture_output=True, text=True, timeout=120)
    assert later.returncode == 0, later.stderr
    again = next(s for s in json.loads(later.stdout)["stacks"] if s["stack"] == "qx")
    assert again["spend_usd"] > stack["spend_usd"] > 0
