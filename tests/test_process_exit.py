"""The console script's quick exit (cli/process.py): the interpreter's teardown is skipped only
once it can lose nothing, and never changes what the user gets: the exit code, every byte of
output, atexit handlers, threads, temporary directories and the ledger's committed writes.

Each scenario is a real process; a module-level object whose ``__del__`` writes a marker shows
whether the teardown ran (it runs when the interpreter clears ``__main__``, and not after
``os._exit``), so each test can tell the quick exit from the usual one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LINES = 200_000  # several MB through a pipe: more than any buffer holds at exit

SCRIPT = textwrap.dedent("""
    import atexit, gc, os, sys, tempfile, threading, time
    marks = sys.argv[1]

    def mark(name, fd_open=os.open, fd_write=os.write, flags=os.O_WRONLY | os.O_CREAT):
        fd = fd_open(os.path.join(marks, name), flags, 0o600)
        fd_write(fd, b"x")

    class Teardown:
        def __del__(self, mark=mark):
            mark("teardown")

    KEEP = Teardown()
    if "earlier-handler" in sys.argv:
        atexit.register(mark, "earlier-handler")
    from dsinfra.cli import process
    process.install()
    atexit.register(mark, "later-handler")
    mark("gc-%d" % gc.get_threshold()[0])

    def main():
        scratch = tempfile.TemporaryDirectory()  # left to its finalizer, as code may
        open(os.path.join(marks, "scratch"), "w").write(scratch.name)

        def slow():
            time.sleep(0.3)
            mark("thread")
        threading.Thread(target=slow).start()
        out = sys.stdout
        if "short" in sys.argv:  # still in the buffer at exit; the reader is gone by then
            out.write("line 0\\n")
            while not os.path.exists(os.path.join(marks, "reader-gone")):
                time.sleep(0.01)
        else:
            for n in range(LINES):
                out.write("line %d\\n" % n)
        if "raise" in sys.argv:
            raise RuntimeError("a bug")
        sys.exit(int(sys.argv[2]))

    process.run(main)
""").replace("LINES", str(LINES))


def _env(full: bool) -> dict[str, str]:
    """Users' stdout: buffered, as a pipe's is by default (this machine sets PYTHONUNBUFFERED,
    which would hide a missing flush)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["DSINFRA_FULL_EXIT"] = "1" if full else "0"
    return env


def _run(tmp_path: Path, code: int, *flags: str, full: bool = False, read_all: bool = True):
    marks = tmp_path / ("full" if full else "quick") / "-".join(map(str, (code, *flags)))
    marks.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marks), str(code), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(full))
    if read_all:
        out, err = proc.communicate(timeout=60)
    else:  # the reader goes away after one line, as `| head -1` does
        out = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=60)
    seen = {p.name for p in marks.iterdir()}
    scratch = Path((marks / "scratch").read_text()) if "scratch" in seen else None
    return proc.returncode, out, err.decode(), seen, scratch


@pytest.mark.parametrize("code", [0, 2, 3, 130])
def test_the_quick_exit_keeps_code_output_handlers_threads_and_temp_dirs(tmp_path, code):
    quick = _run(tmp_path, code)
    full = _run(tmp_path, code, full=True)
    for rc, out, err, seen, scratch in (quick, full):
        assert rc == code, err
        assert out.count(b"\n") == LINES and out.endswith(b"line %d\n" % (LINES - 1))
        assert {"later-handler", "thread", "gc-100000"} <= seen, seen
        assert scratch is not None and not scratch.exists(), "the temporary dir was left"
    assert "teardown" not in quick[3], "the interpreter's teardown ran: no quick exit"
    assert "teardown" in full[3], "DSINFRA_FULL_EXIT=1 must leave Python's own exit"


def test_an_earlier_atexit_handler_keeps_the_usual_exit(tmp_path):
    rc, out, err, seen, _ = _run(tmp_path, 3, "earlier-handler")
    assert rc == 3, err
    assert {"earlier-handler", "later-handler", "teardown"} <= seen, seen


def test_an_uncaught_exception_exits_as_python_does(tmp_path):
    rc, out, err, seen, _ = _run(tmp_path, 0, "raise")
    assert rc == 1 and "RuntimeError: a bug" in err and "Traceback" in err
    assert "teardown" in seen


def test_a_reader_that_goes_away_gets_what_python_gives(tmp_path):
    """Mid-output: the write raises in the command (an uncaught exception, exit 1)."""
    quick = _run(tmp_path, 0, read_all=False)
    full = _run(tmp_path, 0, full=True, read_all=False)
    assert quick[0] == full[0] == 1, (quick[0], quick[2], full[0], full[2])
    assert quick[1] == full[1] == b"line 0\n"


def test_output_that_cannot_be_flushed_at_exit_gets_what_python_gives(tmp_path):
    """The reader left before the exit's flush: Python reports it and exits 120."""
    runs = []
    for full in (False, True):
        marks = tmp_path / ("full" if full else "quick") / "short"
        marks.mkdir(parents=True)
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marks), "0", "short"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(full))
        proc.stdout.close()
        (marks / "reader-gone").touch()
        err = proc.stderr.read().decode()
        runs.append((proc.wait(timeout=60), "BrokenPipeError" in err, err))
    assert runs[0][:2] == runs[1][:2] == (120, True), runs

# The same exit ending a real check: tests/cost/test_quick_exit_ledger.py
