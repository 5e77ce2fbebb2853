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

    aside = _move_aside(path)
    records, torn = audit.records()
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
        for stack, decision in _last_decisions(records).items():
            at = datetime.fromisoformat(decision.get("checked_at") or decision["at"]) \
                .astimezone(timezone.utc)
            usd = float(decision["spend_usd"])
            synthetic = Resource("repair", f"repair:{stack}", "-", stack, {}, "gone")
            ledger.record(stack, [(synthetic, Interval(synthetic.id, at - timedelta(hours=1),
                                                       at, usd))])
            # live resources are metered again from the last decision on
            ledger.resume_metering_at(stack, by_stack.get(stack, []), at)
            spend[stack] = usd
    finally:
        ledger.close()
    return {"ledger": str(path), "corrupt_file_kept": str(aside) if aside else None,
            "actions": actions, "notices": notices, "spend_usd": spend,
            "audit_torn_lines": torn}
