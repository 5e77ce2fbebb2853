"""The one pricer: what a resource costs per hour, from a description of it. Pure.

``plan`` (ops/plan.py) describes the resources the Pulumi program would create; the meter
(dsinfra/spend.py) describes the ones the inventory found live. Both price the description
here, so a rule (an internet-facing load balancer's public IPv4 per zone, an instance's
auto-assigned address, spot at its price or the on-demand ceiling, a Capacity Block's compute
paid up front) is written once and the two cannot drift apart; a property test prices each
kind both ways on moto and requires the same number.

A description is what AWS bills by, not how we learned it: kind, region, and per kind the
instance type and market, the volume's size and type, the public IPv4 addresses held.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsinfra.catalog import HOURS_PER_MONTH, Price, RegionPrices, on_demand_price, other_price

KINDS = ("instance", "volume", "address", "nat_gateway", "load_balancer", "snapshot")


@dataclass(frozen=True)
class Described:
    kind: str  # one of KINDS
    region: str
    instance_type: str | None = None  # instance
    market: str = "on-demand"  # instance: on-demand | spot | capacity-block
    size_gib: float = 0.0  # volume; snapshot: the size of the volume it was taken from
    volume_type: str = "gp3"  # volume
    public_ipv4: int = 0  # addresses it holds: an instance's auto-assigned one, an
    # internet-facing load balancer's one per zone (an Elastic IP is its own ``address``)


@dataclass(frozen=True)
class Part:
    """One priced part of a resource (its compute, its public IPv4s, ...)."""

    part: str  # "" for the resource itself, else what the part is ("public IPv4")
    price: Price
    quantity: float
    hourly_usd: float
    note: str = ""
    billed_while_stopped: bool = True  # an instance's compute and auto-assigned IPv4 stop
    caveat: bool = False  # the price is not exactly this item's own: the meter says so


def _part(part: str, price: Price, quantity: float = 1, note: str = "",
          billed_while_stopped: bool = True, caveat: bool = False) -> Part:
    per_hour = price.usd if price.unit == "hour" else price.usd / HOURS_PER_MONTH
    return Part(part, price, quantity, per_hour * quantity, note, billed_while_stopped, caveat)


def price_parts(d: Described, prices: dict[str, RegionPrices] | None = None,
                spot_prices: dict[tuple[str, str], Price] | None = None) -> list[Part]:
    """The parts ``d`` bills per hour while it bills. ``spot_prices`` ((region, type) ->
    price): a spot instance without one is priced at on-demand, the ceiling, saying so.
    Raises KeyError when the catalog has no price (the caller decides: plan refuses, the
    meter takes an upper bound and fails the stack)."""
    region = d.region
    if d.kind == "instance":
        od = on_demand_price(region, d.instance_type or "", prices)
        if d.market == "capacity-block":
            parts = [Part("", od, 1, 0.0, "Capacity Block: compute paid up front", False,
                          caveat=True)]
        elif d.market == "spot":
            spot = (spot_prices or {}).get((region, d.instance_type or ""))
            parts = [_part("", spot, note="spot", billed_while_stopped=False) if spot else
                     _part("", od, note="spot: on-demand price shown as the ceiling (no "
                           "spot price history read: `dsinfra catalog refresh`)",
                           billed_while_stopped=False, caveat=True)]
        else:
            parts = [_part("", od, note="on-demand", billed_while_stopped=False)]
        if d.public_ipv4:
            # An auto-assigned public IPv4 is released when the instance stops.
            parts.append(_part("public IPv4", other_price(region, "public_ipv4_hour", prices),
                               d.public_ipv4, "public IPv4 address",
                               billed_while_stopped=False))
        return parts
    if d.kind == "volume":
        exact = d.volume_type == "gp3"
        note = f"{d.size_gib:g} GiB gp3" if exact else \
            f"{d.volume_type} priced as gp3"
        return [_part("", other_price(region, "ebs_gp3_gb_month", prices), d.size_gib, note,
                      caveat=not exact)]
    if d.kind == "snapshot":
        # AWS bills the blocks a snapshot stores, which for an image's first snapshot is the
        # data written to the volume, at most its size (AWS re:Post, "How am I billed for
        # Amazon EBS snapshots?"): the volume's size is the ceiling the meter can read.
        price = other_price(region, "ebs_snapshot_gb_month", prices)
        note = (f"snapshot of a {d.size_gib:g} GiB volume, priced at the volume's size (the "
                "ceiling of what it stores)" + ("; price assumed, no source bundled"
                                                if price.assumed else ""))
        return [_part("", price, d.size_gib, note, caveat=True)]
    if d.kind == "address":
        return [_part("", other_price(region, "public_ipv4_hour", prices),
                      note="public IPv4 address")]
    if d.kind == "nat_gateway":
        return [_part("", other_price(region, "nat_gateway_hour", prices),
                      note="plus data processed per GB")]
    if d.kind == "load_balancer":
        parts = [_part("", other_price(region, "load_balancer_hour", prices),
                       note="plus capacity units")]
        if d.public_ipv4:
            parts.append(_part("public IPv4", other_price(region, "public_ipv4_hour", prices),
                               d.public_ipv4,
                               "one public IPv4 per zone of an internet-facing load balancer"))
        return parts
    raise KeyError(d.kind)


def hourly_usd(d: Described, prices: dict[str, RegionPrices] | None = None,
               spot_prices: dict[tuple[str, str], Price] | None = None) -> float:
    return sum(p.hourly_usd for p in price_parts(d, prices, spot_prices))
