"""Which instances AWS will stop, and what a ``stop`` does with the ones it will not: the one
rule behind the budget's ``stop`` (cloud/actions.py), idle autostop (cloud/idle_watch.py),
``dsinfra stop`` (ops/resume.py) and what ``plan`` says a stop means (ops/plan.py).

AWS stops an instance only when (EC2 User Guide, "Manage your Spot Instances", Stop a Spot
Instance, Limitations; "Stop and start Amazon EC2 instances"; StopInstances API reference):

- its root device is EBS ("You can't stop instance store-backed instances");
- for a spot instance: it was launched from a ``persistent`` spot request ("You can only stop
  a Spot Instance if the Spot Instance was launched from a persistent Spot Instance request";
  a one-time one is refused with ``UnsupportedOperation``, tests/moto_contracts.py);
- the request is not cancelled ("When the Spot Instance request is cancelled, you can only
  terminate the Spot Instance");
- it is not part of a fleet, a launch group or an Availability Zone group.

Where it will not, the stop row of the action table (dsinfra/budget_actions.py, ``unable``)
says what happens instead: ``terminate`` after a notice naming the instance. A spot instance
whose request cannot be read is neither stopped nor terminated (``unknown``): a stop AWS may
refuse and a termination that may not have been needed are both worse than saying so.

Standard library only: the idle watcher runs it on the node's python3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

STOP, TERMINATE, UNKNOWN = "stop", "terminate", "unknown"
# The request states in which AWS keeps a persistent request (and stops its instance).
LIVE_REQUEST_STATES = ("open", "active", "disabled")
# Tags AWS puts on the instances of an EC2 Fleet or a Spot Fleet.
FLEET_TAGS = ("aws:ec2:fleet-id", "aws:ec2spot:fleet-request-id")
# The type AWS gives a spot request that names none (API reference, SpotMarketOptions).
DEFAULT_SPOT_TYPE = "one-time"


@dataclass(frozen=True)
class SpotRequest:
    """What DescribeSpotInstanceRequests says of an instance's request."""

    id: str
    type: str  # one-time | persistent
    state: str  # open | active | closed | cancelled | failed | disabled
    launch_group: str | None = None
    availability_zone_group: str | None = None


@dataclass(frozen=True)
class Instance:
    """What the rule needs of one instance (DescribeInstances, or a plan's launch template)."""

    id: str
    lifecycle: str = "on-demand"  # InstanceLifecycle: spot | capacity-block | on-demand
    root_device_type: str = "ebs"  # ebs | instance-store
    spot_request_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    deleted_with: tuple[str, ...] = ()  # volumes with DeleteOnTermination (lost on terminate)

    @property
    def spot(self) -> bool:
        return self.lifecycle == "spot"


@dataclass(frozen=True)
class Verdict:
    instance: Instance
    kind: str  # STOP | TERMINATE | UNKNOWN
    why: str = ""  # why AWS will not stop it (TERMINATE) or why that cannot be told (UNKNOWN)


def verdict(instance: Instance, request: SpotRequest | None) -> Verdict:
    """Whether AWS stops ``instance`` (``request``: its spot request, None when not read)."""
    if instance.root_device_type == "instance-store":
        return Verdict(instance, TERMINATE, "its root device is instance store: AWS stops "
                       "EBS-backed instances only")
    if not instance.spot:
        return Verdict(instance, STOP)
    fleet = next((t for t in FLEET_TAGS if instance.tags.get(t)), None)
    if fleet:
        return Verdict(instance, TERMINATE, f"part of a fleet ({fleet}="
                       f"{instance.tags[fleet]}): AWS stops no spot instance of a fleet")
    if request is None:
        return Verdict(instance, UNKNOWN, "its spot request "
                       f"{instance.spot_request_id or '(no id)'} could not be read")
    named = f" {request.id}" if request.id else ""
    if request.type != "persistent":
        return Verdict(instance, TERMINATE, f"a {request.type} spot request{named}: AWS stops "
                       "spot instances of persistent requests only")
    if request.state == "cancelled":
        return Verdict(instance, TERMINATE, f"its spot request{named} is cancelled: AWS can "
                       "only terminate such an instance")
    if request.launch_group or request.availability_zone_group:
        group = "a launch group" if request.launch_group else "an Availability Zone group"
        return Verdict(instance, TERMINATE, f"its spot request{named} is in {group}: AWS "
                       "stops no such instance")
    if request.state not in LIVE_REQUEST_STATES:
        return Verdict(instance, UNKNOWN, f"its persistent spot request{named} is "
                       f"{request.state}")
    return Verdict(instance, STOP)


@dataclass
class Split:
    """A stop's targets, by what AWS lets happen to each."""

    stop: list[Verdict] = field(default_factory=list)
    terminate: list[Verdict] = field(default_factory=list)
    unknown: list[Verdict] = field(default_factory=list)

    @property
    def stop_ids(self) -> list[str]:
        return [v.instance.id for v in self.stop]

    @property
    def terminate_ids(self) -> list[str]:
        return [v.instance.id for v in self.terminate]


def split(instances: Iterable[Instance], requests: dict[str, SpotRequest]) -> Split:
    """``instances`` by verdict; ``requests`` by instance id (those read)."""
    out = Split()
    for instance in instances:
        found = verdict(instance, requests.get(instance.id))
        {STOP: out.stop, TERMINATE: out.terminate, UNKNOWN: out.unknown}[found.kind].append(found)
    return out


def listed(verdicts: Sequence[Verdict]) -> str:
    """``i-1 (why), i-2 (why)`` for a notice, an audit record or a refusal."""
    return ", ".join(f"{v.instance.id} ({v.why})" for v in verdicts)


def lost_with(verdicts: Sequence[Verdict]) -> str:
    """What a termination of ``verdicts`` loses, from what AWS said of each instance."""
    volumes = [f"volume {vol}" if vol.startswith("vol-") else vol
               for v in verdicts for vol in v.instance.deleted_with]
    parts = [f"{', '.join(volumes)} (deleted on termination)"] if volumes else []
    return "; ".join(parts + ["whatever the instance store held (the model cache)",
                              "the instance itself (`dsinfra start` cannot bring it back; "
                              "`dsinfra up` launches it again)"])


def termination_notice(stack: str, verdicts: Sequence[Verdict], trigger: str
                       ) -> tuple[str, str]:
    """The notice sent before ``verdicts`` are terminated: (subject, text)."""
    ids = ", ".join(v.instance.id for v in verdicts)
    return (f"dsinfra: stack {stack}: terminating {ids} (AWS cannot stop it)",
            f"{trigger} stops stack {stack}, but AWS cannot stop {listed(verdicts)}. "
            f"dsinfra terminates {'it' if len(verdicts) == 1 else 'them'} now instead. Lost: "
            f"{lost_with(verdicts)}. The stack's other resources keep billing until "
            f"`dsinfra down {stack}`.")


# ``spotInterruption`` (dsinfra/config.py) -> the spot request a stack's nodes launch from
# (infra/nodes.py): (SpotInstanceType, InstanceInterruptionBehavior). RunInstances takes a
# persistent request only with ``stop`` or ``hibernate`` (API reference, SpotMarketOptions),
# and ``stop`` is what AWS can stop; ``terminate`` keeps AWS's default one-time request (an
# interruption ends the node, nothing restarts it unattended), which no stop can stop.
SPOT_INTERRUPTION = {"stop": ("persistent", "stop"), "terminate": ("one-time", "terminate")}


def stop_verdict_for(spot: bool, interruption: str) -> Verdict:
    """What a stop does to a node a stack with these settings launches (plan, the node's
    IAM): the rule applied to the request the settings make."""
    if not spot:
        return verdict(Instance("(node)"), None)
    spot_type, _behaviour = SPOT_INTERRUPTION[interruption]
    return verdict(Instance("(node)", lifecycle="spot"), SpotRequest("", spot_type, "active"))


def planned_instance(name: str, market: dict | None, root_deleted_on_termination: bool
                     ) -> tuple[Instance, SpotRequest | None]:
    """The instance and spot request a launch template's ``instanceMarketOptions`` (Pulumi's
    names: ``marketType``, ``spotOptions.spotInstanceType``) will make, for ``plan``."""
    market = market or {}
    lifecycle = market.get("marketType") or "on-demand"
    instance = Instance(name, lifecycle=lifecycle,
                        deleted_with=(f"the root volume of {name}",)
                        if root_deleted_on_termination else ())
    if lifecycle != "spot":
        return instance, None
    spot_type = (market.get("spotOptions") or {}).get("spotInstanceType") or DEFAULT_SPOT_TYPE
    return instance, SpotRequest("", spot_type, "active")
