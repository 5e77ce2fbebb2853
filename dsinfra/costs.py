"""Cost arithmetic shared by ``plan``, ``size``, ``advise`` and the spend metering."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from dsinfra.budget import BudgetFit, budget_fit
from dsinfra.catalog import HOURS_PER_MONTH

if TYPE_CHECKING:
    from dsinfra.config import StackConfig


def monthly_from_hourly(hourly_usd: float) -> float:
    return hourly_usd * HOURS_PER_MONTH


@dataclass(frozen=True)
class CostItem:
    name: str
    type: str  # the Pulumi type token, e.g. aws:ec2/instance:Instance
    hourly_usd: float
    note: str = ""
    # False for what ends when the instance stops: its compute and its auto-assigned public
    # IPv4 (released on stop). Volumes, NAT gateways, load balancers and EIPs bill on.
    billed_while_stopped: bool = True

    @property
    def monthly_usd(self) -> float:
        return monthly_from_hourly(self.hourly_usd)


@dataclass(frozen=True)
class CostEstimate:
    items: list[CostItem]
    prices_as_of: date
    notes: list[str] = field(default_factory=list)

    @property
    def hourly_usd(self) -> float:
        return sum(i.hourly_usd for i in self.items)

    @property
    def monthly_usd(self) -> float:
        return monthly_from_hourly(self.hourly_usd)

    @property
    def hourly_stopped_usd(self) -> float:
        """What the stack still bills per hour with its instances stopped."""
        return sum(i.hourly_usd for i in self.items if i.billed_while_stopped)


def stack_budget_fit(config: "StackConfig", estimate: CostEstimate) -> BudgetFit:
    """``budget_fit`` for a stack config: what ``plan``, ``doctor`` and ``up`` all call."""
    budget, block = config.budget, config.capacity_block
    return budget_fit(hourly_usd=estimate.hourly_usd,
                      hourly_stopped_usd=estimate.hourly_stopped_usd,
                      amount_usd=budget.amount_usd, period=budget.period,
                      ttl_hours=config.ttl_hours, on_exceed=budget.on_exceed,
                      protect=config.protect,
                      upfront_usd=(block.upfront_usd or 0.0) if block else 0.0,
                      block_hours=((block.teardown_at - block.start).total_seconds() / 3600
                                   if block else None))
