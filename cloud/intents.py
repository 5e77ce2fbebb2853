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
from contextlib import nullcontext
from typing import Any

from dsinfra.testpoints import pause_at


def _record(kind: str, intent_id: str, stack: str, action: str, fields: dict) -> dict:
    return {"kind": kind, "intent_id": intent_id, "stack": stack, "action": action, **fields}


def batch(store):
    """``store.batch()`` (the local ledger and audit log: their writes inside go to disk
    together at the end), or nothing for a store that writes each at once (the guard's)."""
    return store.batch() if hasattr(store, "batch") else nullcontext(store)


def _actions(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["action"] for r in records))


def begin(ledger, audit, stack: str, action: str, **fields: Any) -> str:
    """Durably announce ``action`` on ``stack`` (ledger, then audit); returns the intent id."""
    return begin_all(ledger, audit, [(stack, action, fields)])[0]


def begin_all(ledger, audit, items: list[tuple[str, str, dict]]) -> list[str]:
    """``begin`` for each (stack, action, fields), with the same order of writes for all of
    them at once: every intent in the ledger (one commit), then every audit record (one
    write), then the outbox rows deleted (one commit). The action runs only after this
    returns, so each of its intents is durable in both stores first, as with ``begin``."""
    records = [_record("intent", uuid.uuid4().hex, stack, action, fields)
               for stack, action, fields in items]
    if not records:
        return []
    with batch(ledger):
        for record in records:
            ledger.begin(record["intent_id"], record["stack"], record["action"], outbox=record)
    for action in _actions(records):
        pause_at(f"{action}:intent-ledger")  # a test's SIGKILL here (dsinfra/testpoints.py)
    _deliver_all(ledger, audit, records)
    for action in _actions(records):
        pause_at(f"{action}:intent-delivered")
    return [record["intent_id"] for record in records]


def finish(ledger, audit, intent_id: str, stack: str, action: str, result: str, reason: str,
           **fields: Any) -> None:
    """Record the outcome of ``intent_id`` (ledger, then audit)."""
    finish_all(ledger, audit, [(intent_id, stack, action, result, reason, fields)])


def finish_all(ledger, audit, items: list[tuple[str, str, str, str, str, dict]]) -> None:
    """``finish`` for each (intent id, stack, action, result, reason, fields): every result
    in the ledger (one commit), then in the audit log (one write), then the outbox rows
    deleted (one commit)."""
    records = [_record("result", intent_id, stack, action,
                       {"result": result, "reason": reason, **fields})
               for intent_id, stack, action, result, reason, fields in items]
    if not records:
        return
    with batch(ledger):
        for record in records:
            ledger.finish(record["intent_id"], record["result"], record["reason"],
                          stack=record["stack"], outbox=record)
    for action in _actions(records):
        pause_at(f"{action}:result-ledger")
    _deliver_all(ledger, audit, records)


def _deliver_all(ledger, audit, records: list[dict]) -> None:
    """Append the records owed (each once), then delete their outbox rows: only after the
    audit log has them on disk (the end of its batch)."""
    with batch(audit):
        for record in records:
            audit.append_once(record["kind"], **{k: v for k, v in record.items() if k != "kind"})
    for point in dict.fromkeys(f"{r['action']}:{r['kind']}-audit" for r in records):
        pause_at(point)
    with batch(ledger):
        for record in records:
            ledger.delivered(record)


def reconcile(ledger, audit) -> int:
    """Append the audit records a killed run owed (each once); returns how many were owed."""
    owed = ledger.outbox()
    if owed:
        _deliver_all(ledger, audit, owed)
    return len(owed)


def begin_or_resume(ctx, report) -> str:
    """Durably announce ``report.action`` before it runs; reuse an open intent of an
    interrupted run so the action is resumed, not repeated (one intent per action)."""
    return begin_or_resume_all(ctx, [report])[report.stack]


def begin_or_resume_all(ctx, reports: list) -> dict[str, str]:
    """``begin_or_resume`` for each report (stack -> intent id); the new intents are written
    together (``begin_all``)."""
    fresh = []
    for report in reports:
        open_intent = ctx.ledger.open_intent(report.stack)
        if open_intent is not None and open_intent["action"] == report.action:
            report.intent_id = open_intent["id"]
            ctx.audit.append("resume", stack=report.stack, action=report.action,
                             intent_id=report.intent_id)
        else:
            fresh.append(report)
    ids = begin_all(ctx.ledger, ctx.audit, [
        (r.stack, r.action, {"spend_usd": round(r.spend_usd, 4), "budget_usd": r.budget_usd,
                             "rule": r.reason}) for r in fresh])
    for report, intent_id in zip(fresh, ids):
        report.intent_id = intent_id
    return {report.stack: report.intent_id for report in reports}


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
