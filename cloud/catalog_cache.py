"""``dsinfra catalog refresh``: live prices from the AWS Pricing API and the spot price history,
kept in a dated cache file in the state directory. The bundled snapshot in dsinfra.catalog is
the fallback for anything the cache lacks, so every price still carries a date and a source.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

from dsinfra.catalog import BUNDLED_PRICES, INSTANCE_SPECS, Price, RegionPrices
from dsinfra.cloud.aws import client

PERMISSIONS = ("pricing:GetProducts", "ec2:DescribeSpotPriceHistory")
CACHE_NAME = "prices.json"
# The Pricing API answers in us-east-1 (also ap-south-1 and eu-central-1), whatever region is priced.
PRICING_REGION = "us-east-1"


def _term(field: str, value: str) -> dict:
    return {"Type": "TERM_MATCH", "Field": field, "Value": value}


def on_demand_filters(region: str, instance_type: str) -> list[dict]:
    return [_term("regionCode", region), _term("instanceType", instance_type),
            _term("operatingSystem", "Linux"), _term("preInstalledSw", "NA"),
            _term("capacitystatus", "Used"), _term("tenancy", "Shared"),
            _term("marketoption", "OnDemand")]


def _usd_per_hour(price_item: str) -> float | None:
    product = json.loads(price_item)
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None and dimension.get("unit", "Hrs") == "Hrs" and float(usd) > 0:
                return float(usd)
    return None


def fetch_on_demand(pricing, region: str, instance_type: str) -> float | None:
    pages = pricing.get_paginator("get_products").paginate(
        ServiceCode="AmazonEC2", Filters=on_demand_filters(region, instance_type),
        FormatVersion="aws_v1")
    for page in pages:
        for item in page.get("PriceList", []):
            usd = _usd_per_hour(item)
            if usd is not None:
                return usd
    return None


def fetch_spot(ec2, instance_types: list[str], now: datetime) -> dict[str, float]:
    """Current spot price per type: the highest across the region's AZs (an upper bound, so
    metering never under-counts a spot node wherever it landed)."""
    best: dict[str, float] = {}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=instance_types, ProductDescriptions=["Linux/UNIX"], StartTime=now)
    for page in pages:
        for entry in page.get("SpotPriceHistory", []):
            usd = float(entry["SpotPrice"])
            best[entry["InstanceType"]] = max(best.get(entry["InstanceType"], 0.0), usd)
    return best


def spot_prices(region: str, instance_types: list[str], now: datetime, *, ec2=None
                ) -> dict[str, float]:
    """``fetch_spot`` in ``region``, with the shipped EC2 client unless ``ec2`` is given."""
    if ec2 is None:
        from dsinfra.cloud.aws import client

        ec2 = client("ec2", region)
    return fetch_spot(ec2, instance_types, now)


def refresh(regions: Iterable[str], state: Path, now: datetime | None = None,
            pricing=None, ec2_for=None, on_retry=None) -> dict:
    """Query prices for every catalog type in ``regions`` and write the cache; returns it.
    ``on_retry(operation, attempt, max_attempts)`` hears of each retry of the clients made
    here (botocore retries a 5xx with backoff for seconds: the caller can say so)."""
    from dsinfra.cloud.aws import on_retry as watch_retries

    def made(service: str, region: str):
        new = client(service, region)
        return watch_retries(new, on_retry) if on_retry else new

    now = now or datetime.now(timezone.utc)
    pricing = pricing or made("pricing", PRICING_REGION)
    ec2_for = ec2_for or (lambda region: made("ec2", region))
    types = sorted(INSTANCE_SPECS)
    cache = {"fetched_at": now.isoformat(), "regions": {}}
    for region in regions:
        on_demand = {t: usd for t in types
                     if (usd := fetch_on_demand(pricing, region, t)) is not None}
        gpu_types = [t for t in types if INSTANCE_SPECS[t].has_gpus]
        cache["regions"][region] = {"on_demand": on_demand,
                                    "spot": fetch_spot(ec2_for(region), gpu_types, now)}
    path = state / CACHE_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=2, sort_keys=True))
    os.replace(tmp, path)  # a reader never sees half a cache
    return cache


def load_cached_prices(state: Path) -> tuple[dict[str, RegionPrices] | None,
                                              dict[tuple[str, str], Price]]:
    """(prices merged over the bundled snapshot, spot prices) from the cache; (None, {})
    when there is no cache, which means: the bundled snapshot."""
    path = state / CACHE_NAME
    if not path.exists():
        return None, {}
    try:
        cache = json.loads(path.read_text())
        as_of = date.fromisoformat(cache["fetched_at"][:10])
    except (ValueError, KeyError):
        return None, {}
    source = f"AWS Pricing API, dsinfra catalog refresh {cache['fetched_at'][:16]}Z"
    merged = dict(BUNDLED_PRICES)
    spot: dict[tuple[str, str], Price] = {}
    for region, found in cache.get("regions", {}).items():
        base = merged.get(region) or RegionPrices(region, {}, {})
        hourly = dict(base.on_demand_hourly)
        for itype, usd in found.get("on_demand", {}).items():
            hourly[itype] = Price(usd, "hour", as_of, source)
        merged[region] = replace(base, on_demand_hourly=hourly)
        for itype, usd in found.get("spot", {}).items():
            spot[(region, itype)] = Price(usd, "hour", as_of,
                                          "EC2 spot price history (highest AZ)")
    return merged, spot


def price_missing_types(prices: dict[str, RegionPrices] | None,
                        wanted: Iterable[tuple[str, str]], now: datetime,
                        pricing=None) -> dict[str, RegionPrices] | None:
    """``prices`` (None: the bundled snapshot) with the on-demand price of every (region,
    type) in ``wanted`` that it lacks, read from the Pricing API. A pair the API does not
    price, or an API that cannot be reached, stays missing: the meter then uses the family's
    upper bound and fails the stack, saying so."""
    from dsinfra.cloud.aws import read_errors

    table = prices or BUNDLED_PRICES
    missing = sorted((region, itype) for region, itype in wanted
                     if itype not in getattr(table.get(region), "on_demand_hourly", {}))
    if not missing:
        return prices
    merged = dict(table)
    try:
        pricing = pricing or client("pricing", PRICING_REGION)
        for region, itype in missing:
            usd = fetch_on_demand(pricing, region, itype)
            if usd is None:
                continue
            base = merged.get(region) or RegionPrices(region, {}, {})
            merged[region] = replace(base, on_demand_hourly={
                **base.on_demand_hourly,
                itype: Price(usd, "hour", now.date(), "AWS Pricing API (read by the check)")})
    except read_errors():
        pass  # unpriced: the upper bound applies and the stack is reported failed
    return merged
