"""Where ``dsinfra up`` lands when AWS says no: the stack's own type in every zone that offers
it, then each ``dsinfra:fallback`` alternative in the stack's region, then the alternatives
allowed in other regions. A refusal is AWS's InsufficientInstanceCapacity, an ``Unsupported``
zone, or a vCPU quota refusal; each failed attempt is torn down (``pulumi destroy`` and the
tag sweep) before the next, and the next starts only when the sweep proves nothing billable is
left. Every attempt is audited and returned for the table and the JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dsinfra.errors import CloudError

if TYPE_CHECKING:
    from dsinfra.config import StackConfig
    from dsinfra.infra.automation import Engine, EventCallback

# RunInstances' on-demand error code, and the spot request status for the same condition.
# For spot also: "InsufficientInstanceCapacity - There is no Spot capacity available that
# matches your request." (cortexlabs/cortex#1258), UnfulfillableCapacity (AWS's EC2 error codes,
# quoted in aws/aws-parallelcluster-node#673), and the spot request status
# "capacity-oversubscribed: Your Spot request was not fulfilled as there is no more unused
# capacity available in this pool." (AlexsLemonade/refinebio#528).
CAPACITY_ERRORS = ("InsufficientInstanceCapacity", "InsufficientCapacity",
                   "insufficient capacity", "capacity-not-available", "UnfulfillableCapacity",
                   "capacity-oversubscribed")
# The spot price is above the request's maximum (on-demand, when none is set): "SpotMaxPriceTooLow
# - Your Spot request price of 0.24156000000000002 is lower than the minimum required Spot request
# fulfillment price of 0.6034." (redhat-developer/mapt#576, through Pulumi); the spot request
# status "price-too-low" (hashicorp/packer#7808). Another zone may be cheaper, on demand is not.
SPOT_PRICE_ERRORS = ("SpotMaxPriceTooLow", "price-too-low")
# "api error Unsupported: Your requested instance type (t3.micro) is not supported in your
# requested Availability Zone (us-east-1e)" (ned1313/Getting-Started-Terraform#44).
UNSUPPORTED_ERRORS = ("is not supported in your requested Availability Zone",)
# "creating EC2 Instance: VcpuLimitExceeded: You have requested more vCPU capacity than your
# current vCPU limit of 32 allows ..." (bentoml/bentoctl#202); the older per-type limit code.
QUOTA_ERRORS = ("VcpuLimitExceeded", "InstanceLimitExceeded")
REFUSALS = (("insufficient capacity", CAPACITY_ERRORS),
            ("spot price too high", SPOT_PRICE_ERRORS),
            ("unsupported zone", UNSUPPORTED_ERRORS), ("quota refused", QUOTA_ERRORS))

PhaseCallback = Callable[[str, str], None]
AuditSink = Callable[..., Any]
ZonesFor = Callable[[str, str], list[str]]  # (instance type, region) -> zones that offer it
Cleanup = Callable[[str, str], Any]  # (stack, region) -> a TeardownResult (clean, summary)


@dataclass(frozen=True)
class Attempt:
    availability_zone: str
    outcome: str  # "created", "insufficient capacity", "spot price too high",
    #               "unsupported zone", "quota refused", "not offered", "over budget"
    message: str = ""
    instance_type: str = ""
    nodes: int = 0
    region: str = ""
    cleanup: str = ""  # the tag sweep's summary after a failed attempt
    spot: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Option:
    instance_type: str
    nodes: int
    region: str
    spot: bool = False


class CapacityExhausted(CloudError):
    """Every zone of every option answered with a refusal (capacity, zone, quota)."""

    def __init__(self, instance_type: str, attempts: list[Attempt]) -> None:
        tried = ", ".join(dict.fromkeys(
            f"{a.nodes}x {a.instance_type or instance_type} in "
            f"{a.availability_zone or a.region}" for a in attempts))
        super().__init__(f"no capacity for {instance_type} or its fallbacks; tried {tried}",
                         hint="Try later, add dsinfra:fallback alternatives or regions, buy a "
                              "Capacity Block, or raise the vCPU quota. Each failed attempt "
                              "was torn down and swept: nothing billable is left.")
        self.attempts = attempts


def failover_options(config: "StackConfig") -> list[Option]:
    """The stack's own type, then its alternatives in its region, then in other regions. On a
    spot stack each option is tried as spot first, then on demand (spot had no capacity)."""
    home = [Option(config.resolved_instance_type, config.resolved_node_count, config.region)]
    home += [Option(a.instance_type, a.node_count, config.region) for a in config.fallback
             if not a.regions or config.region in a.regions]
    away = [Option(a.instance_type, a.node_count, region) for a in config.fallback
            for region in a.regions if region != config.region]
    options = list(dict.fromkeys(home + away))
    if config.spot:
        options = [o for plain in options
                   for o in (Option(plain.instance_type, plain.nodes, plain.region, True), plain)]
    return options


def refusal(text: str) -> str | None:
    """The kind of refusal ``text`` reports, or None for any other error."""
    for kind, markers in REFUSALS:
        if any(marker in text for marker in markers):
            return kind
    return None


def zone_order(config: "StackConfig", offered: list[str]) -> list[str]:
    """The configured zone first, then the others that offer the type. A capacity reservation
    lives in one zone, so it is never moved."""
    if config.capacity_reservation_id:
        return [config.availability_zone] if config.availability_zone else offered[:1]
    first = config.availability_zone
    return ([first] if first else []) + [z for z in offered if z != first]


def option_config(config: "StackConfig", option: Option) -> "StackConfig":
    """``config`` moved to ``option``: the engine's TP x PP follows from type and nodes."""
    if (option.instance_type, option.nodes, option.region, option.spot) == (
            config.resolved_instance_type, config.resolved_node_count, config.region,
            config.spot):
        return config
    zone = config.availability_zone if option.region == config.region else None
    return config.model_copy(update={"instance_type": option.instance_type,
                                     "node_count": option.nodes, "region": option.region,
                                     "availability_zone": zone, "spot": option.spot})


@dataclass
class Failover:
    """What one ``up`` needs to walk the options; every side effect is an argument."""

    engine: "Engine"
    zones_for: ZonesFor
    cleanup: Cleanup
    within_budget: Callable[["StackConfig"], str | None]  # None, or why it is over budget
    on_event: "EventCallback | None" = None
    phase: PhaseCallback = lambda _p, _m: None
    audit: AuditSink = lambda _kind, **_fields: None

    def deploy(self, config: "StackConfig", home_zones: list[str]
               ) -> tuple[dict[str, Any], list[Attempt], "StackConfig"]:
        attempts: list[Attempt] = []
        current = config
        for option in failover_options(config):
            chosen = option_config(config, option)
            if chosen is not config and (why := self.within_budget(chosen)):
                attempts.append(self._skipped(option, "over budget", why))
                continue
            if config.spot and not option.spot:
                self._spot_fallback(option, attempts)
            zones = zone_order(chosen, home_zones if chosen is config else
                               self.zones_for(option.instance_type, option.region))
            if not zones:
                attempts.append(self._skipped(option, "not offered",
                                              f"{option.region} offers it in no zone"))
                continue
            current = self._switch(config.stack, current, chosen)
            raw = self._try_zones(chosen, option, zones, attempts)
            if raw is not None:
                return raw, attempts, chosen
        raise CapacityExhausted(config.resolved_instance_type, attempts)

    def _spot_fallback(self, option: Option, attempts: list[Attempt]) -> None:
        """Said on screen and in the audit log: the stack now costs the on-demand price."""
        refused = [a for a in attempts if a.spot and a.instance_type == option.instance_type
                   and a.region == option.region]
        self.phase("deploy", f"no spot capacity for {option.nodes}x {option.instance_type} in "
                   f"{option.region}: falling back to on-demand")
        self.audit("up.spot_fallback", instance_type=option.instance_type, nodes=option.nodes,
                   region=option.region,
                   spot_refusals=[f"{a.availability_zone}: {a.outcome}" for a in refused])

    def _skipped(self, option: Option, outcome: str, why: str) -> Attempt:
        attempt = Attempt("", outcome, why, option.instance_type, option.nodes, option.region,
                          spot=option.spot)
        self.audit("up.attempt", **attempt.as_dict())
        self.phase("deploy", f"{option.nodes}x {option.instance_type} in {option.region}: "
                   f"{outcome} ({why})")
        return attempt

    def _switch(self, stack: str, current: "StackConfig", chosen: "StackConfig"
                ) -> "StackConfig":
        """Write the keys that differ into the stack's config: the program reads them."""
        for key, old, new in (
                ("dsinfra:region", current.region, chosen.region),
                ("dsinfra:instanceType", current.resolved_instance_type,
                 chosen.resolved_instance_type),
                ("dsinfra:nodeCount", current.resolved_node_count, chosen.resolved_node_count),
                ("dsinfra:spot", str(current.spot).lower(), str(chosen.spot).lower())):
            if old != new:
                self.engine.set_config(stack, key, str(new))
        return chosen

    def _try_zones(self, config: "StackConfig", option: Option, zones: list[str],
                   attempts: list[Attempt]) -> dict[str, Any] | None:
        for zone in zones:
            if zone != config.availability_zone or attempts:
                self.engine.set_config(config.stack, "dsinfra:availabilityZone", zone)
            label = f"{option.nodes}x {option.instance_type} in {zone}"
            self.phase("deploy", f"pulumi up: {label}")
            watcher = _CapacityWatcher(self.on_event)
            try:
                raw = self.engine.up(config.stack, on_event=watcher)
            except CloudError as exc:
                said = watcher.capacity_message or exc.message
                kind = refusal(said)
                if kind is None:
                    raise
                attempts.append(self._failed(config, option, zone, kind, said))
                if kind == "quota refused":
                    return None  # the quota is per region and family: other zones share it
                continue
            attempt = Attempt(zone, "created", "", option.instance_type, option.nodes,
                              option.region, spot=option.spot)
            attempts.append(attempt)
            self.audit("up.attempt", **attempt.as_dict())
            return raw
        return None

    def _failed(self, config: "StackConfig", option: Option, zone: str, kind: str,
                said: str) -> Attempt:
        self.phase("deploy", f"{zone}: {kind} for {option.nodes}x {option.instance_type}; "
                   "tearing the attempt down")
        swept = self.cleanup(config.stack, option.region)
        attempt = Attempt(zone, kind, _last_line(said), option.instance_type, option.nodes,
                          option.region, swept.summary, option.spot)
        self.audit("up.attempt", **attempt.as_dict())
        if not swept.clean:  # money fails safe: never start another attempt on top of this
            raise CloudError(f"after {kind} in {zone} the cleanup left resources: "
                             f"{swept.summary}", hint=f"Run `dsinfra down {config.stack}`.")
        return attempt


class _CapacityWatcher:
    """Forwards engine events and remembers a refusal diagnostic: the engine's final error
    text is cut to its tail and may no longer contain AWS's message."""

    def __init__(self, forward: "EventCallback | None") -> None:
        self.forward = forward
        self.capacity_message: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        message = str(event.get("message") or "")
        if event.get("kind") == "diagnostic_event" and refusal(message):
            self.capacity_message = message
        if self.forward:
            self.forward(event)


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
