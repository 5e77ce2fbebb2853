"""Keep a replicas stack's running resources on its current rule after ``up`` (issue 27, the
record of issue 23).

A replicas stack's instances get the ``dsinfra:*`` rule tags from its Auto Scaling group at
launch (infra/nodes.py, ``propagate_at_launch``), and their root volumes from the launch
template. AWS applies a group's tag change to instances launched after it only: the instances
already running keep the tags they were launched with (EC2 Auto Scaling User Guide, "Tag Auto
Scaling groups and instances": tags propagate to instances when they are launched). So after
``pulumi up`` changed the budget, ``protect`` or the TTL on the group, the instances (the
record the cost check reads, dsinfra/budget.py ``budget_from_record``) and their volumes would
disagree with it, and the check would report the stack ``failed`` until something re-tagged
them. ``retag_group`` is that something: it brings every live instance of the group, their
volumes, and the images ``dsinfra image bake`` made with their snapshots, to the group's rule.

Only the rule keys (``dsinfra.budget.RULE_KEYS``) are written (CreateTags) or removed
(DeleteTags, a key the rule no longer has, such as an expiry after the documented TTL restart);
only resources that already carry this stack's ``dsinfra:stack`` tag are touched (the
deployer's policy allows the change only on resources tagged with a stack: ops/iam.py). Every
change is audited (``up.retag``) before it is asked, and a failure is audited
(``up.retag_failed``) and raised: the stack would read ``failed`` until the next ``up``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dsinfra import tags as T
from dsinfra.budget import RULE_KEYS
from dsinfra.cloud.aws import UnreadableAnswer, client, one_line_error
from dsinfra.errors import CloudError

GROUP_TAG = "aws:autoscaling:groupName"  # AWS tags each instance a group launches with it
LIVE_STATES = ("pending", "running", "stopping", "stopped")
BATCH = 1000  # EC2 CreateTags / DeleteTags take up to 1,000 resource ids a call


@dataclass
class Retagged:
    """What ``retag_group`` changed: resource id -> keys written, and -> keys removed."""

    group: str
    rule: dict[str, str]
    written: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def changed(self) -> list[str]:
        return sorted({*self.written, *self.removed})


def _tags(items: Iterable[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or ()}


def _group_rule(asg, stack: str, group: str) -> dict[str, str]:
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    groups = found.get("AutoScalingGroups") or []
    if not groups:
        raise CloudError(f"Auto Scaling group {group} of stack {stack!r} does not exist")
    tags = _tags(groups[0].get("Tags"))
    if tags.get(T.STACK) != stack:
        raise CloudError(f"Auto Scaling group {group} does not carry {T.STACK}={stack}: its "
                         "instances were not re-tagged")
    return {key: tags[key] for key in RULE_KEYS if key in tags}


def _members(ec2, stack: str, group: str) -> dict[str, dict[str, str]]:
    """The group's live instances that carry this stack's tag, and their tagged volumes."""
    out: dict[str, dict[str, str]] = {}
    volumes: list[str] = []
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{GROUP_TAG}", "Values": [group]},
        {"Name": f"tag:{T.STACK}", "Values": [stack]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)}])
    for page in pages:
        for reservation in page["Reservations"]:
            for i in reservation["Instances"]:
                out[i["InstanceId"]] = _tags(i.get("Tags"))
                volumes += [m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings") or []
                            if (m.get("Ebs") or {}).get("VolumeId")]
    for start in range(0, len(volumes), 500):
        for v in ec2.describe_volumes(VolumeIds=volumes[start:start + 500])["Volumes"]:
            out[v["VolumeId"]] = _tags(v.get("Tags"))
    return out


def _baked(ec2, stack: str) -> dict[str, dict[str, str]]:
    """This account's images and snapshots tagged with ``stack`` (``dsinfra image bake``)."""
    by_stack = [{"Name": f"tag:{T.STACK}", "Values": [stack]}]
    out = {i["ImageId"]: _tags(i.get("Tags"))
           for i in ec2.describe_images(Owners=["self"], Filters=by_stack)["Images"]}
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"],
                                                                  Filters=by_stack):
        out.update({s["SnapshotId"]: _tags(s.get("Tags")) for s in page["Snapshots"]})
    return out


def retag_group(region: str, stack: str, group: str,
                audit: Callable[..., Any]) -> Retagged:
    """Bring ``group``'s live instances, their volumes and the stack's baked images and
    snapshots to the rule tags the group carries now (the one ``pulumi up`` just wrote)."""
    from botocore.exceptions import BotoCoreError, ClientError

    asg, ec2 = client("autoscaling", region), client("ec2", region)
    try:
        rule = _group_rule(asg, stack, group)
        found = {**_members(ec2, stack, group), **_baked(ec2, stack)}
    except (BotoCoreError, ClientError, UnreadableAnswer) as exc:
        audit("up.retag_failed", stack=stack, group=group, error=one_line_error(exc))
        raise CloudError(f"could not read stack {stack!r}'s replicas to re-tag them: "
                         f"{one_line_error(exc)}") from None
    done = Retagged(group, rule)
    writes: dict[tuple[tuple[str, str], ...], list[str]] = {}
    removes: dict[tuple[str, ...], list[str]] = {}
    for rid, tags in sorted(found.items()):
        if tags.get(T.STACK) != stack:  # the filter, checked once more: never another's
            continue
        write = tuple((k, v) for k, v in rule.items() if tags.get(k) != v)
        remove = tuple(k for k in RULE_KEYS if k not in rule and k in tags)
        if write:
            writes.setdefault(write, []).append(rid)
            done.written[rid] = [k for k, _ in write]
        if remove:
            removes.setdefault(remove, []).append(rid)
            done.removed[rid] = list(remove)
    if not done.changed:
        return done
    audit("up.retag", stack=stack, group=group, rule=rule, resources=done.changed,
          written=done.written, removed=done.removed)
    try:
        for write, ids in writes.items():
            for start in range(0, len(ids), BATCH):
                ec2.create_tags(Resources=ids[start:start + BATCH],
                                Tags=[{"Key": k, "Value": v} for k, v in write])
        for remove, ids in removes.items():
            for start in range(0, len(ids), BATCH):
                ec2.delete_tags(Resources=ids[start:start + BATCH],
                                Tags=[{"Key": k} for k in remove])
    except (BotoCoreError, ClientError, UnreadableAnswer) as exc:
        audit("up.retag_failed", stack=stack, group=group, error=one_line_error(exc))
        raise CloudError(f"could not re-tag stack {stack!r}'s replicas to its new rule: "
                         f"{one_line_error(exc)}; the cost check reports the stack failed "
                         "until `dsinfra up` re-tags them") from None
    return done
