"""Rent or buy: the source article's decision model for self-hosting DeepSeek, made explicit.

The article compares a cloud GPU (nothing up front, 8,000 a month) with local hardware (50,000 up
front, 500 a month for power and upkeep) for a 7B model, and names what tips the choice:
private data, customization and long-term use favour self-hosting; short trials, little
operations experience and not enough GPU memory favour the cloud. Here the cost side is two
cumulative curves and their crossing (the break-even month); the other factors are weighed as
reasons, each stated, so the recommendation can be argued with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from dsinfra.errors import UserError

OpsExperience = Literal["none", "some", "strong"]
Option = Literal["cloud", "self-host"]
SHORT_TRIAL_MONTHS = 6  # the article: cloud suits use "< 6 months"
LONG_TERM_MONTHS = 12  # the article: local suits use "> 12 months"


@dataclass(frozen=True)
class AdviceInputs:
    hardware_price: float
    local_monthly: float  # power + upkeep
    cloud_monthly: float  # the cloud cost of the same usage
    horizon_months: int = 24
    private_data: bool = False
    customization: bool = False
    ops_experience: OpsExperience = "some"
    local_vram_sufficient: bool = True


@dataclass(frozen=True)
class Reason:
    favours: Option
    weight: int
    text: str


@dataclass(frozen=True)
class Advice:
    inputs: AdviceInputs
    cloud_cumulative: list[float]  # index = month, 0..horizon
    local_cumulative: list[float]
    break_even_months: float | None  # exact crossing; None if the cloud stays cheaper
    break_even_month: int | None  # the first whole month self-hosting has cost less or equal
    savings_at_horizon: float  # cloud total - local total at the horizon (negative: cloud wins)
    recommendation: Option
    reasons: list[Reason] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cloud_monthly_from_hourly(hourly: float, usage_hours_per_month: float) -> float:
    return hourly * usage_hours_per_month


def break_even(hardware_price: float, local_monthly: float, cloud_monthly: float
               ) -> float | None:
    """Months until owning has cost no more than renting; None when renting never costs more."""
    saving_per_month = cloud_monthly - local_monthly
    if saving_per_month <= 0:
        return None
    return hardware_price / saving_per_month


def advise(inputs: AdviceInputs) -> Advice:
    _validate(inputs)
    months = range(inputs.horizon_months + 1)
    cloud = [round(m * inputs.cloud_monthly, 2) for m in months]
    local = [round(inputs.hardware_price + m * inputs.local_monthly, 2) for m in months]
    exact = break_even(inputs.hardware_price, inputs.local_monthly, inputs.cloud_monthly)
    whole = None if exact is None else max(1, math.ceil(round(exact, 9)))
    reasons = _reasons(inputs, exact, whole)
    return Advice(inputs=inputs, cloud_cumulative=cloud, local_cumulative=local,
                  break_even_months=None if exact is None else round(exact, 2),
                  break_even_month=whole, savings_at_horizon=round(cloud[-1] - local[-1], 2),
                  recommendation=_decide(inputs, reasons), reasons=reasons)


MAX_AMOUNT = 1e12


def _validate(inputs: AdviceInputs) -> None:
    for name, value in (("--hardware-price", inputs.hardware_price),
                        ("--local-monthly", inputs.local_monthly),
                        ("--cloud-monthly", inputs.cloud_monthly)):
        # The bound keeps 240 months of sums finite (1e308 x 240 is inf, not JSON).
        if value < 0 or not math.isfinite(value) or value > MAX_AMOUNT:
            raise UserError(f"{name} {value}; allowed: a finite amount from 0 to {MAX_AMOUNT:g}")
    if not 1 <= inputs.horizon_months <= 240:
        raise UserError(f"--horizon-months {inputs.horizon_months}; allowed: 1 to 240")


def _reasons(inputs: AdviceInputs, exact: float | None, whole: int | None) -> list[Reason]:
    horizon = inputs.horizon_months
    reasons: list[Reason] = []
    if exact is None:
        reasons.append(Reason("cloud", 3, "renting never costs more than owning: the cloud's "
                              "monthly cost is not above power and upkeep"))
    elif whole is not None and whole <= horizon:
        reasons.append(Reason("self-host", 3, f"owning pays for itself in month {whole} "
                              f"({exact:.2f} months), within the {horizon}-month horizon"))
    else:
        reasons.append(Reason("cloud", 3, f"owning would pay for itself only after "
                              f"{exact:.2f} months, beyond the {horizon}-month horizon"))
    if horizon < SHORT_TRIAL_MONTHS:
        reasons.append(Reason("cloud", 1, f"a short trial ({horizon} months < "
                              f"{SHORT_TRIAL_MONTHS}): evaluation and demos suit rented GPUs"))
    elif horizon > LONG_TERM_MONTHS:
        reasons.append(Reason("self-host", 1, f"long-term use ({horizon} months > "
                              f"{LONG_TERM_MONTHS}): hardware depreciates below cloud fees"))
    if inputs.private_data:
        reasons.append(Reason("self-host", 3, "private data (medical, financial) stays on "
                              "hardware you control"))
    if inputs.customization:
        reasons.append(Reason("self-host", 1, "changing the model or its training loop is "
                              "easier on your own machines"))
    if inputs.ops_experience == "none":
        reasons.append(Reason("cloud", 2, "no Linux / deep-learning operations experience: "
                              "managed cloud GPUs remove driver, CUDA and hardware work"))
    elif inputs.ops_experience == "strong":
        reasons.append(Reason("self-host", 1, "strong operations experience lowers the cost "
                              "of running your own hardware"))
    if not inputs.local_vram_sufficient:
        reasons.append(Reason("cloud", 100, "the local GPU lacks the memory the model needs "
                              "(see `dsinfra size`): self-hosting it is not possible as planned"))
    return reasons


def _decide(inputs: AdviceInputs, reasons: list[Reason]) -> Option:
    if not inputs.local_vram_sufficient:
        return "cloud"
    self_host = sum(r.weight for r in reasons if r.favours == "self-host")
    cloud = sum(r.weight for r in reasons if r.favours == "cloud")
    if self_host == cloud:  # a tie goes to what costs less over the horizon
        return "self-host" if reasons and reasons[0].favours == "self-host" else "cloud"
    return "self-host" if self_host > cloud else "cloud"
