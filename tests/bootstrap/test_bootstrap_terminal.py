"""The bootstrap progress display in a real terminal: `dsinfra bootstrap --inventory` against
an sshd test host, in tmux at 80x24 and 200x50; the screen it leaves (capture-pane) matches the
snapshots in tests/fixtures/terminal/ (DSINFRA_UPDATE_SNAPSHOTS=1 rewrites them).

Normalised, because they vary per run: step times (the digits after ``+`` and the run's
seconds), the test host's link-local address (a subnet per test worker) and the run log's
temporary path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import host_entry, write_inventory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the tmux helper
from terminal_screen import DSINFRA, matches_snapshot, normalise, screen  # noqa: E402

VARYING = [
    (r"169\.254\.\d+\.\d+", "169.254.x.x"),
    (r"\(run log:\s+/\S+\)", "(run log: <run dir>)"),
    (r"(ok|FAILED) in \d+\.\ds", r"\1 in N.Ns"),
    (r"\+\d+[mh]?(?=\s|$)", "+N"),
]


@pytest.mark.parametrize("width, height", [(80, 24), (200, 50)])
def test_bootstrap_progress_in_a_real_terminal(width, height, lab, tmp_path, secrets_env):
    import shutil
    import tempfile

    host = lab.fresh("single", "g5.2xlarge", dlami=True)
    inventory = write_inventory(tmp_path / "hosts.yaml", [host_entry(lab, host)])
    env = {k: os.environ[k] for k in ("PATH", "HOME", "DSINFRA_API_KEY", "HF_TOKEN")}
    state = tempfile.mkdtemp(prefix="dsx-")  # short: the run log's path fits one line
    try:
        text, status = screen([DSINFRA, "bootstrap", "--inventory", str(inventory)], width=width,
                              height=height, timeout_s=300,
                              env={**env, "TERM": "xterm-256color", "DSINFRA_STATE_DIR": state})
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert status == 0, text
    matches_snapshot(f"bootstrap-{width}x{height}.txt", normalise(text, VARYING))
