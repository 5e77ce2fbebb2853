"""The current spot price of a spot stack's instance type, beside its on-demand price, for
``dsinfra plan``. Live (``plan --live``): EC2 DescribeSpotPriceHistory now, the highest of the
region's zones (the zone a node lands in is not known before ``up``; the highest never
understates). Offline: the spot prices ``dsinfra catalog refresh`` cached, with their date;
without a cache the spot price is unknown, and said so, never guessed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dsinfra.catalog import on_demand_price

if TYPE_CHECKING:
    from dsinfra.config import StackConfig

UNKNOWN_OFFLINE = ("spot price unknown offline: `dsinfra plan --live` asks EC2, or `dsinfra "
                   "catalog refresh` caches it")
HISTORY_SOURCE = "EC2 DescribeSpotPriceHistory, highest zone"


@dataclass(frozen=True)
class SpotQuote:
    instance_type: str
    region: str
    on_demand_hourly_usd: float
    spot_hourly_usd: float | None  # per node; None: unknown (``note`` says why)
    as_of: str | None
    source: str
    note: str = ""

    @property
    def saving_pct(self) -> float | None:
        if self.spot_hourly_usd is None or not self.on_demand_hourly_usd:
            return None
        return round(100 * (1 - self.spot_hourly_usd / self.on_demand_hourly_usd), 1)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "saving_pct": self.saving_pct}


def spot_quote(config: "StackConfig", *, live: bool, cached: dict | None = None,
               ec2_for: Callable[[str], Any] | None = None,
               now: datetime | None = None) -> SpotQuote | None:
    """None for an on-demand stack. ``cached``: (region, type) -> Price from the catalog cache;
    ``ec2_for``: region -> EC2 client (default: cloud/aws.py's)."""
    if not config.spot:
        return None
    itype, region = config.resolved_instance_type, config.region
    base = dict(instance_type=itype, region=region,
                on_demand_hourly_usd=on_demand_price(region, itype).usd)
    if live:
        return _live(base, ec2_for, now or datetime.now(timezone.utc))
    price = (cached or {}).get((region, itype))
    if price is None:
        return SpotQuote(**base, spot_hourly_usd=None, as_of=None, source="",
                         note=UNKNOWN_OFFLINE)
    return SpotQuote(**base, spot_hourly_usd=price.usd, as_of=price.as_of.isoformat(),
                     source=f"{price.source}, cached by dsinfra catalog refresh")


def _live(base: dict, ec2_for, now: datetime) -> SpotQuote:
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.cloud.catalog_cache import spot_prices

    try:
        found = spot_prices(base["region"], [base["instance_type"]], now,
                            ec2=ec2_for(base["region"]) if ec2_for else None)
    except (BotoCoreError, ClientError) as exc:
        return SpotQuote(**base, spot_hourly_usd=None, as_of=None, source="",
                         note=f"spot price unknown: EC2 did not answer ({exc})")
    usd = found.get(base["instance_type"])
    if usd is None:
        return SpotQuote(**base, spot_hourly_usd=None, as_of=None, source=HISTORY_SOURCE,
                         note=f"no spot price for {base['instance_type']} in "
                              f"{base['region']}: EC2 lists no spot market for it now")
    return SpotQuote(**base, spot_hourly_usd=usd, as_of=now.date().isoformat(),
                     source=HISTORY_SOURCE)
