"""The boto3 edge for one capacity reservation: what DescribeCapacityReservations says of it.

What AWS really returns (botocore's ec2 service model, CapacityReservation): the zone
(``AvailabilityZone``), ``InstanceType``, ``TotalInstanceCount``, ``StartDate``, ``EndDate``,
``State`` and ``ReservationType`` (``default`` | ``capacity-block``), and its ``Tags``. It
carries no price: the upfront fee is in DescribeCapacityBlockOfferings before the purchase
only, and neither PurchaseCapacityBlock's answer nor DescribeCapacityBlocks holds it. So
``dsinfra capacity buy`` tags the reservation with the fee it charged (``UPFRONT_TAG``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict

from dsinfra.errors import CloudError, ConfigError

ClientFactory = Callable[..., Any]
UPFRONT_TAG = "dsinfra:upfront-usd"


class Reservation(TypedDict):
    """One capacity reservation as ``describe_reservation`` returns it (JSON-ready: the CLI
    prints it with ``--json`` as it is, so a TypedDict rather than a dataclass)."""

    id: str
    type: str  # "default" | "capacity-block"
    availability_zone: str
    instance_type: str
    instance_count: int
    available_count: int
    start: datetime | None
    end: datetime | None
    state: str
    tags: dict[str, str]


class OfferingRow(TypedDict):
    """One Capacity Block offering as ``offering_rows`` returns it (``capacity offers --json``
    prints these rows as they are)."""

    offering_id: str
    instance_type: str
    region: str
    availability_zone: str
    count: int
    start: datetime
    end: datetime
    duration_hours: float
    upfront_usd: float
    currency: str
    usd_per_instance_hour: float | None


def describe_reservation(factory: ClientFactory, region: str, reservation_id: str
                         ) -> Reservation:
    """The reservation as plain values; a reservation AWS does not know is bad input."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        found = factory("ec2", region).describe_capacity_reservations(
            CapacityReservationIds=[reservation_id])["CapacityReservations"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code.startswith("InvalidCapacityReservationId"):
            raise ConfigError("dsinfra:capacityReservationId", reservation_id,
                              f"a capacity reservation of this account in {region} (AWS: "
                              f"{code})") from None
        raise CloudError(f"DescribeCapacityReservations in {region} failed: {exc}",
                         hint="Check credentials (ec2:DescribeCapacityReservations).") from None
    except (BotoCoreError, ResponseParserError) as exc:  # the latter: not AWS's XML
        detail = str(exc).replace("\n", " ")[:200]
        raise CloudError(f"DescribeCapacityReservations in {region} failed: {detail}") from None
    if not found:
        raise ConfigError("dsinfra:capacityReservationId", reservation_id,
                          f"a capacity reservation of this account in {region}")
    r = found[0]
    tags = {t["Key"]: t["Value"] for t in r.get("Tags") or []}
    return Reservation(**{"id": r["CapacityReservationId"], "type": r.get("ReservationType", "default"),
            "availability_zone": r["AvailabilityZone"], "instance_type": r["InstanceType"],
            "instance_count": int(r["TotalInstanceCount"]),
            "available_count": int(r.get("AvailableInstanceCount", 0)),
            "start": r.get("StartDate"), "end": r.get("EndDate"), "state": r["State"],
            "tags": tags})


def offering_rows(factory: ClientFactory, region: str, instance_type: str, count: int,
                  duration_h: int) -> list[OfferingRow]:
    """DescribeCapacityBlockOfferings in ``region`` as plain rows (``_row``); a refusal or an
    answer that is not AWS's is a ``CloudError`` naming the region."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        pages = factory("ec2", region).get_paginator(
            "describe_capacity_block_offerings").paginate(
            InstanceType=instance_type, InstanceCount=count, CapacityDurationHours=duration_h)
        return [_row(o, region) for page in pages
                for o in page.get("CapacityBlockOfferings", [])]
    except (BotoCoreError, ClientError, ResponseParserError) as exc:
        # ResponseParserError: an answer that is not AWS's XML (a proxy's HTML page)
        detail = str(exc).replace("\n", " ")[:200]
        raise CloudError(f"DescribeCapacityBlockOfferings in {region} failed: {detail}",
                         hint="Check credentials (ec2:DescribeCapacityBlockOfferings) "
                              "and the region.") from None


def _row(offering: dict[str, Any], region: str) -> OfferingRow:
    upfront = float(offering["UpfrontFee"])
    count = int(offering["InstanceCount"])
    hours = int(offering["CapacityBlockDurationHours"]) + int(
        offering.get("CapacityBlockDurationMinutes") or 0) / 60
    return OfferingRow(**{"offering_id": offering["CapacityBlockOfferingId"],
            "instance_type": offering["InstanceType"], "region": region,
            "availability_zone": offering["AvailabilityZone"], "count": count,
            "start": offering["StartDate"], "end": offering["EndDate"],
            "duration_hours": hours, "upfront_usd": upfront,
            "currency": offering.get("CurrencyCode", "USD"),
            "usd_per_instance_hour": round(upfront / (count * hours), 4) if hours else None})


class PurchaseRefused(Exception):
    """AWS answered PurchaseCapacityBlock with an error (or the call never went out):
    nothing was bought."""


class PurchaseUnreadable(Exception):
    """The purchase went out and its answer is not AWS's XML: the block may have been
    bought."""


def purchase_block(factory: ClientFactory, region: str, offering_id: str, platform: str,
                   tags: list[dict[str, Any]]) -> dict[str, Any]:
    """PurchaseCapacityBlock: the reservation it made (``CapacityReservationId``,
    ``State``...), or ``PurchaseRefused`` / ``PurchaseUnreadable``."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        answer = factory("ec2", region).purchase_capacity_block(
            CapacityBlockOfferingId=offering_id, InstancePlatform=platform,
            TagSpecifications=tags)
    except (BotoCoreError, ClientError) as exc:
        raise PurchaseRefused(str(exc)) from None
    except ResponseParserError as exc:
        raise PurchaseUnreadable(str(exc).replace("\n", " ")[:200]) from None
    return answer.get("CapacityReservation") or {}
