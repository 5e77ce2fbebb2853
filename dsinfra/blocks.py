"""EC2 Capacity Blocks for ML as a stack sees them: the block's plain values, and the rules a
stack must keep to launch into one. Pure: the values come from ``ops/capacity.py``'s
pre-flight read (DescribeCapacityReservations) or from the stack file, never from here.

AWS facts these rules follow:
- a Capacity Block is a targeted reservation in one Availability Zone, and an instance cannot
  launch into it from a subnet of another zone
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-blocks-launch.html);
- "Thirty minutes before the reservation expires, we begin to terminate any instances that
  are still running in the Capacity Block", and its instances are already placed close
  together, "so there is no need to use a cluster placement group with a Capacity Block"
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-blocks-using.html).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dsinfra.budget import BLOCK_TEARDOWN_MARGIN

if TYPE_CHECKING:
    from dsinfra.config import StackConfig

CAPACITY_BLOCK = "capacity-block"  # DescribeCapacityReservations' ReservationType
# AWS starts terminating 30 min before the end; dsinfra tears down 30 min before that, so a
# cost check that runs every 15-30 minutes acts before AWS does.
AWS_TERMINATION_LEAD = timedelta(minutes=30)
TEARDOWN_MARGIN = BLOCK_TEARDOWN_MARGIN
UNKNOWN_OFFLINE = "block window unknown offline"


class CapacityBlock(BaseModel):
    """``dsinfra:capacityBlock``: what the reservation named by ``capacityReservationId`` is.
    ``dsinfra up`` writes it from AWS's answer; a user may write it for the offline plan."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True,
                              allow_inf_nan=False)

    availability_zone: str = Field(alias="availabilityZone",
                                   pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$")
    instance_type: str = Field(alias="instanceType")
    instance_count: int = Field(alias="instanceCount", ge=1, le=64)
    start: datetime
    end: datetime
    # None: AWS returns no price for a bought block (see ops/capacity.py); the budget
    # check then fails loudly until the stack file says what was paid.
    upfront_usd: float | None = Field(None, alias="upfrontUsd", ge=0, le=1_000_000_000)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        # Capacity Blocks were first sold in 2023; the teardown and window arithmetic needs
        # room on both sides (year 1 minus the margin overflows).
        try:
            year = value.astimezone(timezone.utc).year
        except OverflowError:
            year = 0
        if not 2000 <= year <= 9000:
            raise ValueError("a UTC time between the years 2000 and 9000")
        return value

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> "CapacityBlock":
        if self.end <= self.start:
            raise ValueError(f"end ({_iso(self.end)}) after start ({_iso(self.start)})")
        return self

    @property
    def teardown_at(self) -> datetime:
        """When dsinfra tears the stack down: before AWS starts terminating its instances."""
        return self.end - TEARDOWN_MARGIN

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def window(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"

    def to_dict(self) -> dict:
        return {"availability_zone": self.availability_zone,
                "instance_type": self.instance_type, "instance_count": self.instance_count,
                "start": _iso(self.start), "end": _iso(self.end),
                "teardown_at": _iso(self.teardown_at), "upfront_usd": self.upfront_usd}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def block_fit_problem(config: "StackConfig") -> tuple[str, object, str] | None:
    """(key, value, allowed) when the stack cannot launch into its block; None when it can.
    Checked at the door of plan, doctor and up: nothing is created on a mismatch."""
    block = config.capacity_block
    if block is None:
        return None
    if config.resolved_instance_type != block.instance_type:
        return ("instanceType", config.resolved_instance_type,
                f"{block.instance_type}: Capacity Block {config.capacity_reservation_id} "
                f"holds {block.instance_count}x {block.instance_type}")
    if config.resolved_node_count > block.instance_count:
        return ("nodeCount", config.resolved_node_count,
                f"at most {block.instance_count}: Capacity Block "
                f"{config.capacity_reservation_id} holds {block.instance_count}x "
                f"{block.instance_type}")
    if config.replicas is not None:
        from dsinfra.replicas import nodes_per_replica

        per = nodes_per_replica(config)
        if config.replicas.max * per > block.instance_count:
            return ("replicas.max", config.replicas.max,
                    f"at most {block.instance_count // per}: Capacity Block "
                    f"{config.capacity_reservation_id} holds {block.instance_count}x "
                    f"{block.instance_type}, {per} per replica")
    if config.availability_zone and config.availability_zone != block.availability_zone:
        return ("availabilityZone", config.availability_zone,
                f"{block.availability_zone} (the Capacity Block's zone) or no value")
    if not block.availability_zone.startswith(config.region):
        return ("region", config.region, f"the Capacity Block's region (its zone is "
                f"{block.availability_zone})")
    return None


def ttl_problem(config: "StackConfig", now: datetime) -> tuple[str, object, str] | None:
    """A TTL that outlives the block is refused, not clamped: the user asked for a time the
    block cannot give, and a silently shorter run is a surprise on a paid-up-front block."""
    block = config.capacity_block
    if block is None:
        return None
    latest = block.teardown_at
    if config.expires_at is not None:
        pinned = config.expiry(now)
        if pinned is not None and pinned > latest:
            return ("expiresAt", _iso(pinned), f"a time no later than {_iso(latest)} (the "
                    f"Capacity Block ends {_iso(block.end)}; AWS terminates its instances "
                    "from 30 minutes before, dsinfra tears down 60 minutes before)")
    elif config.ttl_hours is not None and now + timedelta(hours=config.ttl_hours) > latest:
        left_h = max((latest - now).total_seconds() / 3600, 0)
        return ("ttlHours", config.ttl_hours, f"at most {left_h:.1f} from now, or no value "
                f"(the TTL then defaults to {_iso(latest)}, 60 minutes before the Capacity "
                f"Block ends at {_iso(block.end)})")
    return None


def launch_window_problem(block: CapacityBlock, state: str, now: datetime) -> str | None:
    """Why instances cannot launch into the block now (AWS accepts launches only while it is
    active), or None."""
    if now >= block.teardown_at:
        return (f"the Capacity Block ends {_iso(block.end)} (teardown at "
                f"{_iso(block.teardown_at)}); it is over or about to be")
    if state != "active" or now < block.start:
        return (f"the Capacity Block is {state}: instances launch into it only while it is "
                f"active, from {_iso(block.start)}")
    return None
