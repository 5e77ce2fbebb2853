"""The AWS calls of ``dsinfra image bake`` (ops/bake.py): which replica of a stack's Auto
Scaling group is healthy, EC2 CreateImage from it, and its state until ``available``.

A replica counts as healthy only where both AWS services say so: the group has it
``InService`` and ``Healthy``, and the load balancer's target group has it ``healthy`` (the
engine's health path answered 200: infra/loadbalancer.py). Each call fails as a
``CloudError`` (exit 3) with AWS's own words in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsinfra.cloud import aws
from dsinfra.errors import CloudError

# What a bake keeps the group from doing while CreateImage reboots the replica (EC2 Auto
# Scaling User Guide, "Suspend and resume Amazon EC2 Auto Scaling processes"): without it the
# failed load balancer checks of the reboot make the group replace the very instance being
# imaged. Launch, Terminate and scaling stay on.
HELD_PROCESSES = ("HealthCheck", "ReplaceUnhealthy")


@dataclass(frozen=True)
class ImageState:
    image_id: str
    state: str  # pending | available | failed | ... (DescribeImages ImageState)
    snapshot_ids: tuple[str, ...] = ()
    reason: str = ""  # StateReason.Message where AWS gives one


def _call(what: str, run):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return run()
    except (BotoCoreError, ClientError, aws.UnreadableAnswer) as exc:
        raise CloudError(f"{what}: {aws.one_line_error(exc)}") from None


def healthy_replicas(region: str, group: str, target_group_arn: str) -> list[str]:
    """The group's instances that the group and the target group both call healthy, sorted
    by instance id (a bake picks the same one each time it is run on the same group)."""
    scaling = aws.client("autoscaling", region)
    found = _call(f"could not read Auto Scaling group {group}",
                  lambda: scaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group]))
    groups = found.get("AutoScalingGroups") or []
    if not groups:
        raise CloudError(f"Auto Scaling group {group} does not exist in {region}")
    in_service = [i["InstanceId"] for i in groups[0].get("Instances") or []
                  if i.get("LifecycleState") == "InService" and i.get("HealthStatus") == "Healthy"]
    if not in_service:
        return []
    balancer = aws.client("elbv2", region)
    health = _call(f"could not read the target health of {target_group_arn}",
                   lambda: balancer.describe_target_health(
                       TargetGroupArn=target_group_arn,
                       Targets=[{"Id": i} for i in in_service]))
    healthy = {d["Target"]["Id"] for d in health.get("TargetHealthDescriptions") or []
               if (d.get("TargetHealth") or {}).get("State") == "healthy"}
    return sorted(i for i in in_service if i in healthy)


def unencrypted_volumes(region: str, instance_id: str) -> list[str]:
    """The instance's EBS volumes that are not encrypted. An image's snapshots of encrypted
    volumes are encrypted (Amazon EBS User Guide, "How Amazon EBS encryption works":
    snapshots of an encrypted volume are encrypted), so a bake from an instance with none
    here makes an encrypted image."""
    ec2 = aws.client("ec2", region)
    answer = _call(f"could not read the volumes of {instance_id}", lambda: ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]))
    volumes = answer.get("Volumes") or []
    if not volumes:
        raise CloudError(f"instance {instance_id} has no EBS volume to image")
    return sorted(v["VolumeId"] for v in volumes if not v.get("Encrypted"))


def hold_health_checks(region: str, group: str) -> None:
    scaling = aws.client("autoscaling", region)
    _call(f"could not suspend {', '.join(HELD_PROCESSES)} on {group}",
          lambda: scaling.suspend_processes(AutoScalingGroupName=group,
                                            ScalingProcesses=list(HELD_PROCESSES)))


def release_health_checks(region: str, group: str) -> None:
    scaling = aws.client("autoscaling", region)
    _call(f"could not resume {', '.join(HELD_PROCESSES)} on {group}",
          lambda: scaling.resume_processes(AutoScalingGroupName=group,
                                           ScalingProcesses=list(HELD_PROCESSES)))


def image_instance(region: str, instance_id: str, name: str, description: str,
                 tags: dict[str, str]) -> str:
    """EC2 CreateImage from ``instance_id``, tagged at creation. The instance reboots (AWS's
    default, NoReboot false): a consistent file system in the image."""
    ec2 = aws.client("ec2", region)
    answer = _call(f"could not create an image of {instance_id}", lambda: ec2.create_image(
        InstanceId=instance_id, Name=name, Description=description, NoReboot=False,
        TagSpecifications=[{"ResourceType": "image", "Tags": _tag_list(tags)}]))
    return aws.require_keys(answer, "CreateImage", "ImageId")["ImageId"]


def image_state(region: str, image_id: str) -> ImageState:
    ec2 = aws.client("ec2", region)
    answer = _call(f"could not read image {image_id}",
                   lambda: ec2.describe_images(ImageIds=[image_id]))
    images = answer.get("Images") or []
    if not images:
        raise CloudError(f"image {image_id} is not there any more")
    image = images[0]
    snapshots = tuple(m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings") or []
                      if (m.get("Ebs") or {}).get("SnapshotId"))
    return ImageState(image_id, str(image.get("State", "")), snapshots,
                      str((image.get("StateReason") or {}).get("Message") or ""))


def tag_snapshots(region: str, resource_ids: list[str] | tuple[str, ...],
                  tags: dict[str, str]) -> None:
    """The image's snapshots carry the stack's tags too: they are what the image costs."""
    if not resource_ids:
        return
    ec2 = aws.client("ec2", region)
    _call(f"could not tag {', '.join(resource_ids)}", lambda: ec2.create_tags(
        Resources=list(resource_ids), Tags=_tag_list(tags)))


def _tag_list(tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]
