"""Optional reconciliation with AWS's own bill: Cost Explorer's unblended cost grouped by the
``dsinfra:stack`` cost allocation tag (activate the tag in the Billing console first). Cost
Explorer lags by up to a day and each request costs $0.01, so it is off unless asked for; it
checks dsinfra's metering, it never drives an action."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from dsinfra import tags as T
from dsinfra.cloud.aws import client

PERMISSIONS = ("ce:GetCostAndUsage",)


def billed_by_stack(start: date, end: date, ce=None) -> dict[str, float]:
    """USD billed per stack tag value between ``start`` (inclusive) and ``end`` (exclusive)."""
    if end <= start:
        end = start + timedelta(days=1)
    ce = ce or client("ce", "us-east-1")
    totals: dict[str, float] = {}
    token = None
    while True:
        kwargs = dict(TimePeriod={"Start": start.isoformat(), "End": end.isoformat()},
                      Granularity="MONTHLY", Metrics=["UnblendedCost"],
                      GroupBy=[{"Type": "TAG", "Key": T.STACK}])
        if token:
            kwargs["NextPageToken"] = token
        page = ce.get_cost_and_usage(**kwargs)
        for period in page["ResultsByTime"]:
            for group in period.get("Groups", []):
                # Cost Explorer names tag groups "<key>$<value>"; an empty value is untagged.
                stack = group["Keys"][0].split("$", 1)[-1]
                if stack:
                    amount = float(group["Metrics"]["UnblendedCost"]["Amount"])
                    totals[stack] = totals.get(stack, 0.0) + amount
        token = page.get("NextPageToken")
        if not token:
            return totals


def reconcile(report_stacks: list[dict], now: datetime, ce=None) -> None:
    """Add ``billed_usd`` (month to date, from Cost Explorer) beside each metered spend."""
    start = now.date().replace(day=1)
    billed = billed_by_stack(start, now.date() + timedelta(days=1), ce)
    for s in report_stacks:
        s["billed_usd"] = round(billed.get(s["stack"], 0.0), 2)
