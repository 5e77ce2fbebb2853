"""The hosts of a replicas stack's Auto Scaling group (issue 27): its InService instances, read
from AWS, as the node outputs bootstrap takes. Pulumi does not launch a group's instances, so
the stack outputs list no nodes for it (infra/program.py); AWS is the one place that knows them.

Each instance is its own replica: a group of one node whose head it is (infra/nodes.py
REPLICA_ROLE), its own engine.

Sources (what the answers carry):
- DescribeAutoScalingGroups: ``AutoScalingGroups[].Instances[]`` with ``InstanceId``,
  ``LifecycleState`` (``InService`` once launched and past its lifecycle hooks; ``Pending``,
  ``Terminating``... otherwise) and ``HealthStatus``; ``MinSize``, ``DesiredCapacity``.
  (Amazon EC2 Auto Scaling API Reference, DescribeAutoScalingGroups, Instance.)
- DescribeInstances: ``Reservations[].Instances[]`` with ``PrivateIpAddress``,
  ``PublicIpAddress`` (absent without one), ``InstanceType``, ``State.Name`` and
  ``NetworkInterfaces[].InterfaceType`` (``interface``, ``efa`` or ``efa-only``).
  (Amazon EC2 API Reference, DescribeInstances, Instance, InstanceNetworkInterface.)
"""

from __future__ import annotations

from dataclasses import dataclass

from dsinfra.errors import CloudError
from dsinfra.outputs import NodeOutput

IN_SERVICE = "InService"
REPLICA_ROLE = "head"  # infra/nodes.py's: a replica off EFA is the head of a group of one


@dataclass(frozen=True)
class GroupState:
    """What the group holds now: its minimum and its InService instances as nodes."""

    group: str
    min_size: int
    desired: int
    nodes: list[NodeOutput]
    not_in_service: dict[str, str]  # instance id -> its lifecycle state


def read_group(region: str, group: str, *, autoscaling=None, ec2=None) -> GroupState:
    """The group's InService instances (running), each a one-node replica, in instance-id
    order (the group index follows it). Raises ``CloudError`` when AWS cannot be read or the
    group is gone: a stack whose replicas cannot be listed is not bootstrapped by guess."""
    from dsinfra.cloud.aws import client, read_errors, require_keys

    autoscaling = autoscaling or client("autoscaling", region)
    ec2 = ec2 or client("ec2", region)
    try:
        answer = require_keys(autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group]), "DescribeAutoScalingGroups", "AutoScalingGroups")
        groups = answer["AutoScalingGroups"]
        if not groups:
            raise CloudError(f"the Auto Scaling group {group} of the stack's replicas does not "
                             f"exist in {region}",
                             hint="Run `dsinfra up STACK` to create it again.")
        found = groups[0]
        members = {i["InstanceId"]: i.get("LifecycleState", "") for i in found["Instances"]}
        in_service = sorted(i for i, state in members.items() if state == IN_SERVICE)
        instances = _describe(ec2, in_service)
    except read_errors() as exc:
        from dsinfra.cloud.aws import one_line_error

        raise CloudError(f"could not read the replicas of Auto Scaling group {group}: "
                         f"{one_line_error(exc)}") from None
    nodes = []
    for instance_id in in_service:
        instance = instances.get(instance_id)
        if instance is None or instance.get("State", {}).get("Name") != "running":
            members[instance_id] = (instance or {}).get("State", {}).get("Name", "not found")
            continue
        efa = sum(1 for i in instance.get("NetworkInterfaces") or []
                  if i.get("InterfaceType") in ("efa", "efa-only"))
        nodes.append(NodeOutput(id=instance_id, role=REPLICA_ROLE,
                                private_ip=instance["PrivateIpAddress"],
                                public_ip=instance.get("PublicIpAddress") or None,
                                instance_type=instance["InstanceType"], efa_interfaces=efa,
                                group=len(nodes)))
    ready = {n.id for n in nodes}
    return GroupState(group=group, min_size=int(found["MinSize"]),
                      desired=int(found.get("DesiredCapacity", found["MinSize"])),
                      nodes=nodes,
                      not_in_service={i: s for i, s in sorted(members.items())
                                      if i not in ready})


def _describe(ec2, instance_ids: list[str]) -> dict[str, dict]:
    if not instance_ids:
        return {}
    found: dict[str, dict] = {}
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=instance_ids):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found[instance["InstanceId"]] = instance
    return found
