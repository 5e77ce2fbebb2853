"""EC2 Capacity Blocks for ML: the offerings for an instance type, count and duration.

``dsinfra capacity offers`` reads DescribeCapacityBlockOfferings in each region; the rules for
what may be asked follow AWS's API reference: 1 to 64 instances, a duration in 1-day steps up to
14 days and in 7-day steps up to 182 days.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dsinfra.catalog import GPU_INSTANCE_TYPES
from dsinfra.errors import CloudError, UserError

ClientFactory = Callable[..., Any]
MAX_BLOCK_INSTANCES = 64
DAY_H, WEEK_H = 24, 168


def _client(service: str, region: str | None = None) -> Any:
    from dsinfra.cloud.aws import client

    return client(service, region)


def check_request(instance_type: str, count: int, duration_h: int) -> None:
    """One line, exit 2, before any AWS call."""
    if instance_type not in GPU_INSTANCE_TYPES:
        raise UserError(f"invalid value for --instance-type: {instance_type!r}; allowed: a GPU "
                        f"instance type from the catalog: {', '.join(GPU_INSTANCE_TYPES)}")
    if not 1 <= count <= MAX_BLOCK_INSTANCES:
        raise UserError(f"invalid value for --count: {count}; allowed: 1 to "
                        f"{MAX_BLOCK_INSTANCES} instances per Capacity Block")
    days_ok = duration_h % DAY_H == 0 and DAY_H <= duration_h <= 14 * DAY_H
    weeks_ok = duration_h % WEEK_H == 0 and 14 * DAY_H < duration_h <= 182 * DAY_H
    if not (days_ok or weeks_ok):
        raise UserError(f"invalid value for --duration: {duration_h}; allowed: hours in whole "
                        "days from 24 to 336 (14 days), or whole weeks from 504 to 4368 "
                        "(182 days)")


def capacity_offers(instance_type: str, count: int, duration_h: int, regions: Sequence[str],
                    factory: ClientFactory | None = None) -> list[dict[str, Any]]:
    """Every offering in ``regions``, earliest start first, then cheapest."""
    from botocore.exceptions import BotoCoreError, ClientError

    check_request(instance_type, count, duration_h)
    factory = factory or _client
    rows: list[dict[str, Any]] = []
    for region in regions:
        try:
            pages = factory("ec2", region).get_paginator(
                "describe_capacity_block_offerings").paginate(
                InstanceType=instance_type, InstanceCount=count,
                CapacityDurationHours=duration_h)
            rows += [_row(o, region) for page in pages
                     for o in page.get("CapacityBlockOfferings", [])]
        except (BotoCoreError, ClientError) as exc:
            raise CloudError(f"DescribeCapacityBlockOfferings in {region} failed: {exc}",
                             hint="Check credentials (ec2:DescribeCapacityBlockOfferings) "
                                  "and the region.") from None
    rows.sort(key=lambda r: (r["start"], r["upfront_usd"], r["region"]))
    return rows


def _row(offering: dict[str, Any], region: str) -> dict[str, Any]:
    upfront = float(offering["UpfrontFee"])
    count = int(offering["InstanceCount"])
    hours = int(offering["CapacityBlockDurationHours"]) + int(
        offering.get("CapacityBlockDurationMinutes") or 0) / 60
    return {"offering_id": offering["CapacityBlockOfferingId"],
            "instance_type": offering["InstanceType"], "region": region,
            "availability_zone": offering["AvailabilityZone"], "count": count,
            "start": offering["StartDate"], "end": offering["EndDate"],
            "duration_hours": hours, "upfront_usd": upfront,
            "currency": offering.get("CurrencyCode", "USD"),
            "usd_per_instance_hour": round(upfront / (count * hours), 4) if hours else None}
