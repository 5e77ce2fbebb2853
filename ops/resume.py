"""The library side of ``dsinfra resume``: a known stack, within its budget (or ``--force``),
its stopped instances started under the stack's lock, with one audited intent and result."""

from __future__ import annotations

from collections.abc import Sequence

from dsinfra.cloud import intents
from dsinfra.cloud.actions import resume_stack
from dsinfra.cloud.ledger import SqliteLedger, state_dir
from dsinfra.ops.local import NullAudit, audit_log, local_context, require_known_stack
from dsinfra.cloud.locks import FileLocks, LockHeld
from dsinfra.errors import UserError
from dsinfra.testpoints import pause_at


def _budget_state(stack: str, regions: Sequence[str] | None,
                  now=None) -> tuple[dict | None, list[str]]:
    """The stack's dry-run check report (None when nothing of it was found) and the regions."""
    from dsinfra.ops.check import run_check

    ctx = local_context(regions, enforce=False, audit=NullAudit(), use_pulumi=False, now=now)
    result = run_check(ctx, [stack])
    mine = [s for s in result["stacks"] if s["stack"] == stack]
    return (mine[0] if mine else None), result["regions_with_stacks"] or result["regions"]


def resume_checked(stack: str, regions: Sequence[str] | None, *, force: bool,
                   now=None) -> dict:
    require_known_stack(stack, regions)
    report, where = _budget_state(stack, regions, now)
    if report is not None and report["status"] in ("exceeded", "failed") and not force:
        raise UserError(f"stack {stack!r} is {report['status']}: {report['reason']}; nothing "
                        "was started", hint=f"Raise its budget, or pass --force to start it "
                                            f"anyway: dsinfra start {stack} --force")
    ledger, log = SqliteLedger(state_dir() / "ledger.sqlite3"), audit_log()
    try:
        with FileLocks(state_dir() / "locks").hold(stack):
            from dsinfra.cloud.inventory import fetch_inventory

            intents.close_interrupted(ledger, log, stack, fetch_inventory(
                where, [stack], kinds=("instance",)).resources)
            intent = intents.begin(ledger, log, stack, "resume", forced=force)
            try:
                started = resume_stack(stack, where, log.append)
                pause_at("resume:aws-done")  # AWS took StartInstances; no result written
            except Exception as exc:
                intents.finish(ledger, log, intent, stack, "resume", "failed",
                               f"{type(exc).__name__}")
                raise
            intents.finish(ledger, log, intent, stack, "resume",
                           "done" if started else "skipped",
                           f"started {len(started)} instance(s)")
    except LockHeld:
        raise UserError(f"a cost check is acting on stack {stack!r} right now; nothing was "
                        "started", hint="Try again in a minute.") from None
    finally:
        ledger.close()
    return {"stack": stack, "started": started, "regions": list(where),
            "result": "done" if started else "skipped", "forced": force}


def stop_checked(stack: str, regions: Sequence[str] | None, *, reason: str = "asked by the user",
                 terminate_spot: bool = False) -> dict:
    """``dsinfra stop``: stop the stack's running instances (volumes and data kept), under the
    stack's lock, with one audited intent and result; ``dsinfra start`` wakes it. An instance
    AWS cannot stop (one-time spot, dsinfra/stoppable.py) is terminated after a notice only
    with ``terminate_spot`` (``--terminate-spot``); without it nothing is done (exit 2)."""
    from dsinfra.cloud.actions import running_instances
    from dsinfra.cloud.inventory import fetch_inventory
    from dsinfra.ops.local import resolve_regions

    require_known_stack(stack, regions)
    where = list(resolve_regions(regions))
    ledger, log = SqliteLedger(state_dir() / "ledger.sqlite3"), audit_log()
    try:
        with FileLocks(state_dir() / "locks").hold(stack):
            found = fetch_inventory(where, [stack], kinds=("instance",)).resources
            targets = running_instances(found)
            if not terminate_spot:
                _refuse_unstoppable(stack, targets)
            intents.close_interrupted(ledger, log, stack, found)
            intent = intents.begin(ledger, log, stack, "stop", manual=True, reason=reason)
            try:
                outcome = _stop_or_terminate(stack, targets, terminate_spot, log)
            except Exception as exc:
                intents.finish(ledger, log, intent, stack, "stop", "failed",
                               f"{type(exc).__name__}")
                raise
            intents.finish(ledger, log, intent, stack, "stop", outcome.result,
                           f"{outcome.summary(stack) or 'nothing running'} ({reason})")
    except LockHeld:
        raise UserError(f"a cost check is acting on stack {stack!r} right now; nothing was "
                        "stopped", hint="Try again in a minute.") from None
    finally:
        ledger.close()
    if outcome.problems:
        from dsinfra.errors import CloudError

        raise CloudError(f"stack {stack!r}: {'; '.join(outcome.problems)}")
    return {"stack": stack, "stopped": outcome.stopped, "terminated": outcome.terminated,
            "notice": outcome.notice or None, "regions": where, "result": outcome.result}


TERMINATE_SPOT_FLAG = "--terminate-spot"


def _by_region(targets) -> dict:
    out: dict = {}
    for r in targets:
        out.setdefault(r.region, []).append(r)
    return out


def _refuse_unstoppable(stack: str, targets) -> None:
    """Without --terminate-spot, an instance AWS cannot stop refuses the whole stop: one line,
    exit 2, nothing done (a person must say yes to losing the instance)."""
    from dsinfra import stoppable as R
    from dsinfra.cloud import spot_stop
    from dsinfra.cloud.aws import ec2_in

    refused = []
    for region, mine in sorted(_by_region(targets).items()):
        split = spot_stop.classify(ec2_in(region),
                                   [spot_stop.instance_from_resource(r) for r in mine])
        refused += split.terminate
    if refused:
        raise UserError(f"stack {stack!r}: AWS cannot stop {R.listed(refused)}; nothing was "
                        f"stopped; allowed: `dsinfra stop {stack} {TERMINATE_SPOT_FLAG}` to "
                        f"terminate {'it' if len(refused) == 1 else 'them'} after a notice "
                        f"(lost: {R.lost_with(refused)})")


def _stop_or_terminate(stack: str, targets, terminate_spot: bool, log):
    """Every region's stop through the one shared path (cloud/spot_stop.py)."""
    from dsinfra import budget_actions as A
    from dsinfra.cloud import spot_stop
    from dsinfra.cloud.aws import ec2_in
    from dsinfra.cloud.notify import Notifier

    notifier = Notifier.from_env()

    def announce(subject: str, text: str) -> str:
        if not notifier.configured:
            return "not sent: no notification URL or SNS topic configured; this command's " \
                   "output and the audit record are the notice"
        failures = notifier.send(subject, text)
        return f"failed: {', '.join(failures)}" if failures else "sent"

    total = spot_stop.Outcome()
    for region, mine in sorted(_by_region(targets).items()):
        got = spot_stop.stop_or_terminate(
            ec2_in(region), [spot_stop.instance_from_resource(r) for r in mine],
            stack=stack, trigger=f"`dsinfra stop {stack} {TERMINATE_SPOT_FLAG}`",
            unable=A.get(A.STOP).unable if terminate_spot else "fail", announce=announce,
            audit=log.append)
        total.stopped += got.stopped
        total.terminated += got.terminated
        total.problems += got.problems
        total.notice = got.notice or total.notice
    return total
