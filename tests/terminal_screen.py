"""dsinfra in a real terminal: tmux runs the command in a pane of a given size and
``capture-pane`` returns what a person would see, to compare with a snapshot committed under
tests/fixtures/terminal/. DSINFRA_UPDATE_SNAPSHOTS=1 rewrites the snapshots instead.

Only what must vary between runs is normalised, by the caller's patterns (times, temporary
paths, ports, per-run addresses); everything else on the screen must match exactly."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).resolve().parent / "fixtures" / "terminal"
DSINFRA = str(Path(sys.executable).with_name("dsinfra"))
DONE = "[dsinfra exited "


def need_tmux() -> None:
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed; scripts/test.sh installs it (apt-get install tmux)")


def screen(argv: list[str], *, width: int, height: int, env: dict[str, str],
           timeout_s: float = 120, send_when=None) -> tuple[str, int]:
    """Run ``argv`` in a detached tmux pane of ``width`` x ``height``; return the pane's text
    (scrollback included, trailing blanks trimmed) and the command's exit status.
    ``send_when``: (ready, keys): once ``ready()`` is true, type ``keys`` into the pane (tmux
    send-keys names, e.g. ``C-c``), once: a point the command reports, never a delay."""
    need_tmux()
    server = f"dsinfra-test-{uuid.uuid4().hex[:8]}"  # a private tmux server per call
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "run.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        # The pane's size is the terminal's: COLUMNS/LINES from the caller must not win.
        # A Ctrl-C sent to the pane reaches the shell too: its trap (a handler, which the
        # command does not inherit, unlike an ignored signal) keeps it alive to say the status.
        trap = "trap 'true' INT\n" if send_when is not None else ""
        script.write_text(f"unset COLUMNS LINES\n{trap}{exports}{shlex.join(argv)}\n"
                          f"echo \"{DONE}$?]\"\nsleep 600\n")
        tmux = ["tmux", "-L", server, "-f", "/dev/null"]
        subprocess.run([*tmux, "new-session", "-d", "-x", str(width), "-y", str(height),
                        "-s", "t", f"sh {shlex.quote(str(script))}"], check=True)
        try:
            subprocess.run([*tmux, "set-option", "-t", "t", "history-limit", "10000"],
                           check=True)
            deadline = time.monotonic() + timeout_s
            while True:
                if send_when is not None and send_when[0]():
                    subprocess.run([*tmux, "send-keys", "-t", "t", send_when[1]], check=True)
                    send_when = None
                text = subprocess.run([*tmux, "capture-pane", "-p", "-S", "-", "-t", "t"],
                                      check=True, capture_output=True, text=True).stdout
                if DONE in text:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{argv} did not finish in tmux:\n{text}")
                time.sleep(0.2)
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
    body, _, tail = text.partition(DONE)
    status = int(tail.split("]", 1)[0])
    lines = [line.rstrip() for line in body.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n", status


def normalise(text: str, patterns: list[tuple[str, str]]) -> str:
    for pattern, replacement in patterns:
        text = re.sub(pattern, replacement, text)
    return text


def matches_snapshot(name: str, text: str) -> None:
    """``text`` equals tests/fixtures/terminal/``name`` (or becomes it, with
    DSINFRA_UPDATE_SNAPSHOTS=1)."""
    path = SNAPSHOTS / name
    if os.environ.get("DSINFRA_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no snapshot {path}; run with DSINFRA_UPDATE_SNAPSHOTS=1 to write it"
    assert text == path.read_text(), f"the screen differs from {path}:\n{text}"

