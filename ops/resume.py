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
                started = resume_stack(stack, where)
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


def stop_checked(stack: str, regions: Sequence[str] | None, *, reason: str = "asked by the user"
                 ) -> dict:
    """``dsinfra stop``: stop the stack's running instances (volumes and data kept), under the
    stack's lock, with one audited intent and result; ``dsinfra start`` wakes it."""
    from dsinfra.cloud.actions import running_instances, stop_instances
    from dsinfra.cloud.inventory import fetch_inventory
    from dsinfra.ops.local import resolve_regions

    require_known_stack(stack, regions)
    where = list(resolve_regions(regions))
    ledger, log = SqliteLedger(state_dir() / "ledger.sqlite3"), audit_log()
    try:
        with FileLocks(state_dir() / "locks").hold(stack):
            found = fetch_inventory(where, [stack], kinds=("instance",)).resources
            targets = running_instances(found)
            intents.close_interrupted(ledger, log, stack, found)
            intent = intents.begin(ledger, log, stack, "stop", manual=True, reason=reason)
            try:
                stopped = stop_instances(targets)
            except Exception as exc:
                intents.finish(ledger, log, intent, stack, "stop", "failed",
                               f"{type(exc).__name__}")
                raise
            intents.finish(ledger, log, intent, stack, "stop", "done" if stopped else "skipped",
                           f"stopped {len(stopped)} instance(s), volumes kept ({reason})")
    except LockHeld:
        raise UserError(f"a cost check is acting on stack {stack!r} right now; nothing was "
                        "stopped", hint="Try again in a minute.") from None
    finally:
        ledger.close()
    return {"stack": stack, "stopped": stopped, "regions": where,
            "result": "done" if stopped else "skipped"}
