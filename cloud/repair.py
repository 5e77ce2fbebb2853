"""``dsinfra cost repair``: a new spend ledger from the audit log and the live inventory,
for when the ledger file is corrupt. The corrupt file is moved aside, never deleted.

What comes back, and from where:
- action intents and results (open ones stay open, so the next check finishes them):
  the audit log's ``intent``/``result`` records;
- notices already sent (so a repair does not re-send them): ``notify`` records;
- spend so far: each stack's last ``decision`` record (spend_usd at that time), kept as one
  interval ending then; from that time on, every live resource is metered afresh.
Spend between the last decision and the repair is metered again from the live inventory, so
nothing billed is left out; the result is a little high, never low.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dsinfra.cloud.audit import AuditLog
from dsinfra.cloud.inventory import Inventory
from dsinfra.spend import Interval, Resource


def _move_aside(path: Path) -> Path | None:
    if not path.exists():
        return None
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(aside.with_name(aside.name + suffix))
    return aside


def _last_decisions(records: list[dict]) -> dict[str, dict]:
    last: dict[str, dict] = {}
    for r in records:
        if r.get("kind") == "decision" and r.get("stack") and r.get("spend_usd") is not None:
            last[r["stack"]] = r
    return last


def _checked(decision: dict, now: datetime) -> tuple[datetime, float]:
    """(time, spend) of a decision record, refused when AWS's clock or arithmetic could not
    have produced it: a spend that is negative or not finite, a time in the future (a
    dry-run with ``--now`` ahead writes one). One line naming the record; exit 2."""
    import math

    from dsinfra.errors import UserError

    where = f"audit record of stack {decision.get('stack')!r} at {decision.get('at')!r}"
    raw = decision.get("spend_usd")
    try:
        usd = float(raw)
    except (TypeError, ValueError):
        usd = math.nan
    if not math.isfinite(usd) or usd < 0:
        raise UserError(f"{where}: spend_usd={raw!r} is not usable; allowed: a finite number "
                        ">= 0; the ledger was not touched",
                        hint="Fix or remove that line of the audit log, then run "
                             "`dsinfra cost repair` again.")
    text = decision.get("checked_at") or decision.get("at")
    try:
        at = datetime.fromisoformat(str(text)).astimezone(timezone.utc)
    except ValueError:
        at = None
    if at is None or at > now + timedelta(minutes=5):
        raise UserError(f"{where}: checked_at={text!r} is not usable; allowed: a UTC time "
                        f"no later than now ({now:%Y-%m-%dT%H:%M:%SZ}); the ledger was not "
                        "touched", hint="A dry-run with --now ahead writes such a record; "
                        "remove it from the audit log, then run `dsinfra cost repair` again.")
    return at, usd


def _restore_actions(ledger, records: list[dict]) -> int:
    intents = {r["intent_id"]: r for r in records
               if r.get("kind") == "intent" and r.get("intent_id")}
    for intent_id, r in intents.items():
        ledger.begin(intent_id, r["stack"], r["action"])
    for r in records:
        if r.get("kind") == "result" and r.get("intent_id") in intents:
            ledger.finish(r["intent_id"], r.get("result", "failed"), r.get("reason", ""),
                          stack=r["stack"])
    return len(intents)


def repair_ledger(path: Path, audit: AuditLog, found: Inventory) -> dict:
    """Rebuild the ledger at ``path``; returns what was restored."""
    from dsinfra.cloud.ledger import SqliteLedger

    now = datetime.now(timezone.utc)
    records, torn = audit.records()
    decisions = {stack: _checked(d, now) for stack, d in _last_decisions(records).items()}
    aside = _move_aside(path)
    ledger = SqliteLedger(path)
    try:
        actions = _restore_actions(ledger, records)
        notices = 0
        for r in records:
            if r.get("kind") == "notify" and r.get("result") == "done" and r.get("key"):
                notices += ledger.claim_notice(r["stack"], r["key"],
                                               datetime.fromisoformat(r["at"]))
        by_stack = found.by_stack()
        spend = {}
        for stack, (at, usd) in decisions.items():
            synthetic = Resource("repair", f"repair:{stack}", "-", stack, {}, "gone")
            ledger.record(stack, [(synthetic, Interval(synthetic.id, at - timedelta(hours=1),
                                                       at, usd))])
            # live resources are metered again from the last decision on
            ledger.resume_metering_at(stack, by_stack.get(stack, []), at)
            spend[stack] = usd
        # A stack the log never decided on is metered from AWS's launch and create times.
        for stack, resources in by_stack.items():
            if stack in decisions:
                continue
            for r in resources:
                if r.created_at is not None and r.created_at <= now:
                    ledger.resume_metering_at(stack, [r], r.created_at)
    finally:
        ledger.close()
    return {"ledger": str(path), "corrupt_file_kept": str(aside) if aside else None,
            "actions": actions, "notices": notices, "spend_usd": spend,
            "audit_torn_lines": torn}
