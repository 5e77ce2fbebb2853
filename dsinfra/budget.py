"""Budget rules read from the tag contract, and the decision the cost check takes: pure.

A stack's budget lives in one record that ``up`` writes and keeps current: the ``dsinfra:*``
tags of the stack's instances (``budget_from_record``; docs/ARCHITECTURE.md says why). Every
other resource that claims the stack must carry the same rule or the stack is ``failed``,
naming it: a tag on someone else's resource never sets a stack's rules.
``budget_from_tags`` (the strictest value across tag sets) stays for ``down``'s protect guard,
where the strictest reading refuses rather than acts.

This module must not import pydantic: the Lambda guard runs it without heavy dependencies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dsinfra import budget_actions as A
from dsinfra import tags as T
from dsinfra.budget_actions import DESTROY, NOTIFY, STOP  # noqa: F401 - re-exported
from dsinfra.catalog import HOURS_PER_MONTH

STATUSES = ("ok", "warn", "exceeded")
PERIODS = ("month", "total")


def __getattr__(name: str):
    """``ON_EXCEED`` (the on-exceed names, mildest first) and ``ACTIONS`` (with ``none``) are
    read from the action table (dsinfra/budget_actions.py) each time, so a row added there is
    accepted everywhere at once."""
    if name == "ON_EXCEED":
        return A.on_exceed()
    if name == "ACTIONS":
        return ("none", *A.on_exceed())
    raise AttributeError(name)


class BudgetTagError(ValueError):
    """A stack's tags do not make a usable budget; names the tag, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"tag {key}={value!r} is not usable; allowed: {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


@dataclass(frozen=True)
class StackBudget:
    stack: str
    tier: str
    amount_usd: float
    period: str
    on_exceed: str
    warn_at: float
    protect: bool
    expires_at: datetime | None
    upfront_usd: float = 0.0  # a Capacity Block's fee, paid at purchase
    block_ends_at: datetime | None = None  # AWS terminates the block's instances before it



def _parse_one(tags: dict[str, str]) -> dict:
    def need(key: str) -> str:
        if key not in tags:
            raise BudgetTagError(key, None, "a value (set by `dsinfra up` from the stack config)")
        return tags[key]

    amount = _finite(T.BUDGET_USD, need(T.BUDGET_USD), "a finite number of USD >= 0")
    if amount < 0:
        raise BudgetTagError(T.BUDGET_USD, tags[T.BUDGET_USD], "a finite number of USD >= 0")
    period = tags.get(T.BUDGET_PERIOD, "month")
    if period not in PERIODS:
        raise BudgetTagError(T.BUDGET_PERIOD, period, ", ".join(PERIODS))
    on_exceed = tags.get(T.ON_EXCEED, NOTIFY)
    if on_exceed not in A.on_exceed():
        raise BudgetTagError(T.ON_EXCEED, on_exceed, ", ".join(A.on_exceed()))
    warn_at = _finite(T.WARN_AT, tags.get(T.WARN_AT, "0.8"), "a fraction in (0, 1]")
    if not 0 < warn_at <= 1:
        raise BudgetTagError(T.WARN_AT, tags.get(T.WARN_AT), "a fraction in (0, 1]")
    protect = tags.get(T.PROTECT, "false").lower()
    if protect not in ("true", "false"):
        raise BudgetTagError(T.PROTECT, tags[T.PROTECT], "true, false")
    upfront = _finite(T.UPFRONT_USD, tags.get(T.UPFRONT_USD, "0"),
                      "a finite number of USD >= 0")
    return dict(amount_usd=amount, period=period, on_exceed=on_exceed, warn_at=warn_at,
                protect=protect == "true", expires_at=_parse_expiry(tags.get(T.EXPIRES_AT)),
                tier=tags.get(T.TIER, "unknown"), upfront_usd=upfront,
                block_ends_at=_parse_expiry(tags.get(T.BLOCK_ENDS_AT), T.BLOCK_ENDS_AT))


_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?")


def _finite(key: str, text: str, allowed: str) -> float:
    """A tag value as the tag contract writes it (``123.45``: digits, an optional fraction),
    refusing what float() also accepts but a budget cannot be: nan, inf, overflows like 1e309
    (every comparison with them reads as "within budget"), ``1_000``, hex, whitespace."""
    if not _DECIMAL.fullmatch(text or ""):
        raise BudgetTagError(key, text, allowed)
    value = float(text)
    if not math.isfinite(value):
        raise BudgetTagError(key, text, allowed)
    return value


def _parse_expiry(value: str | None, key: str = T.EXPIRES_AT) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BudgetTagError(key, value, "a UTC time like 2026-11-30T18:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _nameless():
    while True:
        yield None


def budget_from_tags(stack: str, tag_sets: Iterable[dict[str, str]],
                     resource_ids: Iterable[str] | None = None) -> StackBudget:
    """The budget of ``stack`` from the tags of its resources (strictest value wins). Any
    unusable value on any resource refuses the whole budget, naming that resource (from
    ``resource_ids``, in the order of ``tag_sets``) when given."""
    parsed = []
    for tags, rid in zip(tag_sets, resource_ids or _nameless()):
        if tags.get(T.BUDGET_USD) is None:
            continue
        try:
            parsed.append(_parse_one(tags))
        except BudgetTagError as exc:
            if rid:
                exc.args = (f"resource {rid}: {exc.args[0]}",)
                exc.resource = rid
            raise
    if not parsed:
        raise BudgetTagError(T.BUDGET_USD, None, "a value on at least one resource of the stack")
    expiries = [p["expires_at"] for p in parsed if p["expires_at"] is not None]
    block_ends = [p["block_ends_at"] for p in parsed if p["block_ends_at"] is not None]
    periods = {p["period"] for p in parsed}
    return StackBudget(
        stack=stack,
        tier=parsed[0]["tier"],
        amount_usd=min(p["amount_usd"] for p in parsed),
        period="month" if "month" in periods else "total",
        on_exceed=max((p["on_exceed"] for p in parsed), key=A.severity),
        warn_at=min(p["warn_at"] for p in parsed),
        protect=any(p["protect"] for p in parsed),
        expires_at=min(expiries) if expiries else None,
        upfront_usd=max(p["upfront_usd"] for p in parsed),
        block_ends_at=min(block_ends) if block_ends else None,
    )


# The tags that make a stack's rule: what every resource of a stack carries identically.
RULE_KEYS = (T.BUDGET_USD, T.BUDGET_PERIOD, T.ON_EXCEED, T.WARN_AT, T.PROTECT, T.EXPIRES_AT,
             T.UPFRONT_USD, T.BLOCK_ENDS_AT)
# The resources whose tags are the record: the instances `up` launches (their tags are updated
# in place by every `up`).
RECORD_KIND = "instance"


class RecordError(BudgetTagError):
    """A resource claims a stack without matching the record its deployment wrote, or there is
    no record: never a reason to act, always a ``failed`` stack that names the resource."""

    def __init__(self, message: str, resources: list[str]) -> None:
        ValueError.__init__(self, message)
        self.key, self.value, self.allowed = T.STACK, None, "the deployment's own record"
        self.resources = resources
        self.resource = resources[0] if resources else None


def _rule_of(tags: dict[str, str]) -> tuple[tuple[str, str | None], ...]:
    return tuple((key, tags.get(key)) for key in RULE_KEYS)


def _difference(tags: dict[str, str], record: dict[str, str]) -> str:
    return ", ".join(f"{key}={tags.get(key)!r} where the record says {record.get(key)!r}"
                     for key in RULE_KEYS if tags.get(key) != record.get(key))


def budget_from_record(stack: str, resources: Iterable) -> StackBudget:
    """The budget of ``stack`` from its deployment's record: the tags of its instances
    (``resources``: objects with ``kind``, ``id`` and ``tags``). Raises ``RecordError`` when
    there is no instance to hold the record, when the instances disagree, or when any other
    resource claiming the stack carries a different rule (or none): it was not tagged by the
    deployment, or not since the last ``up``; ``BudgetTagError`` when the record's own values
    are unusable."""
    resources = list(resources)
    holders = [r for r in resources if r.kind == RECORD_KIND]
    if not holders:
        named = [r.id for r in resources]
        raise RecordError(
            f"no instance of stack {stack!r} holds its deployment's record (the budget tags "
            f"`dsinfra up` keeps on the instances); resource(s) {', '.join(named[:5])}"
            f"{' and more' if len(named) > 5 else ''} claim the stack without one", named)
    rules = {}
    for r in holders:
        rules.setdefault(_rule_of(r.tags), []).append(r.id)
    if len(rules) > 1:
        first = holders[0].tags
        named = [r.id for r in holders[1:] if _rule_of(r.tags) != _rule_of(first)]
        raise RecordError(
            f"the instances of stack {stack!r} disagree on its rule ({holders[0].id} is "
            "taken as the record): " + "; ".join(
                f"instance {r.id}: {_difference(r.tags, first)}" for r in holders[1:]
                if r.id in named), named)
    record = holders[0].tags
    budget = budget_from_tags(stack, [record], [holders[0].id])  # the record's own values
    strangers = [r for r in resources if r.kind != RECORD_KIND
                 and _rule_of(r.tags) != _rule_of(record)]
    if strangers:
        raise RecordError(
            f"resource(s) claim stack {stack!r} but disagree with its deployment's record "
            "(the tags of its instances); not created or not re-tagged by `dsinfra up`, they "
            "are never a reason to stop or destroy: " + "; ".join(
                f"{r.kind} {r.id}: {_difference(r.tags, record)}" for r in strangers),
            [r.id for r in strangers])
    return budget


# Instances in a Capacity Block are terminated by AWS 30 minutes before the block ends; the
# guard tears the stack down 60 minutes before (dsinfra/blocks.py cites AWS).
BLOCK_TEARDOWN_MARGIN = timedelta(minutes=60)


def committed_usd(spend_usd: float, upfront_usd: float) -> float:
    """What counts against a budget: metered spend plus what was paid up front (a Capacity
    Block's fee, counted in full whatever the period: it is spent, and refunded never). The
    one rule ``budget_fit`` (plan, doctor, up) and ``decide`` (the guard) share."""
    return spend_usd + upfront_usd


def exceeded_action(on_exceed: str, protect: bool) -> str:
    """What the guard does to a stack over its budget or past its TTL: its ``onExceed``, but a
    protected stack is only ever notified."""
    return NOTIFY if protect else on_exceed


@dataclass(frozen=True)
class Decision:
    status: str  # ok | warn | exceeded
    action: str  # none | notify | stop | destroy
    reason: str


def decide(budget: StackBudget, spend_usd: float, now: datetime) -> Decision:
    """What the check should do about one stack. Spend at or over the budget, or an expired
    TTL, is ``exceeded`` and gets the stack's ``onExceed``; a protected stack is only ever
    notified; spend at ``warnAt`` of the budget is a warning (a notification). Spend counts
    a Capacity Block's upfront fee (``committed_usd``); a stack on a Capacity Block is
    destroyed before the block ends, whatever its ``onExceed`` (AWS terminates its instances
    then anyway), unless protected."""
    if (ending := _block_ending(budget, now)) is not None:
        return ending
    spend_usd = committed_usd(spend_usd, budget.upfront_usd)
    upfront = f" (with ${budget.upfront_usd:,.2f} up front)" if budget.upfront_usd else ""
    over = spend_usd >= budget.amount_usd
    expired = budget.expires_at is not None and budget.expires_at <= now
    if over or expired:
        why = (f"spend ${spend_usd:,.2f}{upfront} >= budget ${budget.amount_usd:,.2f}" if over
               else f"TTL expired at {budget.expires_at:%Y-%m-%dT%H:%M:%SZ}")
        action = exceeded_action(budget.on_exceed, budget.protect)
        if action != budget.on_exceed:
            return Decision("exceeded", action,
                            f"{why}; protected stack: notify only (onExceed {budget.on_exceed})")
        return Decision("exceeded", action, f"{why}; onExceed {budget.on_exceed}")
    if spend_usd >= budget.warn_at * budget.amount_usd:
        return Decision("warn", NOTIFY,
                        f"spend ${spend_usd:,.2f}{upfront} >= {budget.warn_at:.0%} of budget "
                        f"${budget.amount_usd:,.2f}")
    return Decision("ok", "none", "within budget")


def _block_ending(budget: StackBudget, now: datetime) -> Decision | None:
    if budget.block_ends_at is None or now < budget.block_ends_at - BLOCK_TEARDOWN_MARGIN:
        return None
    why = (f"Capacity Block ends at {budget.block_ends_at:%Y-%m-%dT%H:%M:%SZ}; AWS terminates "
           "its instances from 30 minutes before")
    action = exceeded_action(DESTROY, budget.protect)
    if action != DESTROY:
        return Decision("exceeded", action, f"{why}; protected stack: notify only")
    return Decision("exceeded", action, f"{why}; tearing the stack down first")


@dataclass(frozen=True)
class BudgetFit:
    """Whether an hourly estimate fits a budget, and the arithmetic that says so."""

    fits: bool
    compared_usd: float
    window_hours: float  # the hours the budget is compared over
    running_hours: float  # of which the stack runs at full price
    ttl_enforced: bool  # the guard stops or destroys the stack when its TTL runs out
    basis: str  # the comparison in words, for plan and doctor


def budget_fit(*, hourly_usd: float, hourly_stopped_usd: float, amount_usd: float,
               period: str, ttl_hours: float | None, on_exceed: str, protect: bool,
               upfront_usd: float = 0.0, block_hours: float | None = None) -> BudgetFit:
    """The one budget-fit rule, used by ``plan``, ``doctor`` and ``up``.

    A TTL bounds spend only when the guard acts on it by stopping or destroying the stack
    (``exceeded_action``: an action whose row in dsinfra/budget_actions.py ends spend, not
    protected). The window is a 730 h month for a
    ``month`` budget; for a ``total`` budget it is the TTL when the guard destroys the stack
    then (still bills nothing), otherwise 730 h or the TTL if longer. Within the window the
    stack runs at full price until an enforced TTL, then costs what the action's row says still
    bills: nothing, or what a stopped stack still bills (``hourly_stopped_usd``: volumes, NAT
    gateway, load balancer, addresses).

    On a Capacity Block (``block_hours``: hours until the guard tears it down) the guard
    destroys the stack then unless it is protected, and the block's ``upfront_usd`` counts in
    full (``committed_usd``, as the guard's ``decide`` counts it)."""
    action = exceeded_action(on_exceed, protect)
    enforced = ttl_hours is not None and A.get(action).ends_spend
    ttl = float(ttl_hours) if enforced and ttl_hours is not None else None
    if block_hours is not None and not protect and (ttl is None or block_hours < ttl):
        ttl, action = float(block_hours), DESTROY
    if period == "month":
        window = float(HOURS_PER_MONTH)
    elif ttl is not None and A.get(action).still_bills == "nothing":
        window = ttl
    else:
        window = max(float(HOURS_PER_MONTH), ttl or 0.0)
    running = min(ttl, window) if ttl is not None else window
    after_usd = hourly_stopped_usd if ttl is not None and \
        A.get(action).still_bills == "stopped" else 0.0
    compared = committed_usd(hourly_usd * running + after_usd * (window - running), upfront_usd)
    basis = f"over {window:g} h" if period == "total" else "per month"
    if ttl is not None:
        basis += f" (TTL {ttl:g} h, then {action})"
    if upfront_usd:
        basis += f", including ${upfront_usd:,.2f} paid up front"
    return BudgetFit(compared <= amount_usd, round(compared, 6), window, running,
                     ttl is not None, basis)
