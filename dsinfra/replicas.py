"""Replicas: how many copies of the tier's serving unit a stack runs (issue 27).

A *replica* is the tier's unit of one engine: one node on the tiers without EFA (dev, prod),
the whole node group on an EFA tier (distributed: ``nodeCount`` nodes serving one engine over
the fabric). ``dsinfra:replicas`` is an integer (a fixed count) or a mapping
``{min: N, max: M}`` (0 < N <= M) with optional autoscaling knobs. Pure: no AWS.

The one rule of what a replica is lives here (``nodes_per_replica``); pricing, plan, the
infrastructure and the autoscaler read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the config imports this module, not the other way round at run time
    from dsinfra.config import StackConfig

# An Auto Scaling group may hold thousands; a stack of more than 64 GPU serving units is a
# different product (and far past any default GPU quota).
MAX_REPLICAS = 64
# Autoscaling defaults (the keys of the mapping form; docs/configuration.md):
DEFAULT_COOL_DOWN_S = 300       # EC2 Auto Scaling's own default cooldown is 300 s
MIN_COOL_DOWN_S, MAX_COOL_DOWN_S = 60, 3600
DEFAULT_TARGET_WAITING = 1.0    # requests waiting per replica: any queue means saturation


@dataclass(frozen=True)
class ReplicaBounds:
    """``dsinfra:replicas`` parsed: a fixed count has ``min == max``."""

    min: int
    max: int
    cool_down_s: int = DEFAULT_COOL_DOWN_S
    target_waiting: float = DEFAULT_TARGET_WAITING

    @property
    def fixed(self) -> bool:
        return self.min == self.max


def replicas_problem(value: Any) -> tuple[str, Any, str] | None:
    """(key, value, allowed) for a ``dsinfra:replicas`` value that is not allowed, else None.
    Keys are the user's spelling below ``replicas``."""
    allowed_int = f"a whole number from 1 to {MAX_REPLICAS}"
    if isinstance(value, bool):
        return "replicas", value, f"{allowed_int}, or {{min: N, max: M}}, not true/false"
    if isinstance(value, int):
        return None if 1 <= value <= MAX_REPLICAS else ("replicas", value, allowed_int)
    if not isinstance(value, dict):
        return ("replicas", value, f"{allowed_int}, or a mapping {{min: N, max: M}} "
                "(0 < min <= max)")
    known = ("min", "max", "coolDownS", "targetWaiting")
    for key in value:
        if key not in known:
            return f"replicas.{key}", value[key], f"known keys are {', '.join(known)}"
    for key in ("min", "max"):
        if key not in value:
            return f"replicas.{key}", None, "a value is required for this key"
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int) \
                or not 1 <= number <= MAX_REPLICAS:
            return f"replicas.{key}", number, allowed_int
    if value["min"] > value["max"]:
        return ("replicas.min", value["min"],
                f"at most replicas.max ({value['max']}): 0 < min <= max")
    cool = value.get("coolDownS", DEFAULT_COOL_DOWN_S)
    if isinstance(cool, bool) or not isinstance(cool, int) \
            or not MIN_COOL_DOWN_S <= cool <= MAX_COOL_DOWN_S:
        return ("replicas.coolDownS", cool,
                f"whole seconds from {MIN_COOL_DOWN_S} to {MAX_COOL_DOWN_S}")
    target = value.get("targetWaiting", DEFAULT_TARGET_WAITING)
    if isinstance(target, bool) or not isinstance(target, (int, float)) \
            or not 0 < float(target) <= 1000 or float(target) != float(target):
        return ("replicas.targetWaiting", target,
                "a number of waiting requests per replica above 0 and at most 1000")
    return None


def parse_replicas(value: Any) -> ReplicaBounds:
    """A value ``replicas_problem`` accepted."""
    if isinstance(value, int):
        return ReplicaBounds(value, value)
    return ReplicaBounds(value["min"], value["max"],
                         int(value.get("coolDownS", DEFAULT_COOL_DOWN_S)),
                         float(value.get("targetWaiting", DEFAULT_TARGET_WAITING)))


def nodes_per_replica(config: "StackConfig") -> int:
    """Nodes in one replica: the node group on an EFA tier (one engine over the fabric),
    one node elsewhere (issue 25: off EFA every node is its own replica)."""
    return config.resolved_node_count if config.tier_spec.efa else 1


def replica_bounds(config: "StackConfig") -> ReplicaBounds:
    """The stack's replicas; a stack without ``dsinfra:replicas`` runs what it always ran:
    one node group on an EFA tier, ``nodeCount`` single-node replicas elsewhere."""
    if config.replicas is not None:
        return config.replicas
    count = 1 if config.tier_spec.efa else config.resolved_node_count
    return ReplicaBounds(count, count)


def replicas_within_budget(bounds: ReplicaBounds, fits: Callable[[int], bool]) -> int | None:
    """The largest replica count from ``bounds.min`` to ``bounds.max`` whose cost ``fits`` the
    budget, or None when not even ``bounds.min`` fits. The count the autoscaler never scales
    past, and what ``plan`` shows as the cap where max does not fit.

    ``fits(count)`` is the caller's budget rule at that count (``plan``: the one budget-fit rule
    ``dsinfra.costs.stack_budget_fit`` over the priced stack at ``count`` replicas): the rule
    stays in one place and this stays pure. Counts are tried from max down, so the answer is
    the largest count that fits even if ``fits`` were not monotonic."""
    for count in range(bounds.max, bounds.min - 1, -1):
        if fits(count):
            return count
    return None
