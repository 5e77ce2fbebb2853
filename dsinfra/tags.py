"""The tag contract. Cost checks, the teardown sweep and Cost Explorer reports find a stack's
resources by these tags alone, so every taggable resource carries all of them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the cost check reads these constants in the Lambda guard, without pydantic
    from dsinfra.config import StackConfig

STACK = "dsinfra:stack"
TIER = "dsinfra:tier"
BUDGET_USD = "dsinfra:budget-usd"
BUDGET_PERIOD = "dsinfra:budget-period"
ON_EXCEED = "dsinfra:on-exceed"
PROTECT = "dsinfra:protect"
OWNER = "dsinfra:owner"
EXPIRES_AT = "dsinfra:expires-at"
WARN_AT = "dsinfra:warn-at"
# A Capacity Block's upfront fee and end: the guard counts the one and tears down before the
# other without reading the reservation.
UPFRONT_USD = "dsinfra:upfront-usd"
BLOCK_ENDS_AT = "dsinfra:block-ends-at"

REQUIRED_TAG_KEYS: tuple[str, ...] = (STACK, TIER, BUDGET_USD, BUDGET_PERIOD, ON_EXCEED,
                                      PROTECT, OWNER)


def format_budget(amount_usd: float) -> str:
    return f"{amount_usd:.2f}"


def format_expiry(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def contract_tags(config: StackConfig, now: datetime | None = None) -> dict[str, str]:
    """The ``dsinfra:*`` tags of a stack, in their fixed order."""
    tags = {
        STACK: config.stack,
        TIER: config.tier,
        BUDGET_USD: format_budget(config.budget.amount_usd),
        BUDGET_PERIOD: config.budget.period,
        ON_EXCEED: config.budget.on_exceed,
        WARN_AT: f"{config.budget.warn_at:g}",
        PROTECT: "true" if config.protect else "false",
        OWNER: config.owner,
    }
    expiry = config.expiry(now)
    if expiry is not None:
        tags[EXPIRES_AT] = format_expiry(expiry)
    block = config.capacity_block
    if block is not None:
        tags[BLOCK_ENDS_AT] = format_expiry(block.end)
        if block.upfront_usd is not None:
            tags[UPFRONT_USD] = format_budget(block.upfront_usd)
    return tags


def merge_tags(name: str, config: StackConfig, resource_tags: dict[str, str] | None = None,
               now: datetime | None = None) -> dict[str, str]:
    """One merge order everywhere: Name, then the user's tags, then per-resource tags, then
    the contract. The contract goes last so no user tag can hide a stack from the cost check."""
    merged = {"Name": name}
    merged.update(config.tags)
    merged.update(resource_tags or {})
    merged.update(contract_tags(config, now))
    return merged
