"""Issue 23 item 4: every intent closes. A person's `stop` or `start` (resume) killed before
or after any of its writes, or around the AWS call, leaves an intent that the next run of
the command closes with the outcome AWS shows, once: exactly one intent and one result per
intent id, and the stack ends where the person asked. The kill is simulated in-process as in
tests/cost/reliability_scenarios.py (SimulatedKill derives from BaseException)."""

from __future__ import annotations

import pytest

from .conftest import make_stack
from .helpers import instance_states
from .reliability_scenarios import KILL_OPS, SimulatedKill, _Killer, audit_consistency

POINTS = list(range(len(KILL_OPS) + 1))
POINT_IDS = [f"before-{op}-{i}" for i, op in enumerate(KILL_OPS)] + ["after-everything"]


def _hook(monkeypatch, killer: _Killer, action: str) -> None:
    from dsinfra.cloud import spot_stop
    from dsinfra.cloud.audit import AuditLog
    from dsinfra.cloud.ledger import SqliteLedger
    from dsinfra.ops import resume as resume_ops

    for cls, name in ((SqliteLedger, "begin"), (SqliteLedger, "finish"),
                      (SqliteLedger, "delivered"), (AuditLog, "append_once")):
        real = getattr(cls, name)

        def hooked(self, *args, _real=real, **kwargs):
            killer.step()
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, hooked)
    target, name = (spot_stop, "stop") if action == "stop" else (resume_ops, "resume_stack")
    real_aws = getattr(target, name)

    def aws(*args, **kwargs):
        killer.step()
        killer.aws_calls += 1
        return real_aws(*args, **kwargs)

    monkeypatch.setattr(target, name, aws)


@pytest.mark.parametrize("action", ["stop", "start"])
@pytest.mark.parametrize("kill_at", POINTS, ids=POINT_IDS)
def test_a_killed_stop_or_start_is_closed_by_the_next_run(aws, state_dir, monkeypatch,
                                                          action, kill_at):
    from dsinfra.ops.resume import resume_checked, stop_checked

    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    made = make_stack("handson", budget_usd=10_000, period="total")
    run = (lambda: stop_checked("handson", ["us-east-1"])) if action == "stop" else \
        (lambda: resume_checked("handson", ["us-east-1"], force=False))
    if action == "start":
        stop_checked("handson", ["us-east-1"])
    with monkeypatch.context() as patched:
        killer = _Killer(kill_at)
        _hook(patched, killer, "stop" if action == "stop" else "start")
        try:
            run()
        except SimulatedKill:
            pass
        assert killer.seen == min(kill_at, len(KILL_OPS)), killer.seen
    run()  # the next run, not killed
    expected = {"stop": "stopped", "start": "running"}[action]
    assert set(instance_states(made["instances"]).values()) == {expected}
    consistency = audit_consistency()
    assert consistency["inconsistent"] == [], consistency
    assert consistency["torn"] == 0
    from dsinfra.cloud.ledger import SqliteLedger

    ledger = SqliteLedger(state_dir / "ledger.sqlite3")
    try:
        assert ledger.open_intents() == [] and ledger.outbox() == []
    finally:
        ledger.close()
