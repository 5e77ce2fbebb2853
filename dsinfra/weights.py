"""Where a stack's weights come from and what that download costs (pure).

Each node downloads the checkpoint once per deploy. From Hugging Face, a private tier's node
reaches the internet through the NAT gateway, which bills every GB it processes
(``nat_gateway_gb``, $0.045/GB in us-east-1). From a ``dsinfra:modelCache`` S3 mirror in the
stack's region, the download goes through the VPC's S3 gateway endpoint: no NAT charge, and no
S3 data-transfer charge within a region."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsinfra.catalog import other_price
from dsinfra.errors import UserError
from dsinfra.models import resolve_model

if TYPE_CHECKING:
    from dsinfra.config import StackConfig

GB = 1e9  # AWS bills data processed per GB (10^9 bytes)
PUBLISHED_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1}


@dataclass(frozen=True)
class WeightsDownload:
    model: str
    source: str  # "huggingface" or the s3:// mirror
    size_gb: float | None  # the published checkpoint (None: a model dsinfra cannot size)
    nodes: int
    through_nat: bool
    nat_usd_per_gb: float | None
    note: str = ""

    @property
    def nat_usd_per_deploy(self) -> float | None:
        if not self.through_nat:
            return 0.0
        if self.size_gb is None or self.nat_usd_per_gb is None:
            return None
        return round(self.size_gb * self.nodes * self.nat_usd_per_gb, 2)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "source": self.source, "size_gb": self.size_gb,
                "nodes": self.nodes, "through_nat": self.through_nat,
                "nat_usd_per_gb": self.nat_usd_per_gb,
                "nat_usd_per_deploy": self.nat_usd_per_deploy, "note": self.note}


def published_size_gb(model: str) -> float | None:
    """The checkpoint's size as published (R1: FP8, one byte a parameter); None if unknown."""
    try:
        shape = resolve_model(model)
    except UserError:
        return None
    return round(shape.params * PUBLISHED_BYTES.get(shape.weights_published_in, 2) / GB, 1)


# Bootstrap's ``model-weights`` step copies the mirror to each node and the engine serves that
# copy (bootstrap/steps_weights.py), so with a mirror nothing comes through the NAT gateway.
# A bucket outside the stack's region still does: ``dsinfra doctor`` reads the bucket's region
# and warns with the figure (the gateway endpoint serves its own region only).
BOOTSTRAP_READS_MIRROR = True


def weights_download(config: "StackConfig") -> WeightsDownload:
    mirror = config.model_cache if BOOTSTRAP_READS_MIRROR else None
    through_nat = config.tier_spec.private and not mirror
    size = published_size_gb(config.resolved_model)
    try:
        per_gb = other_price(config.region, "nat_gateway_gb").usd if through_nat else None
        note = ""
    except KeyError:
        per_gb, note = None, f"no NAT per-GB price for {config.region}: charge not estimated"
    if through_nat and size is None:
        note = "the checkpoint's size is unknown offline: NAT charge not estimated"
    if config.model_cache and not mirror:
        note = (f"{config.model_cache} is not read by bootstrap yet: each node still "
                "downloads from Hugging Face (fill the mirror now with `dsinfra cache push`)")
    return WeightsDownload(model=config.resolved_model, source=mirror or "huggingface",
                           size_gb=size, nodes=config.resolved_node_count,
                           through_nat=through_nat, nat_usd_per_gb=per_gb, note=note)
