"""Flags, the fourth input kind: one pydantic model per command that takes numbers or choices,
checked before any work. typer has already parsed the types; these add the bounds (a finite
price, a horizon the advisor can sum, a concurrency whose byte counts stay finite) and turn a
violation into one line naming the flag, the value and what is allowed (exit 2)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dsinfra.catalog import GPU_INSTANCE_TYPES, SUPPORTED_REGIONS
from dsinfra.errors import UserError, shown_value
from dsinfra.sizing import KV_CACHE_BYTES, MAX_CONCURRENCY, PRECISION_BYTES

MAX_AMOUNT = 1e12  # keeps 240 months of sums finite (1e308 x 240 is inf, not JSON)
MAX_CONTEXT_TOKENS = 16_777_216
Precision = Literal["bf16", "fp16", "fp8", "int8", "int4"]


class _Flags(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("region", check_fields=False)
    @classmethod
    def _catalog_region(cls, value: str) -> str:
        if value not in SUPPORTED_REGIONS:
            raise ValueError("region")
        return value


class SizeFlags(_Flags):
    precision: Precision = Field(description=", ".join(PRECISION_BYTES))
    context: int = Field(ge=1, le=MAX_CONTEXT_TOKENS,
                         description=f"1 to {MAX_CONTEXT_TOKENS:,} tokens")
    concurrency: int = Field(ge=1, le=MAX_CONCURRENCY,
                             description=f"1 to {MAX_CONCURRENCY:,} sequences")
    kv_cache_dtype: Literal["bf16", "fp8"] = Field(description=", ".join(KV_CACHE_BYTES))
    region: str = Field(description=", ".join(SUPPORTED_REGIONS))
    max_nodes: int = Field(ge=1, le=64, description="1 to 64")


class AdviseFlags(_Flags):
    hardware_price: float = Field(ge=0, le=MAX_AMOUNT,
                                  description=f"a finite amount from 0 to {MAX_AMOUNT:g}")
    local_monthly: float = Field(ge=0, le=MAX_AMOUNT,
                                 description=f"a finite amount from 0 to {MAX_AMOUNT:g}")
    cloud_monthly: Optional[float] = Field(ge=0, le=MAX_AMOUNT, description=(
        f"a finite amount from 0 to {MAX_AMOUNT:g}"))
    instance_type: str = Field(description="a GPU instance type from the catalog: "
                               + ", ".join(GPU_INSTANCE_TYPES))
    nodes: int = Field(ge=1, le=1000, description="1 to 1000")
    region: str = Field(description=", ".join(SUPPORTED_REGIONS))
    usage_hours: float = Field(gt=0, le=744, description="more than 0, at most 744")
    horizon_months: int = Field(ge=1, le=240, description="1 to 240")
    ops_experience: Literal["none", "some", "strong"] = Field(description="none, some, strong")
    precision: Precision = Field(description=", ".join(PRECISION_BYTES))
    context: int = Field(ge=1, le=MAX_CONTEXT_TOKENS,
                         description=f"1 to {MAX_CONTEXT_TOKENS:,} tokens")
    local_gpu_gib: Optional[float] = Field(gt=0, le=1e6, description="memory above 0 GiB")
    local_gpus: int = Field(ge=1, le=1024, description="1 to 1024 GPUs")
    currency: str = Field(pattern=r"^[^\x00-\x1f\x7f]{1,16}$",
                          description="a label of 1-16 printable characters")

    @field_validator("instance_type")
    @classmethod
    def _gpu_type(cls, value: str) -> str:
        if value not in GPU_INSTANCE_TYPES:
            raise ValueError("instance type")
        return value


def check_flags(model: type[_Flags], **values: Any) -> _Flags:
    """The checked flags, or a ``UserError``: ``--flag value; allowed: ...``."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0])
        flag = "--" + name.replace("_", "-")
        allowed = model.model_fields[name].description
        raise UserError(f"{flag} {shown_value(values.get(name))}; allowed: {allowed}") from None
