"""EC2 Capacity Blocks for ML: the offerings for an instance type, count and duration.

``dsinfra capacity offers`` reads DescribeCapacityBlockOfferings in each region; the rules for
what may be asked follow AWS's API reference: 1 to 64 instances, a duration in 1-day steps up to
14 days and in 7-day steps up to 182 days.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dsinfra.catalog import GPU_INSTANCE_TYPES
from dsinfra.errors import CloudError, ConfigError, UserError

if TYPE_CHECKING:
    from datetime import datetime

    from dsinfra.config import StackConfig

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
    from dsinfra.cloud.capacity_blocks import offering_rows

    check_request(instance_type, count, duration_h)
    factory = factory or _client
    rows: list[dict[str, Any]] = []
    for region in regions:
        rows += offering_rows(factory, region, instance_type, count, duration_h)
    rows.sort(key=lambda r: (r["start"], r["upfront_usd"], r["region"]))
    return rows


OFFERING_ID = r"^cb-[0-9a-z]{8,32}$"
PLATFORM = "Linux/UNIX"  # the DLAMI is Ubuntu


def find_offering(offering_id: str, instance_type: str, count: int, duration_h: int,
                  region: str, factory: ClientFactory | None = None) -> dict[str, Any]:
    """The offering as AWS lists it now (its price is what the user must type)."""
    import re

    if not re.fullmatch(OFFERING_ID, offering_id):
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


def purchase_tags(upfront_usd: float) -> list[dict[str, Any]]:
    """The fee on the reservation itself: AWS returns no price for a bought block, and
    ``up`` counts this one in the budget (``resolve_block``)."""
    from dsinfra.cloud.capacity_blocks import UPFRONT_TAG
    from dsinfra.tags import format_budget

    return [{"ResourceType": "capacity-reservation",
             "Tags": [{"Key": UPFRONT_TAG, "Value": format_budget(upfront_usd)}]}]


def buy(offering: dict[str, Any], typed_price: str, *, factory: ClientFactory | None = None,
        audit: Callable[..., Any] = lambda kind, **fields: None) -> dict[str, Any]:
    """Purchase ``offering`` only when ``typed_price`` is its upfront fee; audited before and
    after the call, so a crash in between still leaves the intent on record."""
    from dsinfra.cloud.capacity_blocks import (PurchaseRefused, PurchaseUnreadable,
                                               purchase_block)

    if not typed_price_matches(typed_price, offering["upfront_usd"]):
        raise UserError(f"the price typed ({typed_price!r}) is not the offering's upfront fee "
                        f"${offering['upfront_usd']:,.2f}; nothing was bought")
    fields = {"offering_id": offering["offering_id"], "region": offering["region"],
              "instance_type": offering["instance_type"], "count": offering["count"],
              "upfront_usd": offering["upfront_usd"]}
    audit("capacity.buy.intent", **fields)
    try:
        reservation = purchase_block(factory or _client, offering["region"],
                                     offering["offering_id"], PLATFORM,
                                     purchase_tags(offering["upfront_usd"]))
    except PurchaseRefused as exc:
        audit("capacity.buy.result", result="failed", error=str(exc), **fields)
        raise CloudError(f"PurchaseCapacityBlock failed: {exc}",
                         hint="Nothing was bought if AWS refused; check "
                              "`aws ec2 describe-capacity-reservations`.") from None
    except PurchaseUnreadable as exc:  # the request went out; the answer is not AWS's XML
        detail = str(exc)
        audit("capacity.buy.result", result="unknown", error=detail, **fields)
        raise CloudError(f"PurchaseCapacityBlock: the answer could not be read ({detail}); "
                         "the block may have been bought",
                         hint="Check `aws ec2 describe-capacity-reservations` before buying "
                              "again.") from None
    bought = {"capacity_reservation_id": reservation.get("CapacityReservationId"),
              "state": reservation.get("State"), **fields}
    audit("capacity.buy.result", result="bought", **bought)
    return bought


# --- launching into a bought block: the pre-flight read of capacityReservationId -----------

PURCHASE_RESULT = "capacity.buy.result"


def resolve_block(config: "StackConfig", *, factory: ClientFactory | None = None,
                  purchases: Sequence[dict[str, Any]] = ()) -> tuple["StackConfig", str]:
    """``config`` with ``capacityBlock`` (and its zone) filled from AWS when
    ``capacityReservationId`` names a Capacity Block, and the reservation's state; the config
    is unchanged for any other reservation.
    A stack that cannot launch into the block (type, count, zone) stops here, exit 2.

    The upfront fee, which AWS does not return for a bought block, comes from the
    reservation's ``dsinfra:upfront-usd`` tag (``capacity buy`` sets it), else the audit
    log's purchase record, else the stack file's ``capacityBlock.upfrontUsd``; else it stays
    unknown and the budget check fails until it is stated."""
    from dsinfra.blocks import CAPACITY_BLOCK, CapacityBlock
    from dsinfra.cloud.capacity_blocks import UPFRONT_TAG, describe_reservation
    from dsinfra.config import parse_stack_config

    reservation_id = config.capacity_reservation_id
    if reservation_id is None:
        return config, ""
    found = describe_reservation(factory or _client, config.region, reservation_id)
    if found["type"] != CAPACITY_BLOCK:
        if config.capacity_block is not None:
            raise ConfigError("dsinfra:capacityBlock", config.capacity_block.window(),
                              f"no value: {reservation_id} is an On-Demand Capacity "
                              "Reservation, not a Capacity Block")
        return config, found["state"]
    block = CapacityBlock(availability_zone=found["availability_zone"],
                          instance_type=found["instance_type"],
                          instance_count=found["instance_count"], start=found["start"],
                          end=found["end"], upfront_usd=_upfront_usd(
                              reservation_id, found["tags"].get(UPFRONT_TAG), purchases,
                              config.capacity_block))
    values = config.model_dump(mode="json", by_alias=True, exclude_none=True,
                               exclude={"stack"})
    values["capacityBlock"] = block.model_dump(mode="json", by_alias=True, exclude_none=True)
    values["availabilityZone"] = block.availability_zone if not config.availability_zone \
        else config.availability_zone
    return parse_stack_config(config.stack, values, source=f"the stack with Capacity Block "
                              f"{reservation_id} ({found['state']})"), found["state"]


def _upfront_usd(reservation_id: str, tagged: str | None,
                 purchases: Sequence[dict[str, Any]], stated) -> float | None:
    if tagged is not None:
        try:
            return float(tagged)
        except ValueError:
            pass  # a hand-edited tag: fall through to the purchase record
    for record in reversed(list(purchases)):
        if record.get("kind") == PURCHASE_RESULT and record.get("result") == "bought" and \
                record.get("capacity_reservation_id") == reservation_id:
            return float(record["upfront_usd"])
    return stated.upfront_usd if stated is not None else None


def block_config_value(config: "StackConfig") -> str:
    """``dsinfra:capacityBlock`` as the Pulumi config value the program decodes (JSON)."""
    import json

    assert config.capacity_block is not None
    return json.dumps(config.capacity_block.model_dump(mode="json", by_alias=True,
                                                       exclude_none=True))


def require_launchable(config: "StackConfig", state: str, now: "datetime") -> None:
    """The door of ``up`` on a Capacity Block: a TTL past the block is refused (exit 2), and
    so is a launch outside the block's active window; nothing is created."""
    from dsinfra.blocks import launch_window_problem, ttl_problem

    if config.capacity_block is None:
        return
    if problem := ttl_problem(config, now):
        raise ConfigError(f"dsinfra:{problem[0]}", problem[1], problem[2])
    if why := launch_window_problem(config.capacity_block, state, now):
        raise UserError(f"cannot launch into {config.capacity_reservation_id}: {why}; nothing "
                        "was created", hint="Run `dsinfra up` again inside the block's window "
                        f"({config.capacity_block.window()}).")
