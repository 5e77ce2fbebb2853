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
from typing import Any

from dsinfra.errors import CloudError, ConfigError

ClientFactory = Callable[..., Any]
UPFRONT_TAG = "dsinfra:upfront-usd"


def describe_reservation(factory: ClientFactory, region: str, reservation_id: str
                         ) -> dict[str, Any]:
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
    return {"id": r["CapacityReservationId"], "type": r.get("ReservationType", "default"),
            "availability_zone": r["AvailabilityZone"], "instance_type": r["InstanceType"],
            "instance_count": int(r["TotalInstanceCount"]),
            "available_count": int(r.get("AvailableInstanceCount", 0)),
            "start": r.get("StartDate"), "end": r.get("EndDate"), "state": r["State"],
            "tags": tags}
