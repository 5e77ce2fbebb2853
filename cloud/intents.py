"""Action intents and results, kept whole across crashes: every action has exactly one
``intent`` and one ``result`` record in the audit log, wherever a process is killed.

The ledger and the audit log are two stores, so no single write covers both. The ledger write
of an intent (or result) therefore carries the audit record it owes in the same transaction
(an outbox row); the record is then appended to the audit log and the outbox row deleted. A
run killed between those steps leaves the outbox row behind, and the next run appends the
record, once: ``append_once`` looks for it first, so a record that did land is not doubled.
"""

from __future__ import annotations

import uuid
from typing import Any


def _record(kind: str, intent_id: str, stack: str, action: str, fields: dict) -> dict:
    return {"kind": kind, "intent_id": intent_id, "stack": stack, "action": action, **fields}


def begin(ledger, audit, stack: str, action: str, **fields: Any) -> str:
    """Durably announce ``action`` on ``stack`` (ledger, then audit); returns the intent id."""
    intent_id = uuid.uuid4().hex
    record = _record("intent", intent_id, stack, action, fields)
    ledger.begin(intent_id, stack, action, outbox=record)
    _deliver(ledger, audit, record)
    return intent_id


def finish(ledger, audit, intent_id: str, stack: str, action: str, result: str, reason: str,
           **fields: Any) -> None:
    """Record the outcome of ``intent_id`` (ledger, then audit)."""
    record = _record("result", intent_id, stack, action,
                     {"result": result, "reason": reason, **fields})
    ledger.finish(intent_id, result, reason, stack=stack, outbox=record)
    _deliver(ledger, audit, record)


def _deliver(ledger, audit, record: dict) -> None:
    audit.append_once(record["kind"], **{k: v for k, v in record.items() if k != "kind"})
    ledger.delivered(record)


def reconcile(ledger, audit) -> int:
    """Append the audit records a killed run owed (each once); returns how many were owed."""
    owed = ledger.outbox()
    for record in owed:
        _deliver(ledger, audit, record)
    return len(owed)


def begin_or_resume(ctx, report) -> str:
    """Durably announce ``report.action`` before it runs; reuse an open intent of an
    interrupted run so the action is resumed, not repeated (one intent per action)."""
    open_intent = ctx.ledger.open_intent(report.stack)
    if open_intent is not None and open_intent["action"] == report.action:
        report.intent_id = open_intent["id"]
        ctx.audit.append("resume", stack=report.stack, action=report.action,
                         intent_id=report.intent_id)
        return report.intent_id
    report.intent_id = begin(ctx.ledger, ctx.audit, report.stack, report.action,
                             spend_usd=round(report.spend_usd, 4),
                             budget_usd=report.budget_usd, rule=report.reason)
    return report.intent_id
