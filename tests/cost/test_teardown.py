"""teardown_stack against moto server: Pulumi first where it answers, the tag sweep always,
and proof that nothing billable is left, for whole, partial and spot stacks."""

from __future__ import annotations

from dsinfra.cloud.aws import client
from dsinfra.cloud.teardown import teardown_stack
from dsinfra.errors import CloudError

from .conftest import _spec, make_stack, stack_tags
from .helpers import REGIONS, billable, instance_states


class FakePulumiEngine:
    """Stands in for the Automation API (no Pulumi CLI here): ``destroy`` deletes what the
    stack's Pulumi state would hold (its instances), or fails like an unreachable backend."""

    def __init__(self, instance_ids=None, fail=False):
        self.instance_ids, self.fail, self.calls = instance_ids or [], fail, []

    def destroy(self, stack, on_event=None):
        self.calls.append(stack)
        if self.fail:
            raise CloudError(f"pulumi destroy failed for stack {stack!r}: backend unreachable")
        client("ec2", "us-east-1").terminate_instances(InstanceIds=self.instance_ids)


def test_pulumi_destroy_runs_first_and_the_sweep_removes_what_it_missed(aws):
    made = make_stack("mixed", nodes=2, eip=True, extra_volume_gib=40)
    engine = FakePulumiEngine(made["instances"])  # Pulumi's state lacks the EIP and volume
    result = teardown_stack("mixed", REGIONS, engine=engine, sleep=lambda s: None)
    assert engine.calls == ["mixed"] and result.pulumi == "destroyed"
    assert f"address {made['address']}" in result.deleted
    assert f"volume {made['volume']}" in result.deleted
    assert result.clean and billable("mixed") == []


def test_unreachable_backend_falls_back_to_the_tag_sweep(aws):
    made = make_stack("orphan", eip=True)
    result = teardown_stack("orphan", REGIONS, engine=FakePulumiEngine(fail=True),
                            sleep=lambda s: None)
    assert result.pulumi.startswith("failed: ") and "backend unreachable" in result.pulumi
    assert result.clean and set(instance_states(made["instances"]).values()) == {"terminated"}


def test_partially_created_stack_without_instances_is_swept(aws):
    ec2, tags = client("ec2", "us-east-1"), stack_tags("half")
    ec2.allocate_address(Domain="vpc", TagSpecifications=[_spec("elastic-ip", tags)])
    ec2.create_volume(Size=200, AvailabilityZone="us-east-1a",
                      TagSpecifications=[_spec("volume", tags)])
    assert len(billable("half")) == 2
    result = teardown_stack("half", REGIONS)
    assert result.clean and billable("half") == []
    assert "nothing billable with dsinfra:stack=half remains" in result.summary


def test_spot_stack_has_its_request_cancelled_and_instances_terminated(aws):
    ec2, tags = client("ec2", "us-east-1"), stack_tags("spotty")
    request = ec2.request_spot_instances(
        InstanceCount=1, Type="persistent",
        LaunchSpecification={"ImageId": "ami-12c6146b", "InstanceType": "g5.2xlarge"},
        TagSpecifications=[_spec("spot-instances-request", tags)])
    request_id = request["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    instance_id = ec2.describe_spot_instance_requests(
        SpotInstanceRequestIds=[request_id])["SpotInstanceRequests"][0]["InstanceId"]
    ec2.create_tags(Resources=[instance_id], Tags=_spec("instance", tags)["Tags"])
    result = teardown_stack("spotty", REGIONS, sleep=lambda s: None)
    # AWS marks a cancelled request "cancelled"; moto drops it: either way it is not open.
    left = ec2.describe_spot_instance_requests(Filters=[
        {"Name": "state", "Values": ["open", "active"]}])["SpotInstanceRequests"]
    assert request_id not in [q["SpotInstanceRequestId"] for q in left]
    assert result.clean and instance_states([instance_id])[instance_id] == "terminated"


def test_teardown_twice_is_idempotent(aws):
    make_stack("twice", eip=True, extra_volume_gib=10)
    first = teardown_stack("twice", REGIONS, sleep=lambda s: None)
    second = teardown_stack("twice", REGIONS, sleep=lambda s: None)
    assert first.clean and first.deleted
    assert second.clean and second.deleted == [] and second.failed == []


def test_notification_goes_to_an_sns_topic(aws, state_dir, monkeypatch):
    from .conftest import hours_later
    from .helpers import check

    sns, sqs = client("sns", "us-east-1"), client("sqs", "us-east-1")
    topic = sns.create_topic(Name="budgets")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs",
                  Endpoint=queue_arn["Attributes"]["QueueArn"])
    monkeypatch.setenv("DSINFRA_SNS_TOPIC_ARN", topic)
    make_stack("loud", budget_usd=1, period="total", on_exceed="notify")
    assert check(hours_later(5), enforce=True)["loud"]["action_result"] == "done"
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1 and "loud" in messages[0]["Body"]


def test_nat_gateway_load_balancer_and_target_group_are_swept(aws):
    from .conftest import stack_tags

    ec2, elbv2 = client("ec2", "us-east-1"), client("elbv2", "us-east-1")
    tags = stack_tags("netty")
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24",
                                 AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]
    eip = ec2.allocate_address(Domain="vpc", TagSpecifications=[_spec("elastic-ip", tags)])
    nat = ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=eip["AllocationId"],
                                 TagSpecifications=[_spec("natgateway", tags)])
    lb = elbv2.create_load_balancer(Name="netty-api", Subnets=subnets, Type="network",
                                    Scheme="internal", Tags=tag_list)["LoadBalancers"][0]
    group = elbv2.create_target_group(Name="netty-tg", Protocol="TCP", Port=8000, VpcId=vpc,
                                      TargetType="instance")["TargetGroups"][0]
    elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=80,
                          DefaultActions=[{"Type": "forward",
                                           "TargetGroupArn": group["TargetGroupArn"]}])
    kinds = sorted(kind for kind, _ in billable("netty"))
    assert kinds == ["address", "load_balancer", "nat_gateway"]
    result = teardown_stack("netty", REGIONS, sleep=lambda s: None)
    assert f"nat_gateway {nat['NatGateway']['NatGatewayId']}" in result.deleted
    assert f"load_balancer {lb['LoadBalancerArn']}" in result.deleted
    assert f"target_group {group['TargetGroupArn']}" in result.deleted
    assert elbv2.describe_target_groups()["TargetGroups"] == []
    assert result.clean, result.summary
    assert [k for k, state in billable("netty") if state not in ("deleting",)] == []


# --- replicas: the group, the baked images and their snapshots (issue 27) --------------------

def _bake(stack: str | None, instance: str, name: str, **tag_args) -> tuple[str, list[str]]:
    """What ``dsinfra image bake`` leaves (cloud/images.py): an image tagged with the stack at
    creation and its snapshots tagged after; ``stack`` None: an untagged image."""
    ec2 = client("ec2", "us-east-1")
    tags = stack_tags(stack, **tag_args) if stack else {"Name": name}
    image = ec2.create_image(InstanceId=instance, Name=name,
                             TagSpecifications=[_spec("image", tags)])["ImageId"]
    snapshots = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image])[
        "Images"][0]["BlockDeviceMappings"] if m.get("Ebs", {}).get("SnapshotId")]
    assert snapshots  # moto's CreateImage snapshots the root volume, as AWS does
    if stack:
        ec2.create_tags(Resources=snapshots, Tags=[{"Key": k, "Value": v}
                                                   for k, v in tags.items()])
    return image, snapshots


def _images(*ids: str) -> list[str]:
    return [i["ImageId"] for i in client("ec2", "us-east-1").describe_images(
        Owners=["self"])["Images"] if i["ImageId"] in ids]


def _snapshots(*ids: str) -> list[str]:
    return [s["SnapshotId"] for s in client("ec2", "us-east-1").describe_snapshots(
        OwnerIds=["self"])["Snapshots"] if s["SnapshotId"] in ids]


def test_a_replicas_stack_leaves_no_group_image_or_snapshot_and_each_delete_is_audited(aws):
    from .test_autoscale import _asg, aws_health_checks, make_replicas, members

    name = make_replicas("svc", desired=2)
    image, snaps = _bake("svc", members(name)[0], "svc-replica-1")
    other = make_stack("other")  # another stack's image, and an untagged one, stay
    other_image, other_snaps = _bake("other", other["instances"][0], "other-replica-1")
    loose_image, loose_snaps = _bake(None, other["instances"][0], "someone-elses")
    records: list[tuple[str, dict]] = []
    result = teardown_stack("svc", REGIONS, sleep=lambda s: None,
                            audit=lambda kind, **f: records.append((kind, f)))
    assert result.clean, result.summary
    assert _asg().describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"] == []
    assert _images(image) == [] and _snapshots(*snaps) == []
    assert set(_images(other_image, loose_image)) == {other_image, loose_image}
    assert set(_snapshots(*other_snaps, *loose_snaps)) == {*other_snaps, *loose_snaps}
    aws_health_checks()  # a group left behind would replace what the sweep terminated
    assert billable("svc") == [] and billable("other") != []
    # Audited one by one, in the order that keeps the sweep from being undone: the group
    # before anything it could relaunch, the image before the snapshots it holds.
    kinds = [f["resource_kind"] for kind, f in records if kind == "teardown.deleted"]
    assert records and all(f["stack"] == "svc" for _, f in records)
    assert kinds[0] == "auto_scaling_group"
    assert kinds.index("image") < min(i for i, k in enumerate(kinds) if k == "snapshot")
    assert {f["id"] for _, f in records if f["resource_kind"] in ("image", "snapshot")} == \
        {image, *snaps}


def test_a_group_with_no_instance_left_is_found_by_its_tag_and_deleted(aws):
    from .test_autoscale import _asg, make_replicas

    name = make_replicas("idle", min_size=0, desired=0)
    ec2 = client("ec2", "us-east-1")
    ec2.create_volume(Size=20, AvailabilityZone="us-east-1a",
                      TagSpecifications=[_spec("volume", stack_tags("idle"))])
    result = teardown_stack("idle", REGIONS, sleep=lambda s: None)
    assert f"auto_scaling_group {name}" in result.deleted and result.clean
    assert _asg().describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"] == []


def test_a_group_another_stack_owns_is_never_deleted_even_if_named(aws):
    from .test_autoscale import _asg, make_replicas, members

    theirs = make_replicas("theirs", desired=1)
    # An instance that claims stack "mine" but was launched by the other stack's group.
    ec2 = client("ec2", "us-east-1")
    ec2.create_tags(Resources=members(theirs), Tags=[{"Key": "dsinfra:stack", "Value": "mine"}])
    result = teardown_stack("mine", REGIONS, sleep=lambda s: None)
    assert any(f.startswith(f"auto_scaling_group {theirs}: named by") for f in result.failed)
    assert _asg().describe_auto_scaling_groups(AutoScalingGroupNames=[theirs])[
        "AutoScalingGroups"] != []


def test_a_snapshot_an_image_still_holds_is_reported_not_hidden(aws, monkeypatch):
    """If the image cannot be deregistered, its snapshots are not deleted (AWS refuses with
    InvalidSnapshot.InUse) and the teardown says what still bills."""
    from botocore.exceptions import ClientError

    from dsinfra.cloud import teardown as TD

    made = make_stack("held")
    image, snaps = _bake("held", made["instances"][0], "held-replica-1")
    real = TD._deregister_images

    def refused(ec2, region, stacks, results):
        class Refusing:
            def __getattr__(self, name):
                return getattr(ec2, name)

            def deregister_image(self, **kw):
                raise ClientError({"Error": {"Code": "UnauthorizedOperation",
                                             "Message": "no"}}, "DeregisterImage")
        return real(Refusing(), region, stacks, results)

    monkeypatch.setattr(TD, "_deregister_images", refused)
    result = teardown_stack("held", REGIONS, sleep=lambda s: None)
    assert not result.clean
    assert f"image {image}: UnauthorizedOperation" in result.failed
    assert any(entry.startswith(f"snapshot {snaps[0]}") for entry in result.leftover)
    assert _snapshots(*snaps) == snaps
