"""Spend metering arithmetic: price x running hours inside a budget period, forecasts and
burn rates. Pure functions over plain records; the inventory (cloud/inventory.py) supplies the
resources and the ledger (cloud/ledger.py) the intervals already metered.

The rules, in one place:
- a running (or pending, or stopping) instance bills its hourly price; a stopped one bills
  nothing itself, only its volumes (which are separate resources);
- volumes bill by GB-month, spread over AWS's 730-hour month, whatever the instance does;
  so do the EBS snapshots of the images ``dsinfra image bake`` makes, until deleted;
- Elastic IPs / public IPv4s, NAT gateways and load balancers bill per hour while they exist;
- a ``month`` budget counts the calendar month to date in UTC; a ``total`` budget everything
  since the stack's first resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dsinfra.catalog import HOURS_PER_MONTH, Price, RegionPrices
from dsinfra.pricer import Described, price_parts

BILLING_INSTANCE_STATES = ("pending", "running", "stopping", "shutting-down")


@dataclass(frozen=True)
class Resource:
    """One billable thing found by its ``dsinfra:stack`` tag (what the inventory returns)."""

    kind: str  # instance | volume | address | nat_gateway | load_balancer | snapshot
    id: str
    region: str
    stack: str
    tags: dict[str, str]
    state: str
    created_at: datetime | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # instance_type, lifecycle, size_gib...

    @property
    def billing(self) -> bool:
        if self.kind == "instance":
            return self.state in BILLING_INSTANCE_STATES
        if self.kind == "volume":
            return self.state not in ("deleting", "deleted", "error")
        if self.kind == "snapshot":
            return self.state != "error"  # pending and completed ones store blocks
        if self.kind == "nat_gateway":
            return self.state in ("pending", "available", "deleting")
        return True


@dataclass(frozen=True)
class HourlyPrice:
    usd: float
    price: Price | None  # None when dsinfra has no price for the item
    note: str = ""
    # Set when the price is not the item's own (an upper bound or nothing): the stack's spend
    # is then not metered completely, and the check reports it ``failed`` naming this.
    unmetered: str = ""


def describe(resource: Resource) -> Described:
    """A live resource as the pricer describes it (dsinfra/pricer.py)."""
    a = resource.attrs
    if resource.kind == "instance":
        lifecycle = a.get("lifecycle")
        return Described("instance", resource.region, instance_type=a["instance_type"],
                         market=lifecycle if lifecycle in ("spot", "capacity-block")
                         else "on-demand", public_ipv4=1 if a.get("public_ip") else 0)
    if resource.kind == "volume":
        return Described("volume", resource.region, size_gib=float(a.get("size_gib", 0)),
                         volume_type=a.get("volume_type", "gp3"))
    if resource.kind == "snapshot":
        return Described("snapshot", resource.region, size_gib=float(a.get("size_gib", 0)))
    if resource.kind == "load_balancer":
        return Described("load_balancer", resource.region,
                         public_ipv4=int(a.get("public_ipv4_zones", 0)))
    return Described(resource.kind, resource.region)


def resource_hourly_price(resource: Resource, prices: dict[str, RegionPrices] | None = None,
                          spot_prices: dict[tuple[str, str], Price] | None = None) -> HourlyPrice:
    """What ``resource`` costs per hour while it bills, with the dated price behind it: the
    one pricer's answer (dsinfra/pricer.py) for its description."""
    try:
        parts = price_parts(describe(resource), prices, spot_prices)
    except KeyError:
        if resource.kind == "instance":
            return _upper_bound(resource, prices)
        why = f"no price for {resource.kind} {resource.id} in {resource.region}"
        return HourlyPrice(0.0, None, why, unmetered=why)
    return HourlyPrice(sum(p.hourly_usd for p in parts), parts[0].price,
                       "; ".join(p.note for p in parts if p.caveat))


def family_upper_bound(instance_type: str,
                       prices: dict[str, RegionPrices] | None = None) -> tuple[str, Price]:
    """The catalog's most expensive type of ``instance_type``'s family (``g6`` -> the ``g6*``
    types, else every ``g*`` type), else of the whole catalog: a price nothing of that family
    exceeds in the catalog, for a type the catalog and the Pricing API could not price."""
    from dsinfra.catalog import BUNDLED_PRICES

    table = (prices or BUNDLED_PRICES).get("us-east-1") or BUNDLED_PRICES["us-east-1"]
    family = instance_type.split(".", 1)[0]
    for same in (lambda t: t.split(".", 1)[0] == family,
                 lambda t: t[:1] == family[:1], lambda t: True):
        candidates = [(p.usd, t) for t, p in table.on_demand_hourly.items() if same(t)]
        if candidates:
            usd, itype = max(candidates)
            return itype, table.on_demand_hourly[itype]
    raise KeyError(instance_type)


def _upper_bound(resource: Resource, prices) -> HourlyPrice:
    itype = resource.attrs.get("instance_type", "?")
    bound_type, bound = family_upper_bound(itype, prices)
    why = (f"instance {resource.id} type {itype} in {resource.region} has no price (price "
           f"cache, Pricing API); metered at the upper bound ${bound.usd:,.4f}/h of "
           f"{bound_type}, the catalog's most expensive of its family")
    return HourlyPrice(bound.usd, bound, why, unmetered=why)


# --- periods ---------------------------------------------------------------------------------

def month_start(now: datetime) -> datetime:
    now = now.astimezone(timezone.utc)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return (start + timedelta(days=32)).replace(day=1)


def period_bounds(period: str, now: datetime, first_seen: datetime | None,
                  expires_at: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end) of the budget period containing ``now``. A ``total`` period ends at the
    stack's expiry when it has one, else at the end of the month (the forecast horizon)."""
    if period == "month":
        return month_start(now), next_month_start(now)
    start = first_seen or now
    end = expires_at if expires_at is not None and expires_at > now else next_month_start(now)
    return start, end


def period_key(period: str, now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m") if period == "month" else "total"


# --- intervals -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """``hourly_usd`` billed from ``start`` to ``end`` for one resource (a ledger row)."""

    resource_id: str
    start: datetime
    end: datetime
    hourly_usd: float

    def cost_within(self, start: datetime, end: datetime) -> float:
        lo, hi = max(self.start, start), min(self.end, end)
        return 0.0 if hi <= lo else (hi - lo).total_seconds() / 3600 * self.hourly_usd


def new_interval(resource: Resource, hourly_usd: float, metered_until: datetime | None,
                 now: datetime) -> Interval | None:
    """The stretch of ``resource``'s billing not metered yet, up to ``now``; None if none.

    The start is where the ledger stopped metering, else when the resource began billing (an
    instance's current launch, a volume's creation). A stopped instance meters up to its stop
    time, when AWS says it; an interval is never counted twice because it starts at or after
    ``metered_until``."""
    began = resource.attrs.get("billing_since") or resource.created_at or now
    start = max(began, metered_until) if metered_until else began
    if resource.billing:
        end = now
    else:
        end = resource.attrs.get("stopped_at")
        if end is None:
            return None
    end = min(end, now)
    if end <= start:
        return None
    return Interval(resource.id, start, end, hourly_usd)


def spend_within(intervals: list[Interval], start: datetime, end: datetime) -> float:
    return sum(i.cost_within(start, end) for i in intervals)


def forecast_usd(spend_usd: float, hourly_usd: float, now: datetime, period_end: datetime) -> float:
    """Spend at the period's end if today's burn rate holds."""
    hours_left = max(0.0, (period_end - now).total_seconds() / 3600)
    return spend_usd + hourly_usd * hours_left


def hours_until_budget(spend_usd: float, hourly_usd: float, budget_usd: float) -> float | None:
    """Hours of running left at the current burn; None when nothing burns; 0 when over."""
    if spend_usd >= budget_usd:
        return 0.0
    if hourly_usd <= 0:
        return None
    return (budget_usd - spend_usd) / hourly_usd


def burn_series(intervals: list[Interval], start: datetime, end: datetime,
                buckets: int = 24) -> list[float]:
    """Spend per bucket between ``start`` and ``end`` (the report's burn chart)."""
    if end <= start or buckets <= 0:
        return []
    step = (end - start) / buckets
    return [spend_within(intervals, start + step * i, start + step * (i + 1))
            for i in range(buckets)]


def overspend_bound_usd(hourly_usd: float, check_every_min: float) -> float:
    """The most a stack can spend past its budget when checks run every ``check_every_min``:
    one interval's burn (the budget is crossed just after a check, caught at the next)."""
    return hourly_usd * check_every_min / 60
