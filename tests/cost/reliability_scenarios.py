"""Adversarial tag sets and kill points, shared by the tests (tests/cost/test_kill_points.py,
test_fail_safe.py) and the figures of docs/RELIABILITY.md (scripts/reliability.py). Each
scenario needs the moto server behind ``AWS_ENDPOINT_URL`` and a fresh ``DSINFRA_STATE_DIR``.

A kill is simulated in-process: ``SimulatedKill`` derives from BaseException, so no
``except Exception`` in the check swallows it; the SQLite transaction open at that moment
rolls back and the file lock is released, as they are when the OS reaps a killed process.
(tests/cost/test_check_safety.py kills real processes with SIGKILL at the two boundaries a
proxy can see: before and after AWS acted.)
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from dsinfra import tags as T

# (label, tag key, value, on which instance: "all" | "first" | "last")
ADVERSARIAL_TAG_SETS: list[tuple[str, str, str, str]] = [
    *[(f"budget={v!r}", T.BUDGET_USD, v, "all") for v in
      ("nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e3", "abc", "",
       " 5", "5 ", "-5", "0x10", "1_000", "١٠٠", "5,00", "$5", "5usd", "9" * 400)],
    ("budget=nan on the first of 3", T.BUDGET_USD, "nan", "first"),
    ("budget=nan on the last of 3", T.BUDGET_USD, "nan", "last"),
    ("budget=abc on the first of 3", T.BUDGET_USD, "abc", "first"),
    *[(f"warn-at={v!r}", T.WARN_AT, v, "all") for v in ("nan", "inf", "0", "2", "-0.5", "x")],
    *[(f"on-exceed={v!r}", T.ON_EXCEED, v, "all") for v in ("explode", "DESTROY", "")],
    *[(f"protect={v!r}", T.PROTECT, v, "all") for v in ("maybe", "1", "")],
    *[(f"period={v!r}", T.BUDGET_PERIOD, v, "all") for v in ("week", "MONTH", "")],
    *[(f"expires-at={v!r}", T.EXPIRES_AT, v, "all") for v in ("tomorrow", "2026-13-01")],
]


class SimulatedKill(BaseException):
    """The process dies here: nothing after this point of the run happens."""


def _now(hours: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=hours)


def _retag(ids: list[str], key: str, value: str) -> None:
    from dsinfra.cloud.aws import client

    client("ec2", "us-east-1").create_tags(Resources=ids, Tags=[{"Key": key, "Value": value}])


def _run(now: datetime, enforce: bool = True, wrap=None) -> dict:
    from dsinfra.ops.check import run_check
    from dsinfra.ops.local import local_context

    ctx = local_context(("us-east-1",), enforce=enforce, now=now, use_pulumi=False)
    if wrap is not None:
        wrap(ctx)
    try:
        return run_check(ctx)
    finally:
        ctx.ledger.close()


def run_tag_set(label: str, key: str, value: str, where: str) -> tuple[bool, str]:
    """(fail-safe?, why not): the stack is ``failed``, nothing stopped or destroyed, the
    reason names the tag, and the JSON is strict."""
    from tests.cost.conftest import make_stack
    from tests.cost.helpers import instance_states

    stack = "adversarial"
    made = make_stack(stack, nodes=3, budget_usd=1, period="total", on_exceed="destroy")
    targets = {"all": made["instances"], "first": made["instances"][:1],
               "last": made["instances"][-1:]}[where]
    _retag(targets, key, value)
    result = _run(_now(5))
    report = next(s for s in result["stacks"] if s["stack"] == stack)
    from dsinfra.cli.output import strict

    try:
        json.dumps(strict(result), allow_nan=False)
    except ValueError:
        return False, "not strict JSON"
    states = set(instance_states(made["instances"]).values())
    if report["status"] != "failed":
        return False, f"status {report['status']}"
    if key not in report["reason"]:
        return False, "reason does not name the tag"
    if states != {"running"}:
        return False, f"instances {states}"
    return True, ""


# The writes of one enforced action, in order; a kill is tried before each and after the last.
KILL_OPS = ("ledger.begin", "audit.intent", "ledger.delivered", "aws.action", "ledger.finish",
            "audit.result", "ledger.delivered")


class _Killer:
    def __init__(self, kill_at: int) -> None:
        self.kill_at, self.seen, self.aws_calls = kill_at, 0, 0

    def step(self) -> None:
        if self.seen == self.kill_at:
            raise SimulatedKill(KILL_OPS[self.kill_at] if self.kill_at < len(KILL_OPS)
                                else "after the last write")
        self.seen += 1


def _wrap_writes(ctx, killer: _Killer) -> None:
    ledger, audit = ctx.ledger, ctx.audit
    for obj, name in ((ledger, "begin"), (ledger, "finish"), (ledger, "delivered"),
                      (audit, "append_once")):
        real = getattr(obj, name)

        def hooked(*args, _real=real, **kwargs):
            killer.step()
            return _real(*args, **kwargs)

        setattr(obj, name, hooked)


def _wrap_aws(monkeypatch, killer: _Killer, real_stop, real_sweep) -> None:
    from dsinfra.cloud import actions, spot_stop

    def stop(*args, **kwargs):
        killer.step()
        killer.aws_calls += 1
        return real_stop(*args, **kwargs)

    def sweep(*args, **kwargs):
        killer.step()
        killer.aws_calls += 1
        return real_sweep(*args, **kwargs)

    # A stop's StopInstances goes through cloud/spot_stop.py (what AWS will stop).
    monkeypatch.setattr(spot_stop, "stop", stop)
    monkeypatch.setattr(actions, "sweep_stacks", sweep)


def audit_consistency() -> dict:
    """Per intent id: how many intent and result records; the ids that are not exactly 1+1."""
    from dsinfra.ops.local import audit_log

    records, torn = audit_log().records()
    counts: dict[str, Counter] = {}
    for r in records:
        if r.get("kind") in ("intent", "result") and r.get("intent_id"):
            counts.setdefault(r["intent_id"], Counter())[r["kind"]] += 1
    bad = [i for i, c in counts.items() if (c["intent"], c["result"]) != (1, 1)]
    return {"actions": len(counts), "inconsistent": bad, "torn": torn}


def run_kill(action: str, kill_at: int, monkeypatch) -> dict:
    """Kill a check enforcing ``action`` (stop | destroy) at write ``kill_at``, run the next
    check, and report: AWS actions sent, final instance states, audit consistency."""
    from tests.cost.conftest import make_stack
    from tests.cost.helpers import instance_states

    from dsinfra.cloud import actions, spot_stop

    made = make_stack("killed", nodes=2, budget_usd=1, period="total", on_exceed=action)
    real = (spot_stop.stop, actions.sweep_stacks)
    killer = _Killer(kill_at)
    _wrap_aws(monkeypatch, killer, *real)
    died = None
    try:
        _run(_now(5), wrap=lambda ctx: _wrap_writes(ctx, killer))
    except SimulatedKill as exc:
        died = str(exc)
    first_calls = killer.aws_calls
    follow = _Killer(10 ** 6)  # the next run is not killed
    _wrap_aws(monkeypatch, follow, *real)
    _run(_now(5.2), wrap=lambda ctx: _wrap_writes(ctx, follow))
    expected = {"stop": "stopped", "destroy": "terminated"}[action]
    states = set(instance_states(made["instances"]).values())
    return {"killed_at": died, "aws_actions": first_calls + follow.aws_calls,
            "done": states == {expected}, **audit_consistency()}
