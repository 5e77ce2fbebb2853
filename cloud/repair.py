"""``dsinfra cost repair``: a new spend ledger from the live inventory and the audit log, for
when the ledger file is corrupt. The corrupt file is moved aside, never read, never deleted.

Spend comes from AWS wherever AWS can tell it: every live resource is metered from when AWS
says it began billing (an instance's launch time, up to its stop time when stopped; a
volume's, NAT gateway's or load balancer's create time), priced by the one pricer
(dsinfra/pricer.py through dsinfra/spend.py). The audit log supplies only what AWS forgets:
- spend AWS can no longer show: runtime of instances already terminated, an instance's runs
  before its last stop (its launch time moves at every start), resources with no create time
  (Elastic IPs) before the last decision. That is the last ``decision`` record's spend minus
  what the live resources billed, by AWS's own times, in the same period up to the same
  moment; never below zero, so a low, stale or forged figure cannot lower AWS's spend;
- action intents and results (open ones stay open, so the next run closes them): the audit
  log's ``intent``/``result`` records;
- notices already sent (so a repair does not re-send them): ``notify`` records.
Every value taken from the log is checked first: a spend that is negative or not finite, or a
time that is unreadable, in the future or before the stack's first resource was created (by
AWS's times), is refused in one line naming the record (exit 2), and the ledger is left as
it was.
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


PERIODS = ("month", "total")
CLOCK_SLACK = timedelta(minutes=5)  # this machine's clock against AWS's


def _last_decisions(records: list[dict]) -> dict[str, dict]:
    """Each stack's last decision that metered a period; a period-less one (a ``failed``
    stack whose budget could not be read: spend 0) only when the stack has no other."""
    last: dict[str, dict] = {}
    for r in records:
        if r.get("kind") != "decision" or not r.get("stack") or "spend_usd" not in r:
            continue
        if r.get("period") in PERIODS or last.get(r["stack"], {}).get("period") not in PERIODS:
            last[r["stack"]] = r
    return last


def _refuse(where: str, key: str, value, allowed: str, hint: str):
    from dsinfra.errors import UserError

    return UserError(f"{where}: {key}={value!r} is not usable; allowed: {allowed}; the ledger "
                     "was not touched", hint=hint)


FIX_HINT = "Fix or remove that line of the audit log, then run `dsinfra cost repair` again."


def _checked(decision: dict, now: datetime, created: datetime | None) -> tuple[datetime, float]:
    """(time, spend) of a decision record, refused when AWS's clock or arithmetic could not
    have produced it: a spend that is negative or not finite, a time that is unreadable, in
    the future (a dry-run with ``--now`` ahead writes one) or before ``created`` (the stack's
    first resource, by AWS's create times). One line naming the record; exit 2."""
    import math

    where = f"audit record of stack {decision.get('stack')!r} at {decision.get('at')!r}"
    raw = decision.get("spend_usd")
    try:
        usd = float(raw)
    except (TypeError, ValueError, OverflowError):
        usd = math.nan
    if isinstance(raw, bool) or not math.isfinite(usd) or usd < 0:
        raise _refuse(where, "spend_usd", raw, "a finite number >= 0", FIX_HINT)
    text = decision.get("checked_at") or decision.get("at")
    try:
        at = datetime.fromisoformat(str(text))
        at = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        at = None
    if at is None or at > now + CLOCK_SLACK:
        raise _refuse(where, "checked_at", text, "a UTC time no later than now "
                      f"({now:%Y-%m-%dT%H:%M:%SZ})", "A dry-run with --now ahead writes such "
                      "a record; remove it from the audit log, then run `dsinfra cost repair` "
                      "again.")
    if created is not None and at < created - CLOCK_SLACK:
        raise _refuse(where, "checked_at", text, "a UTC time no earlier than the stack's "
                      f"first resource ({created:%Y-%m-%dT%H:%M:%SZ}, AWS's create time)",
                      FIX_HINT)
    return at, usd


def _began(r: Resource) -> datetime | None:
    return r.attrs.get("billing_since") or r.created_at


def _created(resources: list[Resource]) -> datetime | None:
    """When the stack's oldest live resource was created, by AWS's times (None: AWS cannot
    say, e.g. only Elastic IPs are left, or nothing is)."""
    return min((t for t in (_began(r) for r in resources) if t is not None), default=None)


def aws_spend(resources: list[Resource], start: datetime, end: datetime, prices=None,
              spot_prices=None) -> float:
    """What ``resources`` billed between ``start`` and ``end`` by AWS's own times (launch or
    create time; an instance's stop time), priced by the one pricer. A resource whose start
    AWS does not give counts nothing here (the log covers it)."""
    from dsinfra.spend import new_interval, resource_hourly_price

    total = 0.0
    for r in resources:
        if _began(r) is None:
            continue
        iv = new_interval(r, resource_hourly_price(r, prices, spot_prices).usd, None, end)
        if iv is not None:
            total += iv.cost_within(start, end)
    return total


def _from_log(decision: tuple[datetime, float], period: str, resources: list[Resource],
              created: datetime | None, prices, spot_prices) -> float:
    """The part of a decision's spend that AWS cannot show: its spend minus what the live
    resources billed by AWS's times in the same period up to the decision; >= 0."""
    from dsinfra.spend import period_bounds

    at, usd = decision
    start, _ = period_bounds(period, at, created)
    return max(0.0, usd - aws_spend(resources, start, at, prices, spot_prices))


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


def repair_ledger(path: Path, audit: AuditLog, found: Inventory, *, prices=None,
                  spot_prices=None, now: datetime | None = None) -> dict:
    """Rebuild the ledger at ``path``; returns what was restored and where each stack's
    spend came from. Every value taken from the log is checked before anything is moved."""
    from dsinfra.cloud.ledger import SqliteLedger

    now = now or datetime.now(timezone.utc)
    records, torn = audit.records()
    by_stack = found.by_stack()
    decisions = _last_decisions(records)
    checked = {stack: _checked(d, now, _created(by_stack.get(stack, [])))
               for stack, d in decisions.items()}
    aside = _move_aside(path)
    ledger = SqliteLedger(path)
    spend: dict[str, dict] = {}
    try:
        actions = _restore_actions(ledger, records)
        notices = 0
        for r in records:
            if r.get("kind") == "notify" and r.get("result") == "done" and r.get("key"):
                notices += ledger.claim_notice(r["stack"], r["key"],
                                               datetime.fromisoformat(r["at"]))
        for stack in sorted(set(by_stack) | set(checked)):
            resources = by_stack.get(stack, [])
            created = _created(resources)
            # AWS's part: with no meter row, the next check meters every live resource from
            # when AWS says it began billing; nothing here can move that start later.
            log_usd = 0.0
            if stack in checked:
                at, _ = checked[stack]
                period = decisions[stack].get("period")
                log_usd = _from_log(checked[stack], period if period in PERIODS else "total",
                                    resources, created, prices, spot_prices)
                if log_usd > 0:
                    synthetic = Resource("repair", f"repair:{stack}", "-", stack, {}, "gone")
                    # one second ending at the decision: inside its period, whatever it is
                    ledger.record(stack, [(synthetic, Interval(
                        synthetic.id, at - timedelta(seconds=1), at, log_usd * 3600))])
                # what AWS gives no start for (an Elastic IP) is in the decision's spend up to
                # then, and metered from then on
                ledger.resume_metering_at(stack, [r for r in resources if _began(r) is None],
                                          at)
            spend[stack] = {"aws_usd": round(aws_spend(resources, created or now, now, prices,
                                                       spot_prices), 4),
                            "from_audit_log_usd": round(log_usd, 4)}
    finally:
        ledger.close()
    return {"ledger": str(path), "corrupt_file_kept": str(aside) if aside else None,
            "actions": actions, "notices": notices, "spend_usd": spend,
            "audit_torn_lines": torn}
