"""``dsinfra cost check``: inventory -> meter -> decide -> (with --enforce) act -> audit.

Fetching happens once at the start; metering and decisions are pure (dsinfra.spend,
dsinfra.budget); only dsinfra.cloud.actions changes the world, and only under the stack's lock,
after an intent record is durable. A check killed at any point leaves intents without results;
the next check finishes them (or closes them when reality shows the work done) instead of
starting over, so no action runs twice and every intent ends with exactly one result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from dsinfra import budget as B
from dsinfra import budget_actions
from dsinfra import spend as S
from dsinfra import waits
from dsinfra.cloud import actions, intents
from dsinfra.cloud.inventory import Inventory, fetch_inventory
from dsinfra.cloud.regions import Discovery
from dsinfra.cloud.locks import LockHeld
from dsinfra.errors import CloudError


@dataclass
class StackReport:
    stack: str
    tier: str = "unknown"
    budget_usd: float | None = None
    period: str | None = None
    spend_usd: float = 0.0
    hourly_usd: float = 0.0
    forecast_usd: float = 0.0
    status: str = "ok"
    action: str = "none"
    action_result: str = "skipped"
    reason: str = ""
    regions: list[str] = field(default_factory=list)
    resources: int = 0
    protect: bool = False
    on_exceed: str | None = None
    expires_at: str | None = None
    hours_left: float | None = None
    prices_as_of: str | None = None
    notes: list[str] = field(default_factory=list)
    intent_id: str | None = None
    # What the scaling step (ops/scale.py) projects over: the budget period's end and the
    # upfront fee of the record; not part of the report's JSON.
    period_end_at: datetime | None = None
    upfront_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("spend_usd", "hourly_usd", "forecast_usd"):
            out[key] = round(out[key], 4)
        for key in ("intent_id", "period_end_at", "upfront_usd"):
            out.pop(key)
        return out


@dataclass
class CheckContext:
    regions: tuple[str, ...]  # empty: every enabled region (cloud/regions.py)
    ledger: Any  # SqliteLedger | DynamoLedger
    audit: Any  # AuditLog | DynamoAudit: .append(kind, **fields)
    locks: Any  # FileLocks | DynamoLocks: .hold(stack)
    notifier: Any  # Notifier
    enforce: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    engine_for: Callable[[str], Any] = lambda stack: None  # a Pulumi Engine, or None
    prices: Any = None
    spot_prices: Any = None
    sleep: Callable[[float], None] = time.sleep
    inventory: Inventory | None = None  # what the last run_check saw (status reuses it)
    pricing: Any = None  # a Pricing API client; None: made when a type needs pricing


def run_check(ctx: CheckContext, stacks: list[str] | None = None) -> dict[str, Any]:
    """Check ``stacks`` (every stack found by tag when None); returns the ``--json`` object.
    Raises CloudError only when the check itself cannot start (the region list is unreadable);
    a region that cannot be read fails the stacks it may hold, and ``ok`` is then false."""
    fetched_at = time.time()
    inventory, discovery = _inventory(ctx, stacks)
    ctx.inventory = inventory
    _fill_prices(ctx, inventory)
    by_stack = inventory.by_stack()
    # a read-only view (status, report) records nothing, so it must not consume what is owed
    owed = intents.reconcile(ctx.ledger, ctx.audit) if getattr(ctx.audit, "durable", True) \
        else 0
    unread = _unreadable(discovery, inventory)
    if not unread:  # "nothing with the tag remains" is only true when every region answered
        _close_finished_intents(ctx, by_stack, stacks)
    last_seen = _last_seen(ctx, unread)
    # Every stack's metering in one ledger commit (intents.batch): nothing acts on it before
    # the batch ends, and a kill inside loses only this run's intervals, which the next run
    # meters again from where the ledger stands.
    with intents.batch(ctx.ledger):
        reports = [_evaluate_safely(ctx, stack, by_stack.get(stack, []),
                                    _unread_for(stack, discovery, inventory, last_seen))
                   for stack in sorted(set(by_stack) | _stacks_in(unread, discovery,
                                                                 last_seen))]
    _enforce(ctx, reports, inventory, fetched_at)
    from dsinfra.ops.scale import autoscale

    autoscale(ctx, reports, inventory)  # after the budget's actions, on stacks it vouched for
    with intents.batch(ctx.audit):  # the decisions in one write of the audit log
        for report in reports:
            ctx.audit.append("decision", stack=report.stack, status=report.status,
                             action=report.action, result=report.action_result,
                             reason=report.reason, spend_usd=round(report.spend_usd, 4),
                             budget_usd=report.budget_usd, period=report.period,
                             enforce=ctx.enforce, intent_id=report.intent_id,
                             checked_at=ctx.now.astimezone(timezone.utc).isoformat())
    failed = [r.stack for r in reports if "failed" in (r.status, r.action_result)]
    return {"checked_at": ctx.now.astimezone(timezone.utc).isoformat(),
            "regions": list(discovery.asked), "regions_with_stacks": list(discovery.regions),
            "region_errors": dict(sorted(unread.items())), "enforce": ctx.enforce,
            "ok": not failed and not unread, "failed_stacks": failed,
            "audit_records_reconciled": owed, "stacks": [r.as_dict() for r in reports]}


def _evaluate_safely(ctx: CheckContext, stack: str, resources: list[S.Resource],
                     unread: dict[str, str]) -> StackReport:
    """One stack's report; whatever goes wrong is this stack's ``failed``, never the run's."""
    if not resources:
        return _failed(StackReport(stack), ctx, "spend cannot be metered: its region(s) "
                       + ", ".join(f"{r} ({why})" for r, why in sorted(unread.items()))
                       + " could not be read")
    try:
        return _evaluate(ctx, stack, resources, unread)
    except Exception as exc:  # noqa: BLE001 - one stack's failure must not stop the rest
        return _failed(StackReport(stack, resources=len(resources)), ctx,
                       f"metering failed: {type(exc).__name__}: {exc}")


def _failed(report: StackReport, ctx: CheckContext, why: str) -> StackReport:
    """Spend or budget cannot be vouched for: say so, notify, never stop or destroy."""
    report.status, report.action = "failed", "notify"
    report.action_result = "pending" if ctx.enforce else "dry-run"
    report.reason = why
    return report


def _unreadable(discovery: Discovery, inventory: Inventory) -> dict[str, str]:
    return {**discovery.errors, **inventory.errors}


def _last_seen(ctx: CheckContext, unread: dict[str, str]) -> dict[str, set[str]] | None:
    """For each unread region, the stacks that may be there: those the ledger metered there,
    and (key ``None``) every stack it never metered anywhere. None: this ledger cannot say
    (the guard's store), so an unread region may hold any stack."""
    if not unread or not hasattr(ctx.ledger, "stacks_in_region"):
        return None
    seen: dict = {region: set(ctx.ledger.stacks_in_region(region)) for region in unread}
    seen[None] = set(ctx.ledger.stacks())
    return seen


def _may_be_in(stack: str, region: str, last_seen: dict | None) -> bool:
    return last_seen is None or stack in last_seen.get(region, ()) or \
        stack not in last_seen[None]


def _unread_for(stack: str, discovery: Discovery, inventory: Inventory,
                last_seen: dict | None = None) -> dict[str, str]:
    """The unread regions that may hold ``stack``: a region where the stack was tagged or
    where the ledger last metered it; a region no API could read at all may hold a stack the
    ledger never metered anywhere, and any stack when the ledger cannot say (the guard's
    store). Every other stack is still checked and enforced."""
    return {**{r: why for r, why in discovery.errors.items()
               if _may_be_in(stack, r, last_seen)},
            **{r: why for r, why in inventory.errors.items()
               if stack in discovery.stacks_by_region.get(r, ())
               or (last_seen is not None and stack in last_seen.get(r, ()))}}


def _stacks_in(unread: dict[str, str], discovery: Discovery,
               last_seen: dict | None = None) -> set[str]:
    """Stacks known to be in an unread region (they may have no other report)."""
    return {s for region in unread for s in (*discovery.stacks_by_region.get(region, ()),
                                             *(last_seen or {}).get(region, ()))}


def _inventory(ctx: CheckContext, stacks: list[str] | None) -> tuple[Inventory, Discovery]:
    from dsinfra.cloud.aws import read_errors
    from dsinfra.cloud.inventory import MAX_THREADS
    from dsinfra.cloud.regions import complete_stacks, discover

    try:
        # whether each region holds anything; the inventory lists what (regions.py's doc)
        discovery = discover(ctx.regions or None, stacks, complete=False)
    except read_errors() as exc:
        raise CloudError(f"could not list the account's regions: {exc}",
                         hint="Check AWS credentials and region; the check changed nothing.") \
            from None
    # The local ledger remembers volume sizes so steady-state checks list only new volumes.
    known = ctx.ledger.known_volumes() if hasattr(ctx.ledger, "known_volumes") else None
    # A region whose tagging API answered nothing usable is read through EC2 itself (the
    # tagging API only says where to look); only when that fails too is the region unread.
    retry = [r for r in discovery.asked if r in discovery.errors]
    found = Inventory(discovery.regions)

    def read(region: str):
        try:
            return fetch_inventory((region,), stacks, known_volumes=known), None
        except read_errors() as exc:
            complete_stacks(discovery, region, stacks)  # every stack there gets its report
            return None, f"inventory: {type(exc).__name__}: {exc}"[:300]

    regions = (*discovery.regions, *retry)
    if len(regions) > 1:  # every region at once; answers kept in region order
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(regions))) as pool:
            answers = waits.map_all(pool, read, regions)
    else:
        answers = [read(r) for r in regions]
    for region, (here, error) in zip(regions, answers):
        if error is not None:
            found.errors[region] = error
            continue
        found.resources += here.resources
        if region in discovery.errors:
            found.notes[region] = f"tagging API: {discovery.errors.pop(region)}; read " \
                                  "through EC2 instead"
            discovery.stacks_by_region[region] = {r.stack for r in here.resources}
    found.regions = discovery.regions  # with the regions read through EC2 instead
    if known is not None:
        ctx.ledger.remember_volumes([r for r in found.resources if r.kind == "volume"])
    return found, discovery


def _fill_prices(ctx: CheckContext, inventory: Inventory) -> None:
    _fill_spot_prices(ctx, inventory)
    _fill_on_demand_prices(ctx, inventory)


def _fill_spot_prices(ctx: CheckContext, inventory: Inventory) -> None:
    """Spot instances are metered at the spot price: read the current spot price history for
    the types running on spot that the price cache lacks (one paginated call per region)."""
    from dsinfra.catalog import Price
    from dsinfra.cloud.aws import read_errors
    from dsinfra.cloud.catalog_cache import spot_prices

    cached = dict(ctx.spot_prices or {})
    missing: dict[str, set[str]] = {}
    for r in inventory.resources:
        if r.kind == "instance" and r.attrs.get("lifecycle") == "spot" and \
                (r.region, r.attrs["instance_type"]) not in cached:
            missing.setdefault(r.region, set()).add(r.attrs["instance_type"])
    for region, types in missing.items():
        try:
            found = spot_prices(region, sorted(types), ctx.now)
        except read_errors():
            continue  # metered at on-demand (an upper bound), with a note saying so
        for itype, usd in found.items():
            cached[(region, itype)] = Price(usd, "hour", ctx.now.date(),
                                            "EC2 spot price history (highest AZ)")
    ctx.spot_prices = cached


def _fill_on_demand_prices(ctx: CheckContext, inventory: Inventory) -> None:
    """A type neither the bundled catalog nor the refreshed cache prices is asked of the
    Pricing API (once per region and type per run); what it cannot price is metered at the
    family's upper bound and fails its stack (dsinfra.spend.family_upper_bound)."""
    from dsinfra.cloud.catalog_cache import price_missing_types

    ctx.prices = price_missing_types(ctx.prices, {
        (r.region, r.attrs["instance_type"]) for r in inventory.resources
        if r.kind == "instance"}, ctx.now, ctx.pricing)


def _evaluate(ctx: CheckContext, stack: str, resources: list[S.Resource],
              unread: dict[str, str]) -> StackReport:
    """Meter first (spend accrues even while the budget tags are broken), then decide."""
    hourly, as_of, notes, unmetered = _meter(ctx, stack, resources)
    report = StackReport(stack, hourly_usd=hourly, regions=sorted({r.region for r in resources}),
                         resources=len(resources), prices_as_of=min(as_of) if as_of else None,
                         notes=notes)
    try:
        rule = B.budget_from_record(stack, resources)
    except B.RecordError as exc:
        return _failed(report, ctx, f"{exc}; no budget action is taken on this stack until "
                                    "its resources match the record again")
    except B.BudgetTagError as exc:
        return _failed(report, ctx, f"budget tags unusable: {exc}; no budget action is taken "
                                    "on this stack until the tag is fixed")
    intervals = ctx.ledger.intervals(stack)
    first = min((i.start for i in intervals), default=None)
    start, end = S.period_bounds(rule.period, ctx.now, first, rule.expires_at)
    report.spend_usd = spent = S.spend_within(intervals, start, min(end, ctx.now))
    report.tier, report.budget_usd, report.period = rule.tier, rule.amount_usd, rule.period
    report.protect, report.on_exceed = rule.protect, rule.on_exceed
    report.expires_at = rule.expires_at.isoformat() if rule.expires_at else None
    report.forecast_usd = S.forecast_usd(spent, hourly, ctx.now, end)
    report.period_end_at, report.upfront_usd = end, rule.upfront_usd
    report.hours_left = S.hours_until_budget(spent, hourly, rule.amount_usd)
    decision = B.decide(rule, spent, ctx.now)
    gaps = unmetered + [f"region {region} could not be read ({why})"
                        for region, why in sorted(unread.items())]
    if gaps:
        return _failed(report, ctx, "spend cannot be metered completely: " + "; ".join(gaps)
                       + f"; the budget alone would say {decision.status} ({decision.reason}),"
                       " but nothing is stopped or destroyed on incomplete data")
    report.status, report.action, report.reason = decision.status, decision.action, \
        decision.reason
    report.action_result = "none" if decision.action == "none" else \
        ("pending" if ctx.enforce else "dry-run")
    return report


def _meter(ctx: CheckContext, stack: str, resources: list[S.Resource]):
    """Record each resource's unmetered billing in the ledger; return the burn per hour now,
    the price dates, notes, and what could not be priced exactly."""
    until = ctx.ledger.metered_until(stack)
    metered, hourly, as_of, notes, unmetered = [], 0.0, set(), [], []
    for r in resources:
        price = S.resource_hourly_price(r, ctx.prices, ctx.spot_prices)
        if price.price is not None:
            as_of.add(price.price.as_of.isoformat())
        if price.note and price.note not in notes:
            notes.append(price.note)
        if price.unmetered and r.billing:
            unmetered.append(price.unmetered)
        if r.billing:
            hourly += price.usd
        interval = S.new_interval(r, price.usd, until.get(r.id), ctx.now)
        if interval is not None:
            metered.append((r, interval))
    ctx.ledger.record(stack, metered)
    return hourly, sorted(as_of), notes, unmetered


def _close_finished_intents(ctx: CheckContext, by_stack, stacks: list[str] | None) -> None:
    """An intent whose stack has nothing left was finished by a run that died before writing
    its result: reality says done, so write that result once, under the stack's lock."""
    if not ctx.enforce:
        return
    for intent in ctx.ledger.open_intents():
        stack = intent["stack"]
        if stack in by_stack or (stacks is not None and stack not in stacks):
            continue
        try:
            with ctx.locks.hold(stack):
                intents.finish(ctx.ledger, ctx.audit, intent["id"], stack, intent["action"],
                               "done", "reconciled: an interrupted run had finished; nothing "
                               "with the tag remains")
        except Exception:  # noqa: BLE001 - held, or unlockable: the next run tries again
            continue


def _enforce(ctx: CheckContext, reports: list[StackReport], inventory: Inventory,
             fetched_at: float) -> None:
    if not ctx.enforce:
        return
    acting_names = budget_actions.acting()  # from the table, mildest first
    acting = [r for r in reports if r.action in acting_names]
    with ExitStack() as held:
        mine = []
        for report in acting:
            try:
                held.enter_context(ctx.locks.hold(report.stack))
            except LockHeld:
                report.action_result, report.reason = "skipped", \
                    f"{report.reason}; another check holds the lock for this stack"
                continue
            except Exception as exc:  # noqa: BLE001 - one stack's lock must not stop the rest
                report.action_result, report.reason = "failed", \
                    f"{report.reason}; could not take this stack's lock: {exc}"
                continue
            if (ctx.ledger.last_finished(report.stack) or 0) >= fetched_at:
                report.action_result = "skipped"
                report.reason += "; a concurrent check already acted on this stack"
                continue
            mine.append(report)
        for name in acting_names:
            actions.runner(name).run(ctx, [r for r in mine if r.action == name], inventory)
    # Notify for warnings, failed and notify-only stacks, and after an action that ran
    # (a skipped one was announced by the run that did it).
    actions.runner(B.NOTIFY).run(ctx, [
        r for r in reports if r.action == B.NOTIFY or
        (r.action in acting_names and r.action_result != "skipped")], inventory)


def stale_warning(last: dict | None, now: datetime) -> str | None:
    """A warning when the last good scheduled check is older than two intervals (or there
    never was a good one since the schedule started); None when fine or nothing scheduled."""
    if not last or not last.get("interval_s"):
        return None
    limit_s = 2 * last["interval_s"]
    good = datetime.fromisoformat(last["last_good"]) if last.get("last_good") else None
    if good is not None and (now - good).total_seconds() <= limit_s:
        return None
    when = f"at {last['last_good'][:19]}Z" if good else "never"
    return (f"the last good scheduled cost check was {when}, more than two intervals "
            f"({limit_s / 60:.0f} min) ago: budgets are not being enforced (see "
            "`dsinfra schedule show` and the check's log)")


def record_heartbeat(ctx: CheckContext, result: dict) -> None:
    """The check's heartbeat, written by every whole-account run. A run started by a schedule
    (``schedule install``'s timer or the guard's EventBridge schedule: both set
    ``DSINFRA_CHECK_INTERVAL_S``) also records what it was: whether it enforced, the regions
    it read and the account, which is what lets ``up`` accept it as a stack's enforcer."""
    import os

    from dsinfra.schedule import env_seconds

    interval = env_seconds("DSINFRA_CHECK_INTERVAL_S", os.environ.get("DSINFRA_CHECK_INTERVAL_S"))
    facts = None
    if interval:
        from dsinfra.cloud.aws import caller_account

        regions = [str(r) for r in result.get("regions") or ctx.regions]
        facts = {"enforce": bool(ctx.enforce), "regions": regions,
                 "account": caller_account(regions[0] if regions else None)}
    ctx.ledger.beat(datetime.now(timezone.utc), bool(result.get("ok")), interval, facts)
