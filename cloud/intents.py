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

from dsinfra.testpoints import pause_at


def _record(kind: str, intent_id: str, stack: str, action: str, fields: dict) -> dict:
    return {"kind": kind, "intent_id": intent_id, "stack": stack, "action": action, **fields}


def begin(ledger, audit, stack: str, action: str, **fields: Any) -> str:
    """Durably announce ``action`` on ``stack`` (ledger, then audit); returns the intent id."""
    intent_id = uuid.uuid4().hex
    record = _record("intent", intent_id, stack, action, fields)
    ledger.begin(intent_id, stack, action, outbox=record)
    pause_at(f"{action}:intent-ledger")  # a test's SIGKILL here (dsinfra/testpoints.py)
    _deliver(ledger, audit, record)
    pause_at(f"{action}:intent-delivered")
    return intent_id


def finish(ledger, audit, intent_id: str, stack: str, action: str, result: str, reason: str,
           **fields: Any) -> None:
    """Record the outcome of ``intent_id`` (ledger, then audit)."""
    record = _record("result", intent_id, stack, action,
                     {"result": result, "reason": reason, **fields})
    ledger.finish(intent_id, result, reason, stack=stack, outbox=record)
    pause_at(f"{action}:result-ledger")
    _deliver(ledger, audit, record)


def _deliver(ledger, audit, record: dict) -> None:
    audit.append_once(record["kind"], **{k: v for k, v in record.items() if k != "kind"})
    pause_at(f"{record['action']}:{record['kind']}-audit")
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


def close_interrupted(ledger, audit, stack: str, resources: list) -> int:
    """Before a person's ``stop``, ``start``, ``down`` or ``resume`` acts (under the stack's
    lock): deliver the audit records a killed run owed, then close every intent of ``stack``
    still open with the outcome AWS shows now (``resources``: the stack's live resources;
    instances alone for stop/start). Returns how many intents were closed."""
    reconcile(ledger, audit)
    instances = [r for r in resources if r.kind == "instance"]
    running = [r for r in instances if r.state in ("pending", "running")]
    stopped = [r for r in instances if r.state in ("stopping", "stopped")]
    closed = 0
    for intent in ledger.open_intents():
        if intent["stack"] != stack:
            continue
        action = intent["action"]
        if action == "stop":
            done, now = not running, f"{len(running)} instance(s) running"
        elif action == "resume":
            done, now = bool(running) and not stopped, \
                f"{len(running)} running, {len(stopped)} stopped"
        else:  # down, destroy
            done, now = not resources, f"{len(resources)} resource(s) left"
        finish(ledger, audit, intent["id"], stack, action, "done" if done else "failed",
               f"reconciled: the run was interrupted; AWS shows {now}")
        closed += 1
    return closed
