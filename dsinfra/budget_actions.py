"""The one table of budget actions: pure, and the only place an action is named.

Each row says what the action is to money (whether it ends the stack's spend, what still bills
after it), what IAM it needs, and how the edge carries it out (``effect``: one of ``EFFECTS``,
each implemented once in cloud/actions.py, which refuses to import if one is missing). Every
other module derives from here: ``ON_EXCEED`` and the budget rules (dsinfra/budget.py), the
config schema, ``budget_fit``, the check's enforcement (ops/check.py), the guard's allowed
actions and IAM policy (ops/guard.py, infra/guard.py, cloud/actions.py) and the docs' table
(``markdown_table``, checked against docs/budgets.md by a test). Adding an action is one
``register(ActionSpec(...))``; an action whose effect has no implementation cannot be
registered, so it can never be accepted and then silently do nothing.

This module must not import pydantic or boto3: the Lambda guard runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NOTIFY, STOP, DESTROY = "notify", "stop", "destroy"


@dataclass(frozen=True)
class Permission:
    action: str
    tag_scoped: bool = False  # destructive: allowed only where aws:ResourceTag/dsinfra:stack


def reads(*names: str) -> tuple[Permission, ...]:
    return tuple(Permission(n) for n in names)


def scoped(*names: str) -> tuple[Permission, ...]:
    return tuple(Permission(n, tag_scoped=True) for n in names)


# How an action changes the world; cloud/actions.py has exactly one runner per effect.
#   notify    - a notification, nothing else
#   instances - one EC2 call (``call``, with ``call_args``) on the stack's instances in
#               ``from_states``; the volumes and everything else stay
#   sweep     - pulumi destroy where a state is reachable, then a tag sweep of what is left
#   manual    - a person's action (``resume``), never run by the check
EFFECTS = ("notify", "instances", "sweep", "manual")
# The EC2 calls an ``instances`` action may make, with the IAM action each needs.
INSTANCE_CALLS = {"stop_instances": "ec2:StopInstances",
                  "start_instances": "ec2:StartInstances"}
# What still bills after an action that ends the compute spend.
STILL_BILLS = {
    "everything": "everything keeps billing",
    "stopped": "what a stopped stack bills: volumes, NAT gateway, load balancer, addresses, "
               "baked images' snapshots",
    "nothing": "nothing (every tagged resource is deleted)",
}
# What an ``instances`` action whose call is stop_instances does with an instance AWS will not
# stop (dsinfra/stoppable.py says which: one-time spot, a cancelled request, a fleet or group,
# an instance-store root), and what that needs beyond the call itself.
UNABLE = {
    "fail": "reported failed; the instance keeps running and billing",
    "terminate": "terminated after a notice naming it: its delete-on-termination volumes "
                 "and instance store are lost",
}
UNABLE_NEEDS = {
    "fail": (Permission("ec2:DescribeSpotInstanceRequests"),),
    "terminate": (Permission("ec2:DescribeSpotInstanceRequests"),
                  Permission("ec2:TerminateInstances", tag_scoped=True),
                  Permission("ec2:CancelSpotInstanceRequests", tag_scoped=True)),
}
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class ActionSpec:
    name: str
    summary: str  # for the docs' table and `--help`
    ends_spend: bool  # the stack's compute stops billing (a TTL with it bounds spend)
    still_bills: str  # a key of STILL_BILLS
    permissions: tuple[Permission, ...]
    effect: str  # a key of EFFECTS
    severity: int  # when resources disagree the strictest (highest) wins
    call: str = ""  # effect "instances": a key of INSTANCE_CALLS
    call_args: tuple[tuple[str, object], ...] = ()  # extra parameters of that call
    from_states: tuple[str, ...] = ("pending", "running")  # the instances it acts on
    done_note: str = ""  # the reason's addition after it ran ({n}, {stack}, {action}, {call})
    budget: bool = True  # False: a person's action (resume), never an onExceed
    unable: str = "fail"  # call stop_instances: a key of UNABLE (dsinfra/stoppable.py)


TABLE: dict[str, ActionSpec] = {}


class ActionTableError(ValueError):
    pass


def register(spec: ActionSpec) -> ActionSpec:
    """Add ``spec`` to the table, refusing one the edge could not carry out or that would make
    the IAM policy wrong (its call's permission not declared)."""
    if not _NAME.match(spec.name) or spec.name == "none":
        raise ActionTableError(f"action name {spec.name!r}; allowed: lowercase letters, digits, "
                               "'-', not 'none'")
    if spec.effect not in EFFECTS:
        raise ActionTableError(f"action {spec.name!r}: effect {spec.effect!r} has no "
                               f"implementation; allowed: {', '.join(EFFECTS)}")
    if spec.still_bills not in STILL_BILLS:
        raise ActionTableError(f"action {spec.name!r}: still_bills {spec.still_bills!r}; "
                               f"allowed: {', '.join(STILL_BILLS)}")
    if spec.ends_spend != (spec.still_bills != "everything"):
        raise ActionTableError(f"action {spec.name!r}: ends_spend and still_bills disagree")
    if spec.effect == "instances":
        needed = INSTANCE_CALLS.get(spec.call)
        if needed is None:
            raise ActionTableError(f"action {spec.name!r}: call {spec.call!r}; allowed: "
                                   f"{', '.join(INSTANCE_CALLS)}")
        if Permission(needed, tag_scoped=True) not in spec.permissions:
            raise ActionTableError(f"action {spec.name!r}: {spec.call} needs {needed} "
                                   "declared tag-scoped in its permissions")
    if spec.unable not in UNABLE:
        raise ActionTableError(f"action {spec.name!r}: unable {spec.unable!r}; allowed: "
                               f"{', '.join(UNABLE)}")
    if spec.call == "stop_instances":
        missing = [p.action for p in UNABLE_NEEDS[spec.unable] if p not in spec.permissions]
        if missing:
            raise ActionTableError(f"action {spec.name!r}: unable {spec.unable!r} needs "
                                   f"{', '.join(missing)} declared in its permissions "
                                   "(destructive ones tag-scoped)")
    elif spec.unable != "fail":
        raise ActionTableError(f"action {spec.name!r}: unable {spec.unable!r} only with call "
                               "stop_instances")
    if spec.budget and any(s.severity == spec.severity for s in TABLE.values()
                           if s.budget and s.name != spec.name):
        raise ActionTableError(f"action {spec.name!r}: severity {spec.severity} is taken")
    TABLE[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a row (tests that add one take it out again)."""
    if name in BUILT_IN:
        raise ActionTableError(f"{name!r} is built in")
    TABLE.pop(name, None)


def get(name: str) -> ActionSpec:
    return TABLE[name]


def on_exceed() -> tuple[str, ...]:
    """The names an ``onExceed`` may take, mildest first."""
    return tuple(s.name for s in sorted(TABLE.values(), key=lambda s: s.severity) if s.budget)


def acting() -> tuple[str, ...]:
    """The budget actions that change resources (all but notify), mildest first: the order
    the check runs them in."""
    return tuple(n for n in on_exceed() if TABLE[n].effect != "notify")


def names() -> tuple[str, ...]:
    return tuple(TABLE)


def severity(name: str) -> int:
    return TABLE[name].severity


def stopping() -> tuple[ActionSpec, ...]:
    """The budget rows that stop instances (AWS may refuse some: dsinfra/stoppable.py)."""
    return tuple(TABLE[n] for n in on_exceed() if TABLE[n].call == "stop_instances")


def markdown_table() -> str:
    """The docs' table of actions (docs/budgets.md carries this text; a test compares)."""
    rows = ["| `onExceed` | what it does | ends spend | still bills after it | IAM it needs |",
            "|---|---|---|---|---|"]
    for name in on_exceed():
        s = TABLE[name]
        iam = ", ".join(f"`{p.action}`{' (tagged only)' if p.tag_scoped else ''}"
                        for p in s.permissions)
        summary = s.summary + (f"; an instance AWS cannot stop is {UNABLE[s.unable]}"
                               if s.call == "stop_instances" else "")
        rows.append(f"| `{name}` | {summary} | {'yes' if s.ends_spend else 'no'} | "
                    f"{STILL_BILLS[s.still_bills]} | {iam} |")
    return "\n".join(rows)


register(ActionSpec(
    NOTIFY, "a notification (webhook or SNS); nothing changes", ends_spend=False,
    still_bills="everything", permissions=(Permission("sns:Publish"),), effect="notify",
    severity=0))
register(ActionSpec(
    STOP, "stops the instances (a replicas group is held first, so it replaces none), keeps "
    "the volumes", ends_spend=True, still_bills="stopped",
    permissions=reads("ec2:DescribeSpotInstanceRequests") + scoped(
        "ec2:StopInstances", "ec2:TerminateInstances", "ec2:CancelSpotInstanceRequests",
        # a replicas group is held first, or it replaces what was stopped (cloud/replicas.py)
        "autoscaling:SuspendProcesses"),
    effect="instances", severity=20, call="stop_instances", unable="terminate",
    done_note="stopped {n} instance(s), volumes kept (`dsinfra resume {stack}` starts them)"))
register(ActionSpec(
    DESTROY, "pulumi destroy, then deletes every resource tagged with the stack (a replicas "
    "group first, baked images and their snapshots last)",
    ends_spend=True, still_bills="nothing",
    permissions=reads("ec2:DescribeSpotInstanceRequests",
                      "elasticloadbalancing:DescribeTargetGroups",
                      "autoscaling:DescribeAutoScalingGroups", "ec2:DescribeImages") + scoped(
        "ec2:TerminateInstances", "ec2:CancelSpotInstanceRequests", "ec2:DisassociateAddress",
        "ec2:ReleaseAddress", "ec2:DeleteNatGateway", "ec2:DeleteVolume",
        "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteTargetGroup",
        # a replicas group relaunches what the sweep terminates (cloud/teardown.py)
        "autoscaling:DeleteAutoScalingGroup",
        # the images `dsinfra image bake` made, then their snapshots (they bill GB-months)
        "ec2:DeregisterImage", "ec2:DeleteSnapshot"),
    effect="sweep", severity=30))
register(ActionSpec(
    "resume", "`dsinfra resume`: starts what a budget stopped (a person's action)",
    ends_spend=False, still_bills="everything",
    permissions=reads("ec2:DescribeInstances") + scoped("ec2:StartInstances",
                                                        "autoscaling:ResumeProcesses"),
    effect="manual", severity=-1, budget=False))
BUILT_IN = frozenset(TABLE)
