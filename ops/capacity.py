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


OFFERING_ID = r"^cb-[0-9a-z]{8,32}$"
PLATFORM = "Linux/UNIX"  # the DLAMI is Ubuntu


def find_offering(offering_id: str, instance_type: str, count: int, duration_h: int,
                  region: str, factory: ClientFactory | None = None) -> dict[str, Any]:
    """The offering as AWS lists it now (its price is what the user must type)."""
    import re

    if not re.match(OFFERING_ID, offering_id):
        raise UserError(f"invalid value for OFFERING: {offering_id!r}; allowed: a Capacity "
                        "Block offering id (cb-...) from `dsinfra capacity offers`")
    for row in capacity_offers(instance_type, count, duration_h, [region], factory):
        if row["offering_id"] == offering_id:
            return row
    raise UserError(f"offering {offering_id} is not offered now for {count}x {instance_type}, "
                    f"{duration_h} h in {region}; nothing was bought",
                    hint="Run `dsinfra capacity offers` again: offerings change.")


def typed_price_matches(typed: str, upfront_usd: float) -> bool:
    """'1900.80', '1,900.80' or '$1,900.80' for an upfront fee of 1900.80 (to the cent)."""
    from decimal import Decimal, InvalidOperation

    cleaned = typed.strip().lstrip("$").replace(",", "")
    try:
        return Decimal(cleaned).quantize(Decimal("0.01")) == Decimal(
            str(upfront_usd)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return False


def buy(offering: dict[str, Any], typed_price: str, *, factory: ClientFactory | None = None,
        audit: Callable[..., Any] = lambda kind, **fields: None) -> dict[str, Any]:
    """Purchase ``offering`` only when ``typed_price`` is its upfront fee; audited before and
    after the call, so a crash in between still leaves the intent on record."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not typed_price_matches(typed_price, offering["upfront_usd"]):
        raise UserError(f"the price typed ({typed_price!r}) is not the offering's upfront fee "
                        f"${offering['upfront_usd']:,.2f}; nothing was bought")
    fields = {"offering_id": offering["offering_id"], "region": offering["region"],
              "instance_type": offering["instance_type"], "count": offering["count"],
              "upfront_usd": offering["upfront_usd"]}
    audit("capacity.buy.intent", **fields)
    try:
        answer = (factory or _client)("ec2", offering["region"]).purchase_capacity_block(
            CapacityBlockOfferingId=offering["offering_id"], InstancePlatform=PLATFORM)
    except (BotoCoreError, ClientError) as exc:
        audit("capacity.buy.result", result="failed", error=str(exc), **fields)
        raise CloudError(f"PurchaseCapacityBlock failed: {exc}",
                         hint="Nothing was bought if AWS refused; check "
                              "`aws ec2 describe-capacity-reservations`.") from None
    reservation = answer.get("CapacityReservation") or {}
    bought = {"capacity_reservation_id": reservation.get("CapacityReservationId"),
              "state": reservation.get("State"), **fields}
    audit("capacity.buy.result", result="bought", **bought)
    return bought
