"""The only code in the cost check that changes the world. Each action declares the IAM
actions it needs (the in-account guard's role is the union of these and the inventory's), and
each is idempotent: it acts only on what reality says still needs it."""

from __future__ import annotations

from collections.abc import Sequence

from dsinfra.cloud import inventory, notify, teardown
from dsinfra.cloud.aws import client
from dsinfra.spend import Resource

STOP_PERMISSIONS = ("ec2:StopInstances",)
RESUME_PERMISSIONS = ("ec2:DescribeInstances", "ec2:StartInstances")

ACTION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "notify": notify.PERMISSIONS,
    "stop": STOP_PERMISSIONS,
    "destroy": teardown.PERMISSIONS,
}


def check_permissions(actions: Sequence[str] = ("notify", "stop", "destroy")) -> list[str]:
    """Every IAM action a check that may take ``actions`` needs, sorted and unique."""
    wanted = set(inventory.PERMISSIONS)
    for action in actions:
        wanted.update(ACTION_PERMISSIONS[action])
    return sorted(wanted)


def running_instances(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r.kind == "instance" and r.state in ("pending", "running")]


def stop_instances(instances: list[Resource]) -> list[str]:
    """Stop ``instances`` (volumes stay); returns the ids asked to stop."""
    by_region: dict[str, list[str]] = {}
    for r in instances:
        by_region.setdefault(r.region, []).append(r.id)
    for region, ids in by_region.items():
        ec2 = client("ec2", region)
        for start in range(0, len(ids), 1000):
            ec2.stop_instances(InstanceIds=ids[start:start + 1000])
    return [r.id for r in instances]


def resume_stack(stack: str, regions: Sequence[str]) -> list[str]:
    """Start the stopped instances of ``stack``; returns their ids (empty when none were)."""
    found = inventory.fetch_inventory(regions, [stack], kinds=("instance",)).resources
    stopped = [r for r in found if r.state == "stopped"]
    for region in {r.region for r in stopped}:
        client("ec2", region).start_instances(
            InstanceIds=[r.id for r in stopped if r.region == region])
    return [r.id for r in stopped]
