"""The AWS calls of a rolling deploy (ops/deploy.py orchestrates them): the replicas' Auto
Scaling group, its launch template's versions, the target health of the stack's NLB target
group, and the account's ECR for an ``--image`` in ECR form.

The group is described here, not in cloud/replicas.py (the autoscaler's module): a deploy
needs only the group's instances, its sizes and its launch template version.

AWS contracts the deploy relies on (sources beside each):
- A launch template version is immutable; CreateLaunchTemplateVersion with ``SourceVersion``
  inherits that version's parameters and overrides the ones given (EC2 API reference,
  CreateLaunchTemplateVersion). ``UserData`` is base64 text of at most 16 KB (EC2 API
  reference, RequestLaunchTemplateData.UserData).
- A group launches the version its ``LaunchTemplate`` names: a number, ``$Latest`` (the newest
  version at each launch) or ``$Default`` (EC2 Auto Scaling API reference,
  LaunchTemplateSpecification.Version); instances already running keep theirs. dsinfra's
  groups launch ``$Latest`` (infra/nodes.py), so a deploy's new version is what the next
  replica boots, and a rollback makes a newer copy of the previous version.
- TerminateInstanceInAutoScalingGroup with ``ShouldDecrementDesiredCapacity`` removes one
  instance and lowers the desired capacity so no replacement is launched; for a group attached
  to a target group, Auto Scaling first deregisters the instance, which drains for the
  target group's deregistration delay before it is terminated (EC2 Auto Scaling User Guide,
  "Use Elastic Load Balancing to distribute incoming application traffic in your Auto Scaling
  group": "Amazon EC2 Auto Scaling ... waits for the deregistration delay to complete").
- DescribeTargetHealth reports ``initial`` while a new target passes its first health checks,
  then ``healthy`` or ``unhealthy``; ``draining`` while it deregisters (ELB User Guide for
  Network Load Balancers, "Health checks for Network Load Balancer target groups", target
  health states).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from dsinfra.cloud.aws import client, require_keys

USER_DATA_MAX_BYTES = 16 * 1024  # before base64 (EC2 API reference, UserData)
GONE_STATES = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated",
               "Detaching", "Detached")


@dataclass(frozen=True)
class GroupView:
    name: str
    desired: int
    min_size: int
    max_size: int
    template_id: str | None
    template_version: str | None
    instances: tuple[tuple[str, str], ...]  # (instance id, lifecycle state), live ones only
    suspended: frozenset[str] = frozenset()  # suspended processes (a stopped stack: Launch)

    @property
    def instance_ids(self) -> list[str]:
        return [i for i, _ in self.instances]


def describe_group(region: str, name: str) -> GroupView | None:
    answer = client("autoscaling", region).describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])
    groups = require_keys(answer, "DescribeAutoScalingGroups", "AutoScalingGroups")[
        "AutoScalingGroups"]
    if not groups:
        return None
    g = groups[0]
    template = g.get("LaunchTemplate") or (g.get("MixedInstancesPolicy") or {}).get(
        "LaunchTemplate", {}).get("LaunchTemplateSpecification") or {}
    live = tuple((i["InstanceId"], i.get("LifecycleState", "")) for i in g.get("Instances", [])
                 if i.get("LifecycleState") not in GONE_STATES)
    return GroupView(g["AutoScalingGroupName"], int(g["DesiredCapacity"]), int(g["MinSize"]),
                     int(g["MaxSize"]), template.get("LaunchTemplateId"),
                     template.get("Version"), live,
                     frozenset(p["ProcessName"] for p in g.get("SuspendedProcesses") or []))


def template_version(region: str, template_id: str, version: str | None) -> dict:
    """{number, user_data (text), description} of one version ($Default when None)."""
    answer = client("ec2", region).describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[version or "$Default"])
    found = require_keys(answer, "DescribeLaunchTemplateVersions",
                         "LaunchTemplateVersions")["LaunchTemplateVersions"]
    if not found:
        return {}
    v = found[0]
    raw = (v.get("LaunchTemplateData") or {}).get("UserData") or ""
    return {"number": str(v["VersionNumber"]), "description": v.get("VersionDescription", ""),
            "user_data": base64.b64decode(raw).decode("utf-8", "replace") if raw else ""}


def create_template_version(region: str, template_id: str, source_version: str,
                            user_data: str, description: str) -> str:
    """A new version from ``source_version`` with ``user_data``; returns its number."""
    answer = client("ec2", region).create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion=source_version,
        VersionDescription=description[:255],
        LaunchTemplateData={"UserData": base64.b64encode(user_data.encode()).decode()})
    return str(require_keys(answer, "CreateLaunchTemplateVersion",
                            "LaunchTemplateVersion")["LaunchTemplateVersion"]["VersionNumber"])


def use_template_version(region: str, group: str, template_id: str, version: str,
                         max_size: int | None = None) -> None:
    extra = {"MaxSize": max_size} if max_size is not None else {}
    client("autoscaling", region).update_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": version}, **extra)


def set_default_version(region: str, template_id: str, version: str) -> None:
    """For a group that launches ``$Default``: ModifyLaunchTemplate's DefaultVersion."""
    client("ec2", region).modify_launch_template(LaunchTemplateId=template_id,
                                                 DefaultVersion=version)


def set_max_size(region: str, group: str, max_size: int) -> None:
    client("autoscaling", region).update_auto_scaling_group(AutoScalingGroupName=group,
                                                             MaxSize=max_size)


def set_desired(region: str, group: str, desired: int) -> None:
    client("autoscaling", region).set_desired_capacity(
        AutoScalingGroupName=group, DesiredCapacity=desired, HonorCooldown=False)


def terminate_with_decrement(region: str, instance_id: str) -> None:
    client("autoscaling", region).terminate_instance_in_auto_scaling_group(
        InstanceId=instance_id, ShouldDecrementDesiredCapacity=True)


def target_states(region: str, target_group_arn: str) -> dict[str, str]:
    """instance id -> target health state (initial, healthy, unhealthy, draining, ...)."""
    answer = client("elbv2", region).describe_target_health(TargetGroupArn=target_group_arn)
    rows = require_keys(answer, "DescribeTargetHealth", "TargetHealthDescriptions")[
        "TargetHealthDescriptions"]
    return {r["Target"]["Id"]: r.get("TargetHealth", {}).get("State", "unknown") for r in rows}


def deregistration_delay_s(region: str, target_group_arn: str) -> int:
    answer = client("elbv2", region).describe_target_group_attributes(
        TargetGroupArn=target_group_arn)
    for attr in answer.get("Attributes", []):
        if attr.get("Key") == "deregistration_delay.timeout_seconds":
            return int(attr["Value"])
    return 300  # AWS's default (ELB User Guide, "Deregistration delay")


def ecr_image_exists(region: str, repository: str, *, tag: str | None = None,
                     digest: str | None = None) -> bool:
    ecr = client("ecr", region)
    image = {"imageTag": tag} if tag else {"imageDigest": digest}
    try:
        answer = ecr.describe_images(repositoryName=repository, imageIds=[image])
    except (ecr.exceptions.ImageNotFoundException,
            ecr.exceptions.RepositoryNotFoundException):
        return False
    return bool(answer.get("imageDetails"))
