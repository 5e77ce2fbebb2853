"""Autoscaling within the budget (issue 27 item 2), the pure part: how many replicas a stack
should run, from its engines' own counts of requests running and waiting, its bounds
(``ReplicaBounds``), the cool-down since the last scaling action, and its budget.

The scaler (ops/scale.py, run by the cost check and so by the Lambda guard) reads the counts
each replica publishes to CloudWatch (cloud/idle_watch.py), the group and the budget, asks
``decide_scale`` and carries out what it says. Nothing here reaches AWS.

The rules, in one place:

- **Scale out** when the replicas that answered wait on average more than ``target_waiting``
  requests each: to ``ceil(serving * mean_waiting / target_waiting)`` (at least one more, as
  target tracking does), never past ``max``.
- **Scale in** by one replica only when every replica answered, nothing waits anywhere, and at
  least one replica runs nothing; never below ``min``. Missing or unreadable counts never
  scale in (money fails safe in the other direction too: a replica that cannot be read may be
  the busy one); they are reported.
- Nothing scales within ``cool_down_s`` of the last scaling action, nor out while a replica
  is still starting (its capacity has not arrived yet: a GPU replica's cold start is longer
  than any cool-down).
- **The budget**: a scale-out is made only to a count whose projected spend fits: spend so
  far (with what was paid up front: ``committed_usd``) plus the stack's burn at the new count
  until the end of the budget's window (``forecast_usd`` to the period's end, as the check's
  forecast), at most the budget. Where the wanted count does not fit, the largest count
  between now and it that fits is taken; where none does, nothing is scaled. Either way
  ``blocked_by_budget`` says so (the scaler audits and notifies it).

The largest count that fits is ``replicas_within_budget`` (dsinfra/replicas.py), the same
function plan's cap uses, here over the runtime projection.

Standard library only: the Lambda guard runs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dsinfra.budget import committed_usd
from dsinfra.replicas import ReplicaBounds, replicas_within_budget
from dsinfra.spend import forecast_usd

# CloudWatch: what each replica publishes (cloud/idle_watch.py) and the scaler reads
# (cloud/replicas.py). One namespace for dsinfra; one metric per count, per instance.
NAMESPACE = "dsinfra"
METRIC_RUNNING = "RequestsRunning"
METRIC_WAITING = "RequestsWaiting"
DIMENSION_STACK = "Stack"
DIMENSION_INSTANCE = "InstanceId"
# The group's target waiting per replica, as the infrastructure tags it and the scaler reads it.
TARGET_WAITING_TAG = "dsinfra:target-waiting"
# What a replica's own role may do (infra/security.py grants it on replicas stacks;
# cloud/replicas.py and the node's watcher make the calls): publish its counts, read its
# group and its peers' counts for an idle stop, and hold its own group before that stop.
NODE_READS = ("cloudwatch:PutMetricData", "cloudwatch:GetMetricData",
              "autoscaling:DescribeAutoScalingInstances",
              "autoscaling:DescribeAutoScalingGroups")
GROUP_HOLD_WRITES = ("autoscaling:SuspendProcesses",)
# A count older than this is missing: the watcher publishes every minute, so three missed
# minutes mean the watcher or the engine is down.
FRESH_S = 180

OUT, IN, HOLD = "out", "in", "hold"


@dataclass(frozen=True)
class Load:
    """One replica's engine, as it last published: requests running and waiting."""

    running: float
    waiting: float


@dataclass(frozen=True)
class ScaleBudget:
    """What the projection needs, from the check's metering of the stack: the spend so far in
    the budget's period, what was paid up front, the burn per hour now (with ``billing``
    replicas billing), one replica's burn per hour, and the period's end."""

    amount_usd: float
    spend_usd: float
    hourly_usd: float
    replica_hourly_usd: float
    billing: int
    now: datetime
    period_end: datetime
    upfront_usd: float = 0.0

    def projected_usd(self, replicas: int) -> float:
        """Spend at the window's end with ``replicas`` running from now on: the check's own
        forecast (``forecast_usd``) at that burn, counting the upfront fee (``committed_usd``)."""
        hourly = max(0.0, self.hourly_usd + (replicas - self.billing) * self.replica_hourly_usd)
        return committed_usd(forecast_usd(self.spend_usd, hourly, self.now, self.period_end),
                             self.upfront_usd)

    def fits(self, replicas: int) -> bool:
        return self.projected_usd(replicas) <= self.amount_usd


@dataclass(frozen=True)
class ScaleDecision:
    current: int  # the group's desired capacity now
    target: int  # what it should be (== current: nothing to do)
    action: str  # OUT | IN | HOLD
    reason: str
    blocked_by_budget: bool = False  # a scale-out was refused or capped by the budget
    wanted: int | None = None  # what the load asked for, before the budget
    projected_usd: float | None = None  # the projection at the wanted count
    unreadable: tuple[str, ...] = ()  # replicas whose counts are missing or unreadable
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> bool:
        return self.target != self.current


def _usd(value: float) -> float | None:
    """A projection for the record: None where a replica could not be priced (infinite)."""
    return round(value, 4) if math.isfinite(value) else None


def decide_scale(loads: Mapping[str, Load | None], *, desired: int, bounds: ReplicaBounds,
                 budget: ScaleBudget, now_s: float, last_scaled_s: float | None,
                 starting: int = 0) -> ScaleDecision:
    """What to do with a group whose desired capacity is ``desired``. ``loads``: one entry per
    serving replica (instance id -> its counts, None where missing or unreadable);
    ``starting``: replicas launched but not serving yet; ``last_scaled_s``: epoch seconds of
    the last scaling action (None: never)."""
    unreadable = tuple(sorted(i for i, load in loads.items() if load is None))
    read = [load for load in loads.values() if load is not None]
    missing = f"; counts missing or unreadable for {', '.join(unreadable)}" if unreadable \
        else ""

    def hold(why: str, **extra) -> ScaleDecision:
        return ScaleDecision(desired, desired, HOLD, why + missing, unreadable=unreadable,
                             **extra)

    if last_scaled_s is not None and now_s - last_scaled_s < bounds.cool_down_s:
        left = bounds.cool_down_s - (now_s - last_scaled_s)
        return hold(f"cool-down: last scaled {now_s - last_scaled_s:.0f} s ago, "
                    f"{left:.0f} s of {bounds.cool_down_s} s left")
    if not read:
        return hold("no replica's counts could be read: not scaling" if loads else
                    "no replica is serving yet" if starting else "no replica is serving")
    waiting = sum(load.waiting for load in read)
    running = sum(load.running for load in read)
    mean = waiting / len(read)
    seen = f"{running:g} running, {waiting:g} waiting over {len(read)} replica(s)"
    if mean > bounds.target_waiting:
        if starting:
            return hold(f"{seen}: above the target of {bounds.target_waiting:g} waiting per "
                        f"replica, but {starting} replica(s) are still starting")
        if desired >= bounds.max:
            return hold(f"{seen}: above the target, but already at max ({bounds.max})")
        wanted = min(bounds.max, max(desired + 1, math.ceil(
            len(read) * mean / bounds.target_waiting)))
        projected = budget.projected_usd(wanted)
        fitting = replicas_within_budget(ReplicaBounds(desired + 1, wanted), budget.fits)
        why = (f"{seen} (mean {mean:g} > target {bounds.target_waiting:g})")
        if fitting is None:
            return hold(f"{why}: scale-out to {wanted} refused by the budget: projected "
                        f"${projected:,.2f} > budget ${budget.amount_usd:,.2f} (spend "
                        f"${budget.spend_usd:,.2f} so far + the burn at {wanted} replica(s) "
                        f"to {budget.period_end:%Y-%m-%dT%H:%MZ}); even {desired + 1} does "
                        "not fit", blocked_by_budget=True, wanted=wanted,
                        projected_usd=_usd(projected))
        capped = fitting < wanted
        reason = (f"{why}: scale out {desired} -> {fitting}" + (
            f" (capped by the budget: {wanted} would project ${projected:,.2f} > budget "
            f"${budget.amount_usd:,.2f}; {fitting} projects "
            f"${budget.projected_usd(fitting):,.2f})" if capped else
            f"; projected ${projected:,.2f} within budget ${budget.amount_usd:,.2f}"))
        return ScaleDecision(desired, fitting, OUT, reason + missing, blocked_by_budget=capped,
                             wanted=wanted, projected_usd=_usd(projected),
                             unreadable=unreadable)
    if unreadable:
        return hold(f"{seen}: no scale-in while a replica cannot be read")
    if len(read) < desired:
        return hold(f"{seen}: {desired - len(read)} replica(s) not serving: no scale-in")
    idle = sum(1 for load in read if load.running == 0 and load.waiting == 0)
    if waiting == 0 and idle and desired > bounds.min:
        return ScaleDecision(desired, desired - 1, IN,
                             f"{seen}: nothing waits and {idle} replica(s) run nothing: "
                             f"scale in {desired} -> {desired - 1}")
    return hold(f"{seen}: within the target of {bounds.target_waiting:g} waiting per replica"
                + (f" (at min {bounds.min})" if desired <= bounds.min and idle else ""))
