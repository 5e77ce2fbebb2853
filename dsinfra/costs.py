"""Cost arithmetic shared by ``plan``, ``size``, ``advise`` and the spend metering."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from dsinfra.catalog import HOURS_PER_MONTH


def monthly_from_hourly(hourly_usd: float) -> float:
    return hourly_usd * HOURS_PER_MONTH


@dataclass(frozen=True)
class CostItem:
    name: str
    type: str  # the Pulumi type token, e.g. aws:ec2/instance:Instance
    hourly_usd: float
    note: str = ""

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


def fits_budget(monthly_usd: float, amount_usd: float, period: str,
                ttl_hours: float | None = None) -> bool:
    """Does the estimate fit the budget? A monthly budget compares with 730 hours; a total
    budget with the TTL when one is set, otherwise with one month of running."""
    if period == "month":
        return monthly_usd <= amount_usd
    hours = ttl_hours if ttl_hours is not None else HOURS_PER_MONTH
    return monthly_usd / HOURS_PER_MONTH * hours <= amount_usd
