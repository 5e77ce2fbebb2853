"""`dsinfra top STACK` live in a real terminal (tmux, tests/terminal_screen.py): the rich view
at 80x24 and 200x50 matches its snapshot, no line is wider than the terminal and no value is
cut (tests/table_check.py, values formatted from the snapshot the screen shows), and Ctrl-C
ends it with exit 130 and one line. The replicas and the meter are stand-ins
(tests/top_live_driver.py says which and why); tests/bootstrap/test_top.py reads real ones."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from table_check import assert_whole_and_within
from terminal_screen import matches_snapshot, normalise, screen

DRIVER = Path(__file__).resolve().parent / "top_live_driver.py"
TIMES = [(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<time>")]


@pytest.mark.parametrize("width, height", [(80, 24), (200, 50)])
def test_top_live_view_in_a_real_terminal(width, height, tmp_path):
    from dsinfra.cli.top import replica_cells, stack_lines

    state = tmp_path / "shown.json"
    env = {"PATH": os.environ["PATH"], "TERM": "xterm-256color",
           "TOP_DRIVER_STATE": str(state), "DSINFRA_STATE_DIR": str(tmp_path / "state")}
    text, status = screen([sys.executable, str(DRIVER), "top", "dev", "--interval", "0.5"],
                          width=width, height=height, env=env,
                          send_when=(state.exists, "C-c"))
    assert status == 130, text
    assert text.rstrip().endswith("interrupted") and text.count("interrupted") == 1, text
    assert "Traceback" not in text
    shown = json.loads(state.read_text())
    values = [cell for row in shown["replicas"] for cell in replica_cells(row)]
    values += stack_lines(shown)[:3]  # $/h, spend of budget, $/M: each whole on one line
    assert "$ per million output tokens $" in text
    assert_whole_and_within(text, values, width)
    matches_snapshot(f"top-dev-{width}x{height}.txt", normalise(text, TIMES))
