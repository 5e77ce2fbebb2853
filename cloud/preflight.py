"""The boto3 edge of ``dsinfra doctor`` and ``up``'s preflight: who the caller is, where a
type is offered, the vCPU quota and what uses it, the AMI, and the weights mirror's bucket.
Each read returns plain typed values (or ``Refused`` with AWS's one-line answer); the checks
that judge them are ops/doctor.py's. Every function takes the client factory
(``cloud.aws.client``, or a test's moto/Stubber clients).

SOURCE of the shapes: botocore's service models (sts GetCallerIdentity, ec2
DescribeInstanceTypeOfferings / DescribeInstances / DescribeImages, service-quotas
GetServiceQuota / GetAWSDefaultServiceQuota, ssm GetParameter, s3 GetBucketLocation /
HeadObject).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsinfra.catalog import INSTANCE_SPECS

ClientFactory = Callable[..., Any]

DLAMI_OWNER = "898082745236"
DLAMI_PARAMETERS = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-ubuntu-22.04/latest/ami-id",
)
DLAMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"


@dataclass(frozen=True)
class Refused:
    """AWS (or botocore) said no: ``Code: Message``, one line."""

    message: str


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str


@dataclass(frozen=True)
class Image:
    ami_id: str
    name: str
    source: str  # where it was found: "SSM <parameter>" or "describe_images (...)"


def aws_message(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', str(exc))}"


def caller_identity(factory: ClientFactory, region: str | None) -> Identity | Refused:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = factory("sts", region).get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        return Refused(aws_message(exc))
    return Identity(found["Account"], found["Arn"])


def offered_zones(factory: ClientFactory, region: str, instance_type: str) -> list[str]:
    """The availability zones of ``region`` that offer ``instance_type``, sorted."""
    ec2 = factory("ec2", region)
    zones: set[str] = set()
    for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}]):
        zones.update(o["Location"] for o in page["InstanceTypeOfferings"])
    return sorted(zones)


def read_quota(factory: ClientFactory, region: str, code: str) -> float | None:
    """An ec2 quota's value; None where Service Quotas answers neither read."""
    from botocore.exceptions import BotoCoreError, ClientError

    quotas = factory("service-quotas", region)
    # Each call written out (not looped over as bound methods): cloud/iam_calls.py derives
    # the IAM policy from the calls it can see.
    try:
        return float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)
                     ["Quota"]["Value"])
    except (ClientError, BotoCoreError):
        pass
    # An account that never changed a quota may only answer with the AWS default.
    try:
        return float(quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)
                     ["Quota"]["Value"])
    except (ClientError, BotoCoreError):
        return None


def running_vcpus(factory: ClientFactory, region: str, family: str, stack: str) -> int:
    """vCPUs of running/pending instances in ``family``'s quota, other than this stack's own."""
    from dsinfra.tags import STACK

    ec2 = factory("ec2", region)
    total = 0
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if tags.get(STACK) == stack or quota_family(instance["InstanceType"]) != family:
                    continue
                total += _instance_vcpus(instance)
    return total


def _instance_vcpus(instance: dict[str, Any]) -> int:
    spec = INSTANCE_SPECS.get(instance["InstanceType"])
    if spec is not None:
        return spec.vcpus
    cpu = instance.get("CpuOptions", {})
    return cpu.get("CoreCount", 0) * cpu.get("ThreadsPerCore", 1)


def quota_family(instance_type: str) -> str:
    letter = instance_type[:1]
    return "P" if letter == "p" else "G" if letter in ("g", "v") else "Standard"


def find_image(factory: ClientFactory, region: str, ami_id: str) -> Image | None:
    """``ami_id`` as this region knows it; None where it does not."""
    from botocore.exceptions import ClientError

    try:
        found = factory("ec2", region).describe_images(ImageIds=[ami_id])["Images"]
    except ClientError:
        found = []
    return Image(ami_id, found[0].get("Name", ""), "describe_images") if found else None


def resolve_dlami(factory: ClientFactory, region: str) -> tuple[str | None, str]:
    """The Deep Learning Base AMI: AWS's public SSM parameter, else the newest image of its
    owner and name; (None, "") where neither finds one."""
    from botocore.exceptions import ClientError

    ssm = factory("ssm", region)
    for name in DLAMI_PARAMETERS:
        try:
            return ssm.get_parameter(Name=name)["Parameter"]["Value"], f"SSM {name}"
        except ClientError:
            continue
    images = factory("ec2", region).describe_images(
        Owners=[DLAMI_OWNER], Filters=[{"Name": "name", "Values": [DLAMI_NAME]}])["Images"]
    if not images:
        return None, ""
    newest = max(images, key=lambda i: i.get("CreationDate", ""))
    return newest["ImageId"], f"describe_images (newest of {len(images)}: {newest.get('Name')})"


def bucket_region_with(factory: ClientFactory, region: str, bucket: str, key: str
                       ) -> str | Refused:
    """The region of ``bucket`` when it holds a readable ``key``."""
    s3 = factory("s3", region)
    try:
        found = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - botocore raises several kinds
        return Refused(aws_message(exc))
    # None is us-east-1's answer, "EU" the oldest buckets' name for eu-west-1.
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(found, found)


def spot_placement_scores(factory: ClientFactory, shapes: set[tuple[str, int]],
                          regions: list[str]) -> dict[tuple[str, int, str], int]:
    """AWS's 1-10 spot placement score per (type, nodes, region), the best of its zones;
    missing where it declines (GetSpotPlacementScores)."""
    from botocore.exceptions import BotoCoreError, ClientError

    ec2 = factory("ec2", regions[0])
    found: dict[tuple[str, int, str], int] = {}
    for itype, nodes in sorted(shapes):
        try:
            answer = ec2.get_spot_placement_scores(
                InstanceTypes=[itype], TargetCapacity=nodes, TargetCapacityUnitType="units",
                SingleAvailabilityZone=False, RegionNames=list(regions))
        except (BotoCoreError, ClientError):
            continue
        for entry in answer.get("SpotPlacementScores", []):
            key = (itype, nodes, entry["Region"])
            found[key] = max(found.get(key, 0), int(entry["Score"]))
    return found
