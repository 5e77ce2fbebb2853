"""`dsinfra image bake STACK` (issue 27) through CliRunner against the moto server: the real
stack file and schema, a replicas' Auto Scaling group registered in an NLB target group made
with boto3 (moto implements autoscaling, elbv2 and EC2 CreateImage/DescribeImages), and the
Pulumi engine faked at the Automation API seam (outputs in, config written out)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

REGION = "us-east-1"
STACK_YAML = """config:
  dsinfra:tier: prod
  dsinfra:owner: team-a
  dsinfra:replicas: {{min: 2, max: 4}}
  dsinfra:tags: {{team: inference}}
  dsinfra:budget:
    amountUsd: {budget}
    onExceed: notify
"""
PLAIN_YAML = """config:
  dsinfra:tier: prod
  dsinfra:budget:
    amountUsd: 100
"""


class BakeEngine:
    """The Engine protocol's two calls a bake makes: the stack's outputs, and set_config."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self._outputs, self.config = outputs, {}

    def outputs(self, stack: str) -> dict[str, Any]:
        return dict(self._outputs)

    def set_config(self, stack: str, key: str, value: str) -> None:
        self.config[(stack, key)] = value


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: dsinfra\nruntime: python\n")
    (tmp_path / "stacks/Pulumi.r.yaml").write_text(STACK_YAML.format(budget=900))
    (tmp_path / "stacks/Pulumi.plain.yaml").write_text(PLAIN_YAML)
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    return tmp_path


def _replica_group(*, encrypted: bool = True, size: int = 2) -> dict[str, Any]:
    """What `up` leaves of a replica stack in AWS: a group from an encrypted template,
    registered in the load balancer's target group; its outputs' `replicas` object."""
    ec2 = boto3.client("ec2", REGION)
    scaling = boto3.client("autoscaling", REGION)
    elb = boto3.client("elbv2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/20",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    arn = elb.create_target_group(Name="r-api", Protocol="TCP", Port=8000, VpcId=vpc,
                                  TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = ec2.create_launch_template(LaunchTemplateName="r-gpu", LaunchTemplateData={
        "ImageId": ami, "InstanceType": "p4d.24xlarge", "BlockDeviceMappings": [{
            "DeviceName": "/dev/sda1",
            "Ebs": {"VolumeSize": 200, "VolumeType": "gp3", "Encrypted": encrypted}}]}
    )["LaunchTemplate"]["LaunchTemplateId"]
    scaling.create_auto_scaling_group(
        AutoScalingGroupName="r-gpu-1a2b3c", MinSize=size, MaxSize=4, DesiredCapacity=size,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        VPCZoneIdentifier=subnet, TargetGroupARNs=[arn], HealthCheckType="ELB",
        Tags=[{"Key": "dsinfra:stack", "Value": "r", "PropagateAtLaunch": True}])
    return {"nodes": [], "bastion": None, "endpoint": "http://internal-r-api:8000",
            "ssh_user": "ubuntu", "region": REGION,
            "replicas": {"group": "r-gpu-1a2b3c", "target_group_arn": arn,
                         "launch_template_id": template}}


def _instances() -> list[str]:
    group = boto3.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=["r-gpu-1a2b3c"])["AutoScalingGroups"][0]
    return sorted(i["InstanceId"] for i in group["Instances"])


def _audit(project) -> list[dict[str, Any]]:
    path = project / "state" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _own_images() -> list[dict[str, Any]]:
    return boto3.client("ec2", REGION).describe_images(Owners=["self"])["Images"]


@pytest.fixture
def engine(aws, project, monkeypatch):
    import dsinfra.cli.image_cmd as image_cmd

    made = BakeEngine(_replica_group())
    monkeypatch.setattr(image_cmd, "make_engine", lambda project_dir: made)
    return made


def test_bake_images_a_healthy_replica_tags_it_and_writes_the_stack_config(engine, project):
    result = CliRunner().invoke(app, ["image", "bake", "r", "--json"])
    assert result.exit_code == 0, result.output
    baked = json.loads(result.stdout)
    first = _instances()[0]
    assert baked["instance_id"] == first  # the first healthy one, by id: the same each run
    (image,) = _own_images()
    assert image["ImageId"] == baked["image_id"] and image["ImageId"].startswith("ami-")
    assert image["State"] == "available" and image["Name"].startswith("dsinfra-r-replica-")
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["dsinfra:stack"] == "r" and tags["dsinfra:budget-usd"] == "900.00"
    assert tags["dsinfra:owner"] == "team-a" and tags["team"] == "inference"
    assert tags["Name"] == "r-replica"
    # the image's snapshots cost money: they carry the stack's tags too
    (snapshot,) = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]]
    snap_tags = {t["Key"]: t["Value"] for t in boto3.client("ec2", REGION).describe_snapshots(
        SnapshotIds=[snapshot])["Snapshots"][0].get("Tags", [])}
    assert snap_tags["dsinfra:stack"] == "r" and snap_tags["dsinfra:on-exceed"] == "notify"
    assert engine.config == {("r", "dsinfra:replicaImage"): image["ImageId"]}
    # the group's health checks were held for the reboot, and are back
    group = boto3.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=["r-gpu-1a2b3c"])["AutoScalingGroups"][0]
    assert group["SuspendedProcesses"] == []
    kinds = [r["kind"] for r in _audit(project)]
    assert kinds == ["bake-start", "bake-image-created", "bake-done"]
    assert _audit(project)[-1]["image_id"] == image["ImageId"]


def test_a_stack_without_replicas_is_refused_before_any_call(aws, project, monkeypatch):
    import dsinfra.cli.image_cmd as image_cmd

    class Untouched:
        def outputs(self, stack):
            pytest.fail("a stack without replicas reads no outputs")

    monkeypatch.setattr(image_cmd, "make_engine", lambda p: Untouched())
    result = CliRunner().invoke(app, ["image", "bake", "plain"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()[:1]
    assert "stack plain has no dsinfra:replicas" in line
    assert [r["kind"] for r in _audit(project)] == ["bake-refused"]
    assert _own_images() == []


def test_no_healthy_replica_is_refused_and_nothing_is_baked(engine, project):
    """A target of a stopped instance is `unused` (Target.InvalidState), as AWS reports it
    (Elastic Load Balancing, DescribeTargetHealth TargetHealth reasons)."""
    boto3.client("ec2", REGION).stop_instances(InstanceIds=_instances())
    result = CliRunner().invoke(app, ["image", "bake", "r"])
    assert result.exit_code == 2, result.output
    assert "no healthy replica in Auto Scaling group r-gpu-1a2b3c" in result.stderr
    assert _own_images() == [] and engine.config == {}
    assert [r["kind"] for r in _audit(project)] == ["bake-refused"]


def test_only_a_replica_the_target_group_calls_healthy_is_imaged(engine, project):
    first, second = _instances()
    boto3.client("ec2", REGION).stop_instances(InstanceIds=[first])
    result = CliRunner().invoke(app, ["image", "bake", "r", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["instance_id"] == second


def test_an_unencrypted_replica_is_never_imaged(aws, project, monkeypatch):
    import dsinfra.cli.image_cmd as image_cmd

    made = BakeEngine(_replica_group(encrypted=False))
    monkeypatch.setattr(image_cmd, "make_engine", lambda p: made)
    result = CliRunner().invoke(app, ["image", "bake", "r"])
    assert result.exit_code == 3, result.output
    assert "unencrypted volumes" in result.stderr
    assert _own_images() == [] and made.config == {}
    assert [r["kind"] for r in _audit(project)] == ["bake-failed"]


def test_aws_failing_is_exit_3_and_audited(aws, project, monkeypatch):
    import dsinfra.cli.image_cmd as image_cmd

    outputs = _replica_group()
    outputs["replicas"]["group"] = "gone-group"
    monkeypatch.setattr(image_cmd, "make_engine", lambda p: BakeEngine(outputs))
    result = CliRunner().invoke(app, ["image", "bake", "r"])
    assert result.exit_code == 3, result.output
    assert "Auto Scaling group gone-group does not exist" in result.stderr
    (record,) = _audit(project)
    assert record["kind"] == "bake-failed" and "gone-group" in record["reason"]


def test_the_wait_reports_each_state_and_a_failed_image_fails_the_bake(aws, project, monkeypatch):
    """The poll loop, on a clock the test moves: pending is reported, then AWS's `failed`
    with its reason is exit 3, the health checks are released, nothing is written."""
    from dsinfra.cloud import images
    from dsinfra.errors import CloudError
    from dsinfra.ops.bake import bake
    from dsinfra.stackfiles import load_stack

    engine = BakeEngine(_replica_group())
    states = iter([("pending", ""), ("pending", ""), ("failed", "Client.InternalError")])

    def state(region, image_id):
        name, reason = next(states)
        return images.ImageState(image_id, name, (), reason)

    monkeypatch.setattr(images, "image_state", state)
    now = [0.0]
    seen: list[tuple[str, float]] = []
    audited: list[str] = []
    with pytest.raises(CloudError, match="is failed: Client.InternalError"):
        bake(load_stack("r", project), engine, audit=lambda kind, **f: audited.append(kind),
             progress=lambda s, w: seen.append((s, w)), poll_s=15,
             sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert seen == [("pending", 0.0), ("pending", 15.0), ("failed", 30.0)]
    assert audited == ["bake-start", "bake-image-created", "bake-failed"]
    assert engine.config == {}
    group = boto3.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=["r-gpu-1a2b3c"])["AutoScalingGroups"][0]
    assert group["SuspendedProcesses"] == []


def test_a_bake_that_outlasts_its_wait_names_the_image_and_writes_nothing(aws, project,
                                                                         monkeypatch):
    from dsinfra.cloud import images
    from dsinfra.errors import CloudError
    from dsinfra.ops.bake import bake
    from dsinfra.stackfiles import load_stack

    engine = BakeEngine(_replica_group())
    monkeypatch.setattr(images, "image_state",
                        lambda region, image_id: images.ImageState(image_id, "pending"))
    now = [0.0]
    with pytest.raises(CloudError, match=r"is still pending after 60 s") as raised:
        bake(load_stack("r", project), engine, wait_s=60, poll_s=30,
             sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert "describe-images --image-ids ami-" in raised.value.hint
    assert engine.config == {}


def test_a_config_that_cannot_be_written_names_the_available_image(aws, project, monkeypatch):
    import dsinfra.cli.image_cmd as image_cmd
    from dsinfra.errors import CloudError as EngineFailed

    class Refusing(BakeEngine):
        def set_config(self, stack, key, value):
            raise EngineFailed("pulumi config set failed: the stack is locked")

    made = Refusing(_replica_group())
    monkeypatch.setattr(image_cmd, "make_engine", lambda p: made)
    result = CliRunner().invoke(app, ["image", "bake", "r"])
    assert result.exit_code == 3, result.output
    (image,) = _own_images()
    assert f"image {image['ImageId']} is available but dsinfra:replicaImage was not written" \
        in result.stderr
    assert f"pulumi config set dsinfra:replicaImage {image['ImageId']} --stack r" in result.stderr
    assert [r["kind"] for r in _audit(project)][-1] == "bake-failed"
