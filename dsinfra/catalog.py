"""Instance catalog: what each supported EC2 type has, and a dated snapshot of what it costs.

Prices change (p5.48xlarge fell from $98.32/h to $55.04/h in 2025-26), so every price carries
the date it was read and where it came from; ``dsinfra catalog refresh`` replaces the snapshot
with live Pricing API answers in a local cache, and this bundled snapshot stays the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

HOURS_PER_MONTH = 730  # AWS's own convention for monthly estimates (8,760 h / 12)

PRICES_AS_OF = date(2026, 7, 20)
PRICE_SOURCE = (
    "karpenter-provider-aws zz_generated.pricing_aws.go, generated 2026-07-20 from the AWS "
    "Pricing API (us-east-1)"
)
# [KP] is us-east-1 only. For us-west-2 the snapshot reads SkyPilot's published AWS catalog
# (skypilot-org/skypilot-catalog catalogs/v7/aws/vms.csv at commit 27f67dd, built from the AWS
# Pricing API; its commit is undated but older than AWS's 2025-06 P-family price cut: it lists
# p5.48xlarge at $98.32). Per type, in that file:
# - g5, g6, g6e, gr6 (every size in this catalog): the us-west-2 price equals the us-east-1
#   price, and that us-east-1 price is the one [KP] still lists on 2026-07-20, so the number is
#   sourced, not assumed (read 2026-11-30, rows "<type>,...,us-west-2,usw2-az*").
# - p4d, p4de, p5: us-west-2 equal to us-east-1 there too, but at the pre-cut prices; the
#   post-cut us-west-2 price is not in any source found, so it stays an assumption.
# - p5en, p6-b200, t3.micro, and the other items (EBS, NAT, IPv4, NLB): not checked, assumed.
# An assumed price is flagged (Price.assumed): `dsinfra catalog` and `plan` say so, and
# `dsinfra catalog refresh` replaces it with the Pricing API's answer.
US_WEST_2_SOURCE = ("assumed equal to us-east-1 ([KP] lists us-east-1 only; no us-west-2 source "
                    "found); `dsinfra catalog refresh --region us-west-2` reads the real one")
US_WEST_2_PRE_CUT_SOURCE = (
    "assumed equal to us-east-1: skypilot-org/skypilot-catalog catalogs/v7/aws/vms.csv @27f67dd "
    "lists them equal before the 2025-06 price cut, no source after it; refresh to confirm")
US_WEST_2_CONFIRMED_SOURCE = (
    "skypilot-org/skypilot-catalog catalogs/v7/aws/vms.csv @27f67dd (AWS Pricing API, pre-2025-06 "
    "snapshot): us-west-2 equal to us-east-1, whose price [KP] lists unchanged on 2026-07-20")
US_WEST_2_CONFIRMED = ("g5", "g6", "g6e", "gr6")
US_WEST_2_PRE_CUT = ("p4d", "p4de", "p5")
# p5e.48xlarge has no on-demand price in [KP] (AWS sells it through Capacity Blocks): it is in
# the catalog for its specs, and the sizer and `offers` skip it until a price is known.

QuotaFamily = Literal["P", "G", "Standard"]
EfaInterfaceType = Literal["interface", "efa", "efa-only"]


@dataclass(frozen=True)
class InstanceSpec:
    """Hardware facts for one EC2 instance type (AWS instance-type guide, Nov 2026)."""

    name: str
    gpu_model: str | None
    gpu_count: int
    gpu_memory_gib: int  # per GPU, as marketed (A10G 24, A100 40/80, H100 80, H200 141)
    gpu_memory_mib_visible: int  # per GPU, what nvidia-smi reports as total memory
    vcpus: int
    memory_gib: int
    efa_interfaces: int
    network_cards: int
    nvme_disks: int
    nvme_disk_gb: int
    nvswitch: bool  # GPUs joined by NVSwitch: needs nvidia-fabricmanager on the host
    fp8_native: bool  # Hopper and Ada have FP8 tensor cores; Ampere (A100, A10G) does not
    quota_family: QuotaFamily

    @property
    def has_gpus(self) -> bool:
        return self.gpu_count > 0

    @property
    def total_gpu_memory_gib(self) -> int:
        return self.gpu_count * self.gpu_memory_gib

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


def _spec(name, gpu_model, gpus, gib, mib, vcpus, ram, efa, cards, nvme, nvme_gb, nvsw, fp8, quota):
    return InstanceSpec(name, gpu_model, gpus, gib, mib, vcpus, ram, efa, cards, nvme, nvme_gb,
                        nvsw, fp8, quota)


INSTANCE_SPECS: dict[str, InstanceSpec] = {
    s.name: s
    for s in (
        _spec("g5.xlarge", "A10G", 1, 24, 23028, 4, 16, 0, 1, 1, 250, False, False, "G"),
        _spec("g5.2xlarge", "A10G", 1, 24, 23028, 8, 32, 0, 1, 1, 450, False, False, "G"),
        _spec("g5.4xlarge", "A10G", 1, 24, 23028, 16, 64, 0, 1, 1, 600, False, False, "G"),
        _spec("g5.12xlarge", "A10G", 4, 24, 23028, 48, 192, 1, 1, 1, 3800, False, False, "G"),
        _spec("g5.48xlarge", "A10G", 8, 24, 23028, 192, 768, 1, 1, 2, 3800, False, False, "G"),
        # L4: 22,888 MiB per GPU is DescribeInstanceTypes' MemoryInfo (the SkyPilot catalog's
        # GpuInfo column); no nvidia-smi recording of ours yet, so the check's tolerance applies.
        # EFA on g6/g6e/gr6 is not claimed (the reference marks g6e's as disputed): they count
        # as single-node types, and nothing attaches EFA to them, until a recording confirms it.
        _spec("g6.xlarge", "L4", 1, 24, 22888, 4, 16, 0, 1, 1, 250, False, True, "G"),
        _spec("g6.2xlarge", "L4", 1, 24, 22888, 8, 32, 0, 1, 1, 450, False, True, "G"),
        _spec("g6.4xlarge", "L4", 1, 24, 22888, 16, 64, 0, 1, 1, 600, False, True, "G"),
        _spec("g6.12xlarge", "L4", 4, 24, 22888, 48, 192, 0, 1, 4, 940, False, True, "G"),
        _spec("g6.24xlarge", "L4", 4, 24, 22888, 96, 384, 0, 1, 4, 940, False, True, "G"),
        _spec("g6.48xlarge", "L4", 8, 24, 22888, 192, 768, 0, 1, 8, 940, False, True, "G"),
        _spec("gr6.4xlarge", "L4", 1, 24, 22888, 16, 128, 0, 1, 1, 600, False, True, "G"),
        _spec("gr6.8xlarge", "L4", 1, 24, 22888, 32, 256, 0, 1, 1, 900, False, True, "G"),
        _spec("g6e.xlarge", "L40S", 1, 48, 46068, 4, 32, 0, 1, 1, 250, False, True, "G"),
        _spec("g6e.2xlarge", "L40S", 1, 48, 46068, 8, 64, 0, 1, 1, 450, False, True, "G"),
        _spec("g6e.12xlarge", "L40S", 4, 48, 46068, 48, 384, 0, 1, 2, 1900, False, True, "G"),
        _spec("g6e.24xlarge", "L40S", 4, 48, 46068, 96, 768, 0, 1, 2, 1900, False, True, "G"),
        _spec("g6e.48xlarge", "L40S", 8, 48, 46068, 192, 1536, 0, 1, 4, 1900, False, True, "G"),
        _spec("p4d.24xlarge", "A100", 8, 40, 40960, 96, 1152, 4, 4, 8, 1000, True, False, "P"),
        _spec("p4de.24xlarge", "A100", 8, 80, 81920, 96, 1152, 4, 4, 8, 1000, True, False, "P"),
        _spec("p5.48xlarge", "H100", 8, 80, 81559, 192, 2048, 32, 32, 8, 3800, True, True, "P"),
        _spec("p5e.48xlarge", "H200", 8, 141, 143771, 192, 2048, 32, 32, 8, 3840, True, True,
              "P"),
        _spec("p5en.48xlarge", "H200", 8, 141, 143771, 192, 2048, 16, 16, 8, 3840, True, True,
              "P"),
        # B200: AWS markets 179 GB per GPU (1,432 GB per node); 183,296 MiB = 179 GiB is the
        # conservative figure (a p6-b200 host reports "B200 183GB", pplx-garden's B200 notes).
        _spec("p6-b200.48xlarge", "B200", 8, 179, 183296, 192, 2048, 8, 8, 8, 3840, True,
              True, "P"),
        # Not a GPU type: the bastion of the private tiers.
        _spec("t3.micro", None, 0, 0, 0, 2, 1, 0, 1, 0, 0, False, False, "Standard"),
    )
}

BASTION_INSTANCE_TYPE = "t3.micro"

# Baseline network bandwidth, Gbit/s, per instance type: karpenter-provider-aws
# pkg/providers/instancetype/zz_generated.bandwidth.go (InstanceTypeBandwidthMegabits, generated
# from the EC2 instance-type guide's network specifications; read 2026-12-05 at commit 01a436f),
# divided by 1,000. The baseline, not the "up to" burst: a small type bursts for minutes only,
# and a weights copy outlasts that. Across network cards on p4d/p5/p6 (EFA included): one ENA
# interface's traffic, such as a copy from S3, gets one card's share (dsinfra/cold_start.py).
NETWORK_GBPS: dict[str, float] = {
    "g5.xlarge": 2.5, "g5.2xlarge": 5.0, "g5.4xlarge": 10.0, "g5.12xlarge": 40.0,
    "g5.48xlarge": 100.0,
    "g6.xlarge": 2.5, "g6.2xlarge": 5.0, "g6.4xlarge": 10.0, "g6.12xlarge": 40.0,
    "g6.24xlarge": 50.0, "g6.48xlarge": 100.0,
    "gr6.4xlarge": 10.0, "gr6.8xlarge": 25.0,
    "g6e.xlarge": 2.5, "g6e.2xlarge": 5.0, "g6e.12xlarge": 100.0, "g6e.24xlarge": 200.0,
    "g6e.48xlarge": 400.0,
    "p4d.24xlarge": 400.0, "p4de.24xlarge": 400.0,
    "p5.48xlarge": 3200.0, "p5e.48xlarge": 3200.0, "p5en.48xlarge": 3200.0,
    "p6-b200.48xlarge": 3200.0,
    "t3.micro": 0.064,
}


def network_gbps(instance_type: str) -> float:
    """Baseline network bandwidth in Gbit/s; KeyError for a type the catalog lacks."""
    return NETWORK_GBPS[instance_type]

_ON_DEMAND_USD_PER_HOUR_US_EAST_1: dict[str, float] = {
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.12xlarge": 5.672,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.4xlarge": 1.3232,
    "g6.12xlarge": 4.6016,
    "g6.24xlarge": 6.6752,
    "g6.48xlarge": 13.3504,
    "gr6.4xlarge": 1.5392,
    "gr6.8xlarge": 2.4464,
    "g6e.xlarge": 1.861,
    "g6e.2xlarge": 2.24208,
    "g6e.12xlarge": 10.49264,
    "g6e.24xlarge": 15.06559,
    "g6e.48xlarge": 30.13118,
    "p4d.24xlarge": 21.957642,
    "p4de.24xlarge": 27.44705,
    "p5.48xlarge": 55.04,
    "p5en.48xlarge": 63.296,
    "p6-b200.48xlarge": 113.9328,
    "t3.micro": 0.0104,
}

# Billable items other than instances, USD (us-east-1 public price list).
_OTHER_PRICES_US_EAST_1: dict[str, float] = {
    "ebs_gp3_gb_month": 0.08,  # 3,000 IOPS and 125 MB/s included
    "nat_gateway_hour": 0.045,  # plus $0.045 per GB processed (nat_gateway_gb)
    "nat_gateway_gb": 0.045,  # data processed; plan prices the weights' download with it
    "public_ipv4_hour": 0.005,  # every public IPv4, Elastic or auto-assigned, since 2024-02-01
    "load_balancer_hour": 0.0225,  # Network Load Balancer hour, plus NLCUs, not estimated
    # EBS snapshot storage (standard tier), what a baked replica image bills. NOT SOURCED:
    # ../shared/reference/aws-gpu-facts.md lists gp3, NAT and IPv4 only, and [KP] carries no
    # EBS prices; 0.05 is AWS's commonly quoted list price, flagged assumed everywhere
    # (``ASSUMED_OTHER``); `dsinfra catalog refresh` reads instance prices only, so it stays
    # assumed until a sourced number replaces it here.
    "ebs_snapshot_gb_month": 0.05,
}
# Items of the table above with no source for any region: their Price says ``assumed`` (and
# why, in its source) in us-east-1 too, so `dsinfra catalog`, `plan` and the meter say so.
ASSUMED_OTHER: dict[str, str] = {
    "ebs_snapshot_gb_month": (
        "no source bundled: not in aws-gpu-facts.md nor in the karpenter price snapshot; "
        "assumed as AWS's EBS snapshot list price (standard tier); confirm in the Pricing API"),
}


@dataclass(frozen=True)
class Price:
    """One price with its provenance: a number never travels without its date."""

    usd: float
    unit: str  # "hour" or "GB-month"
    as_of: date
    source: str
    assumed: bool = False  # copied from another region, not read for this one (say so)


@dataclass(frozen=True)
class RegionPrices:
    region: str
    on_demand_hourly: dict[str, Price]
    other: dict[str, Price]


def _other_unit(key: str) -> str:
    return "GB-month" if key.endswith("gb_month") else "GB" if key.endswith("_gb") else "hour"


def _region_prices(region: str, source: str, sources_by_family: dict[str, str] | None = None,
                   sourced: tuple[str, ...] = ()) -> RegionPrices:
    """``source`` for every price, except the families in ``sources_by_family``; a price
    is assumed unless its family is in ``sourced`` or the region is the one [KP] reads."""
    by_family = sources_by_family or {}

    def price(itype: str, usd: float, unit: str) -> Price:
        family = itype.split(".", 1)[0]
        return Price(usd, unit, PRICES_AS_OF, by_family.get(family, source),
                     assumed=region != "us-east-1" and family not in sourced)

    return RegionPrices(
        region=region,
        on_demand_hourly={k: price(k, v, "hour")
                          for k, v in _ON_DEMAND_USD_PER_HOUR_US_EAST_1.items()},
        other={k: (Price(v, _other_unit(k), PRICES_AS_OF, ASSUMED_OTHER[k], assumed=True)
                   if k in ASSUMED_OTHER else price(k, v, _other_unit(k)))
               for k, v in _OTHER_PRICES_US_EAST_1.items()},
    )


BUNDLED_PRICES: dict[str, RegionPrices] = {
    "us-east-1": _region_prices("us-east-1", PRICE_SOURCE),
    "us-west-2": _region_prices(
        "us-west-2", US_WEST_2_SOURCE,
        {**{f: US_WEST_2_CONFIRMED_SOURCE for f in US_WEST_2_CONFIRMED},
         **{f: US_WEST_2_PRE_CUT_SOURCE for f in US_WEST_2_PRE_CUT}},
        sourced=US_WEST_2_CONFIRMED),
}

SUPPORTED_REGIONS: tuple[str, ...] = tuple(BUNDLED_PRICES)
GPU_INSTANCE_TYPES: tuple[str, ...] = tuple(n for n, s in INSTANCE_SPECS.items() if s.has_gpus)


def is_priced(region: str, instance_type: str,
              prices: dict[str, RegionPrices] | None = None) -> bool:
    """Does the price table (None: the bundled snapshot) carry an on-demand price?"""
    table = (prices or BUNDLED_PRICES).get(region)
    return table is not None and instance_type in table.on_demand_hourly


def instance_spec(name: str) -> InstanceSpec:
    """The spec of ``name``; KeyError when the catalog does not carry it."""
    return INSTANCE_SPECS[name]


def on_demand_price(region: str, instance_type: str,
                    prices: dict[str, RegionPrices] | None = None) -> Price:
    """On-demand Linux price per hour; KeyError for an unknown region or type."""
    return (prices or BUNDLED_PRICES)[region].on_demand_hourly[instance_type]


def other_price(region: str, item: str, prices: dict[str, RegionPrices] | None = None) -> Price:
    return (prices or BUNDLED_PRICES)[region].other[item]


@dataclass(frozen=True)
class EfaInterface:
    network_card_index: int
    device_index: int
    interface_type: EfaInterfaceType


def efa_layout(spec: InstanceSpec) -> list[EfaInterface]:
    """The network interfaces to request at launch, as AWS documents them per instance type.

    p5/p5e/p5en: card 0 device 0 carries the IP (ENA ``interface``) and card 0 device 1 plus
    device 0 of every other card are ``efa-only`` (AWS's current layout; efa-only saves one
    private IP per card). p4d/p4de predate efa-only support: ``efa`` on each of the 4 cards.
    Types with a single EFA use one ``efa`` interface on card 0.
    """
    if spec.efa_interfaces == 0:
        return [EfaInterface(0, 0, "interface")]
    if spec.family in ("p5", "p5e", "p5en"):
        layout = [EfaInterface(0, 0, "interface"), EfaInterface(0, 1, "efa-only")]
        layout += [EfaInterface(card, 0, "efa-only") for card in range(1, spec.network_cards)]
        return layout
    return [EfaInterface(card, 0, "efa") for card in range(spec.efa_interfaces)]


def catalog_rows(regions, prices: dict[str, RegionPrices] | None = None) -> list[dict]:
    """Every GPU type with its specs and, per region, its dated on-demand price and source
    (``usd_per_hour`` None where neither the cache nor the snapshot prices it)."""
    table = prices or BUNDLED_PRICES
    rows = []
    for name in GPU_INSTANCE_TYPES:
        spec = INSTANCE_SPECS[name]
        found = []
        for region in regions:
            price = getattr(table.get(region), "on_demand_hourly", {}).get(name)
            found.append({"region": region, "usd_per_hour": price.usd if price else None,
                          "as_of": price.as_of.isoformat() if price else None,
                          "source": price.source if price else None,
                          "assumed": price.assumed if price else None})
        rows.append({"instance_type": name, "gpu_model": spec.gpu_model,
                     "gpu_count": spec.gpu_count, "gpu_memory_gib": spec.gpu_memory_gib,
                     "vcpus": spec.vcpus, "memory_gib": spec.memory_gib,
                     "efa_interfaces": spec.efa_interfaces, "nvme_disks": spec.nvme_disks,
                     "nvme_disk_gb": spec.nvme_disk_gb, "fp8_native": spec.fp8_native,
                     "quota_family": spec.quota_family, "prices": found})
    return rows
