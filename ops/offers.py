"""``dsinfra offers MODEL``: every instance type x node count x region that holds the model,
cheapest first, from the dated catalog; with credentials also the vCPU quota headroom (Service
Quotas, the doctor's reader) and the spot placement score (EC2 GetSpotPlacementScores).

For each type and region the row is the fewest nodes that hold the model (more nodes of the
same type hold it too, at a higher price); multi-node only on types with EFA, as ``size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from dsinfra.catalog import INSTANCE_SPECS, RegionPrices, on_demand_price
from dsinfra.errors import UserError
from dsinfra.sizing import size_model

ClientFactory = Callable[..., Any]
OFFLINE_NOTE = ("offline: no AWS credentials, so prices come from the catalog (dated, with "
                "sources); no quota headroom and no spot placement score")


@dataclass
class Offer:
    instance_type: str
    gpu_model: str
    nodes: int
    region: str
    tensor_parallel: int
    pipeline_parallel: int
    hourly_usd: float
    price_as_of: str
    price_source: str
    vcpus_needed: int
    precision_native: bool = True  # False: runs the precision without hardware support
    quota_headroom_vcpus: float | None = None  # limit minus vCPUs running in that family
    quota_ok: bool | None = None
    spot_placement_score: int | None = None  # 1-10, AWS's likelihood a spot request succeeds
    spot_hourly_usd: float | None = None  # all nodes, at the cached spot price; None: unknown
    spot_as_of: str | None = None  # when `dsinfra catalog refresh` read the spot price


def find_offers(model: str, precision: str, context: int, regions: Sequence[str], *,
                prices: dict[str, RegionPrices] | None = None,
                factory: ClientFactory | None = None,
                spot_prices: dict | None = None) -> dict[str, Any]:
    """The offers, cheapest first; ``factory`` None means offline (and says so)."""
    table = prices or {}
    from dsinfra.catalog import BUNDLED_PRICES

    known = {**BUNDLED_PRICES, **table}
    for region in regions:
        if region not in known:
            raise UserError(f"invalid value for --region: {region!r}; allowed: a region with "
                            f"prices: {', '.join(sorted(known))} (`dsinfra catalog refresh "
                            f"--region {region}` adds one)")
    offers = []
    for region in regions:
        sizing = size_model(model, precision, context, 1, region=region, prices=known)
        offers += [_offer(c, region, known) for c in sizing.candidates if c.fits]
    offers.sort(key=lambda o: (o.hourly_usd, o.instance_type, o.region))
    for offer in offers:  # the spot prices `dsinfra catalog refresh` cached, with their date
        if spot := (spot_prices or {}).get((offer.region, offer.instance_type)):
            offer.spot_hourly_usd = round(spot.usd * offer.nodes, 4)
            offer.spot_as_of = spot.as_of.isoformat()
    notes = [OFFLINE_NOTE] if factory is None else annotate(offers, regions, factory)
    return {"model": model, "precision": precision, "context": context,
            "regions": list(regions), "offline": factory is None, "notes": notes,
            "offers": [asdict(o) for o in offers]}


def _offer(candidate, region: str, prices) -> Offer:
    price = on_demand_price(region, candidate.instance_type, prices)
    spec = INSTANCE_SPECS[candidate.instance_type]
    return Offer(candidate.instance_type, candidate.gpu_model, candidate.nodes, region,
                 candidate.tensor_parallel, candidate.pipeline_parallel, candidate.hourly_usd,
                 price.as_of.isoformat(), price.source, spec.vcpus * candidate.nodes,
                 candidate.precision_native)


def annotate(offers: list[Offer], regions: Sequence[str], factory: ClientFactory) -> list[str]:
    """Quota headroom per (region, quota family) and spot scores per (type, nodes)."""
    from dsinfra.cloud.preflight import read_quota, running_vcpus
    from dsinfra.ops.doctor import ON_DEMAND_QUOTA_CODES

    notes: list[str] = []
    headroom: dict[tuple[str, str], float | None] = {}
    for offer in offers:
        family = INSTANCE_SPECS[offer.instance_type].quota_family
        key = (offer.region, family)
        if key not in headroom:
            limit = read_quota(factory, offer.region, ON_DEMAND_QUOTA_CODES[family])
            headroom[key] = None if limit is None else limit - running_vcpus(
                factory, offer.region, family, stack="")
        offer.quota_headroom_vcpus = headroom[key]
        offer.quota_ok = None if headroom[key] is None else headroom[key] >= offer.vcpus_needed
    if any(h is None for h in headroom.values()):
        notes.append("quota headroom unknown where Service Quotas did not answer")
    scores = spot_scores({(o.instance_type, o.nodes) for o in offers}, regions, factory)
    for offer in offers:
        offer.spot_placement_score = scores.get((offer.instance_type, offer.nodes,
                                                 offer.region))
    if not scores:
        notes.append("no spot placement scores: AWS did not answer GetSpotPlacementScores")
    return notes


def spot_scores(shapes: set[tuple[str, int]], regions: Sequence[str], factory: ClientFactory
                ) -> dict[tuple[str, int, str], int]:
    """AWS's 1-10 spot placement score per (type, nodes, region); missing where it declines."""
    from dsinfra.cloud.preflight import spot_placement_scores

    return spot_placement_scores(factory, shapes, list(regions))
