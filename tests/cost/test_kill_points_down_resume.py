"""Issue 23 item 4: every intent closes, for `down` and `start` (resume) too. A real
`dsinfra down` / `dsinfra start` process is held at a point it reports
(dsinfra/testpoints.py: after the intent is in the ledger, after its audit record, before the
AWS call, mid-teardown with the instances terminated and the rest not asked, after every
delete, after AWS did its part, after the result is in the ledger, after its audit record) and
killed there with SIGKILL. The next run of the same command closes the killed run's intent
once, with the outcome AWS shows (moto in server mode), and finishes the job: one intent and
one result per intent id, nothing owed, no intent open, and the stack where the person asked.

A point the command never reaches fails the test (the process ends without pausing), so the
list below is checked against the code on every run.

The killed run is a real process; the next run is the CLI's app in this process (typer's
runner: exit code, stdout and stderr apart), with the killed run's environment and working
directory. What it finds is what any next process finds: the ledger, the audit log and the
lock files the killed process left, and moto's state. A fresh interpreter per rerun was about
half of each test's time (imports and botocore's EC2 model, 0.5-1 s)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

from dsinfra.testpoints import ENV

from .conftest import make_stack
from .helpers import billable, instance_states
from .reliability_scenarios import audit_consistency

# (point, what AWS shows when the next run looks: the killed run's outcome)
DOWN_POINTS = [
    ("down:intent-ledger", "failed"),      # intent in the ledger, its audit record owed
    ("down:intent-audit", "failed"),       # audit intent appended, not marked delivered
    ("down:intent-delivered", "failed"),   # intent whole; nothing asked of AWS yet
    ("teardown:terminated", "failed"),     # instances terminated; address, volume not asked
    ("teardown:swept", "done"),            # every delete asked; not verified
    ("down:aws-done", "done"),             # teardown returned; no result written
    ("down:result-ledger", "done"),        # result in the ledger, its audit record owed
    ("down:result-audit", "done"),         # audit result appended, not marked delivered
]
RESUME_POINTS = [
    ("resume:intent-ledger", "failed"),
    ("resume:intent-audit", "failed"),
    ("resume:intent-delivered", "failed"),  # nothing asked of AWS yet
    ("resume:aws-done", "done"),            # AWS took StartInstances; no result written
    ("resume:result-ledger", "done"),
    ("resume:result-audit", "done"),
]
# The killed run wrote its own result (in the ledger) before the kill: the next run delivers
# that result, it does not reconcile a new one.
OWN_RESULT = ("result-ledger", "result-audit")
HANG_BOUND_S = 120  # only catches a command that never reaches its point; no timing bet


def _env(state_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    return {**env, "DSINFRA_STATE_DIR": str(state_dir), "DSINFRA_REGIONS": "us-east-1"}


def _command(action: str, stack: str) -> list[str]:
    args = ["down", stack, "--yes", "--json"] if action == "down" else \
        ["start", stack, "--json"]
    return [sys.executable, "-m", "dsinfra.cli", *args]


def kill_at(point: str, argv: list[str], env: dict, cwd) -> None:
    """Run ``argv`` until it reports ``point`` on stderr, then SIGKILL it."""
    proc = subprocess.Popen(argv, env={**env, ENV: point}, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, deadline = b"", time.monotonic() + HANG_BOUND_S
    marker = f"dsinfra: paused at {point}\n".encode()
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while marker not in seen:
            chunk = os.read(proc.stderr.fileno(), 65536) if sel.select(timeout=5) else None
            if chunk == b"" or time.monotonic() > deadline:  # ended, or hung elsewhere
                proc.kill()
                proc.wait()
                pytest.fail(f"never paused at {point} (rc {proc.returncode}): "
                            f"{seen.decode(errors='replace')[-2000:]}")
            seen += chunk or b""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _next_run(monkeypatch, env: dict, cwd, args: list[str]):
    """The next run of the command, not killed: the CLI's app in this process with the
    killed run's environment and working directory (exit code, stdout and stderr apart)."""
    from typer.testing import CliRunner

    from dsinfra.cli.main import app
    from dsinfra.cloud import aws as aws_edge

    monkeypatch.delenv(ENV, raising=False)
    # `cost check` sets a process-wide deadline for AWS calls: keep it to this test.
    monkeypatch.setattr(aws_edge, "_deadline", [])
    for name in ("DSINFRA_STATE_DIR", "DSINFRA_REGIONS"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, args)


def _open_and_owed(state_dir) -> tuple[list, list]:
    from dsinfra.cloud.ledger import SqliteLedger

    ledger = SqliteLedger(state_dir / "ledger.sqlite3")
    try:
        return ledger.open_intents(), ledger.outbox()
    finally:
        ledger.close()


def _results_of(action: str) -> list[dict]:
    from dsinfra.ops.local import audit_log

    return [r for r in audit_log().records()[0]
            if r["kind"] == "result" and r["action"] == action]


def _killed_run_closed(action: str, point: str, expected: str) -> None:
    """The first intent of ``action`` (the killed run's) has exactly one result, and it says
    what AWS showed: reconciled by the next run, or the killed run's own result delivered."""
    from dsinfra.ops.local import audit_log

    records = audit_log().records()[0]
    intents = [r for r in records if r["kind"] == "intent" and r["action"] == action]
    assert len(intents) == 2, [r["kind"] for r in records]  # the killed run's and the next
    killed = intents[0]["intent_id"]
    results = [r for r in records if r["kind"] == "result" and r["intent_id"] == killed]
    assert len(results) == 1, results
    assert results[0]["result"] == expected, results[0]
    reconciled = results[0]["reason"].startswith("reconciled: the run was interrupted")
    assert reconciled == (not point.endswith(OWN_RESULT)), results[0]


@pytest.mark.parametrize("point,expected", DOWN_POINTS, ids=[p for p, _ in DOWN_POINTS])
def test_a_killed_down_is_closed_by_the_next_down(aws, state_dir, tmp_path, monkeypatch, point,
                                                   expected):
    made = make_stack("doomed", nodes=2, eip=True, extra_volume_gib=40, budget_usd=10_000,
                      period="total")
    env = _env(state_dir)
    kill_at(point, _command("down", "doomed"), env, tmp_path)
    opened, owed = _open_and_owed(state_dir)
    assert opened or owed  # the kill left something for the next run to close

    rerun = _next_run(monkeypatch, env, tmp_path, _command("down", "doomed")[3:])
    assert rerun.exit_code == 0, (rerun.stderr, rerun.exception)
    assert json.loads(rerun.stdout)["clean"] is True
    assert billable("doomed") == []
    assert set(instance_states(made["instances"]).values()) == {"terminated"}
    _killed_run_closed("down", point, expected)
    consistency = audit_consistency()
    assert consistency["inconsistent"] == [] and consistency["torn"] == 0, consistency
    assert _open_and_owed(state_dir) == ([], [])


@pytest.mark.parametrize("point,expected", RESUME_POINTS, ids=[p for p, _ in RESUME_POINTS])
def test_a_killed_start_is_closed_by_the_next_start(aws, state_dir, tmp_path, monkeypatch,
                                                     point, expected):
    from dsinfra.ops.resume import stop_checked

    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    made = make_stack("sleeper", nodes=2, budget_usd=10_000, period="total")
    stop_checked("sleeper", ["us-east-1"])
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    env = _env(state_dir)
    kill_at(point, _command("start", "sleeper"), env, tmp_path)
    opened, owed = _open_and_owed(state_dir)
    assert opened or owed

    rerun = _next_run(monkeypatch, env, tmp_path, _command("start", "sleeper")[3:])
    assert rerun.exit_code == 0, (rerun.stderr, rerun.exception)
    assert set(instance_states(made["instances"]).values()) == {"running"}
    _killed_run_closed("resume", point, expected)
    consistency = audit_consistency()
    assert consistency["inconsistent"] == [] and consistency["torn"] == 0, consistency
    assert _open_and_owed(state_dir) == ([], [])


def test_an_open_down_intent_of_a_stack_aws_no_longer_knows_is_closed_by_down(
        aws, state_dir, monkeypatch):
    """Terminated instances leave AWS's listings after about an hour: a `down` killed after
    its sweep may find no trace of the stack in AWS, and the ledger never metered it. The
    open intent still makes the name known, so the next `down` runs and closes it."""
    from dsinfra.cloud.ledger import SqliteLedger
    from dsinfra.ops.down import destroy_stack

    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    state_dir.mkdir(parents=True)
    ledger = SqliteLedger(state_dir / "ledger.sqlite3")
    try:
        ledger.begin("0" * 32, "vanished", "down", outbox={
            "kind": "intent", "intent_id": "0" * 32, "stack": "vanished", "action": "down"})
    finally:
        ledger.close()
    result = destroy_stack("vanished", ["us-east-1"], yes=True, force=False,
                           confirm=lambda: "", engine=None)
    assert result.clean
    closed = [r for r in _results_of("down") if r["intent_id"] == "0" * 32]
    assert [(r["result"], r["reason"][:35]) for r in closed] == \
        [("done", "reconciled: the run was interrupted")]
    assert _open_and_owed(state_dir) == ([], [])


@pytest.mark.parametrize("point", ["teardown:swept", "down:aws-done"])
def test_a_down_killed_after_its_sweep_is_closed_by_the_next_enforcing_check(
        aws, state_dir, tmp_path, monkeypatch, point):
    """Nobody runs `down` again: the scheduled `cost check --enforce` finds nothing with the
    stack's tag and closes the open intent as done, once."""
    make_stack("doomed", nodes=2, eip=True, extra_volume_gib=40, budget_usd=10_000,
               period="total")
    env = _env(state_dir)
    kill_at(point, _command("down", "doomed"), env, tmp_path)
    assert billable("doomed") == []
    check = _next_run(monkeypatch, env, tmp_path, ["cost", "check", "--enforce", "--json"])
    assert check.exit_code == 0, (check.stderr, check.exception)
    results = _results_of("down")
    assert [r["result"] for r in results] == ["done"], results
    assert results[0]["reason"].startswith("reconciled: an interrupted run had finished")
    consistency = audit_consistency()
    assert consistency["inconsistent"] == [] and consistency["torn"] == 0, consistency
    assert _open_and_owed(state_dir) == ([], [])
