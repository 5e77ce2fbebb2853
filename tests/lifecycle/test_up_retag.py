"""Issue 27 / issue 23 item 1: after a budget, protect or TTL change, `up` brings a replicas
stack's running instances, their volumes and its baked images and snapshots to the new rule, so
the cost check reads the new rule and never `failed`.

On the moto server: a fake Engine plays Pulumi's part (it writes the group's tags from the
stack config, propagated at launch, as infra/nodes.py declares them; a tag change on the group
reaches only instances launched after it, EC2 Auto Scaling User Guide, "Tag Auto Scaling groups
and instances"), `bring_up` runs with the real re-tag (cloud/retag.py), and the real cost check
reads the result."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dsinfra import tags as T
from dsinfra.budget import RULE_KEYS
from dsinfra.config import parse_stack_config
from dsinfra.ops.up import UpPorts, bring_up

from .fakes import FakeBootstrap, FakeEngine, StubbedFactory

REGION = "us-east-1"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _config(**values):
    base = {"tier": "dev", "instanceType": "g5.2xlarge",
            "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            "replicas": {"min": 2, "max": 3},
            "budget": {"amountUsd": 2000, "onExceed": "stop"}}
    return parse_stack_config("svc", {**base, **values})


class GroupEngine(FakeEngine):
    """``up`` does what the replicas program does to the group: creates it once (tags
    propagated at launch, root volumes tagged by the launch template) and, on later runs,
    replaces its tag set with the config's (Pulumi's diff), touching no running instance.
    It also keeps one resource Pulumi tags in place (an Elastic IP standing for the load
    balancer, NAT gateway and the rest): after a change, that one has the new rule."""

    def __init__(self) -> None:
        super().__init__()
        self.stack_config = None
        self.address: str | None = None

    def up(self, stack: str, on_event=None) -> dict[str, Any]:
        from dsinfra.cloud.aws import client

        raw = super().up(stack, on_event)
        asg, ec2 = client("autoscaling", REGION), client("ec2", REGION)
        tags = T.merge_tags("svc-gpu", self.stack_config)
        group_tags = [{"ResourceId": "svc-gpu", "ResourceType": "auto-scaling-group",
                       "Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()]
        existing = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["svc-gpu"])[
            "AutoScalingGroups"]
        if not existing:
            template = ec2.create_launch_template(
                LaunchTemplateName="svc-gpu",
                LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g5.2xlarge"})
            asg.create_auto_scaling_group(
                AutoScalingGroupName="svc-gpu", MinSize=2, MaxSize=3, DesiredCapacity=2,
                LaunchTemplate={"LaunchTemplateId":
                                template["LaunchTemplate"]["LaunchTemplateId"]},
                AvailabilityZones=[f"{REGION}a"], Tags=group_tags)
            # The template's volume tag specification tags each replica's root volume.
            ids = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(
                AutoScalingGroupNames=["svc-gpu"])["AutoScalingGroups"][0]["Instances"]]
            volumes = [m["Ebs"]["VolumeId"] for r in ec2.describe_instances(
                InstanceIds=ids)["Reservations"] for i in r["Instances"]
                for m in i["BlockDeviceMappings"]]
            ec2.create_tags(Resources=volumes,
                            Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        else:
            old = {t["Key"] for t in existing[0]["Tags"]}
            gone = [{"ResourceId": "svc-gpu", "ResourceType": "auto-scaling-group", "Key": k}
                    for k in old - set(tags) if k.startswith("dsinfra:")]
            if gone:
                asg.delete_tags(Tags=gone)
            asg.create_or_update_tags(Tags=group_tags)
        if self.address is None:
            self.address = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ec2.delete_tags(Resources=[self.address],
                        Tags=[{"Key": k} for k in RULE_KEYS if k not in tags])
        ec2.create_tags(Resources=[self.address],
                        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        raw["replicas"] = {"group": "svc-gpu", "target_group_arn": None,
                           "launch_template_id": None}
        return raw


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("DSINFRA_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("DSINFRA_SNS_TOPIC_ARN", raising=False)
    return tmp_path / "state"


def _up(config, engine, records, **ports):
    from dsinfra.ops.doctor import run_preflight

    engine.stack_config = config
    factory = StubbedFactory(quota_value=64, dlami="ami-0123456789abcdef0")
    ports.setdefault("preflight", lambda c: run_preflight(
        c, client_factory=factory, pulumi_version=lambda: "v3.200.0"))
    ports.setdefault("bootstrap", FakeBootstrap())
    # The endpoint and each replica answer healthy without any traffic: the nodes' addresses
    # here are moto's, never to be reached.
    ports.setdefault("probe", lambda url, timeout: True)
    return bring_up(config, engine, now=NOW, ports=UpPorts(
        audit=lambda kind, **f: records.append((kind, f)), **ports))


def _check() -> dict:
    from dsinfra.ops.check import run_check as check
    from dsinfra.ops.local import local_context

    ctx = local_context((REGION,), enforce=False, now=NOW + timedelta(minutes=5),
                        use_pulumi=False)
    try:
        return {s["stack"]: s for s in check(ctx, None)["stacks"]}["svc"]
    finally:
        ctx.ledger.close()


def _bake() -> list[str]:
    """An image of one replica and its snapshots, tagged as `dsinfra image bake` tags them."""
    from dsinfra.cloud.aws import client

    ec2, asg = client("ec2", REGION), client("autoscaling", REGION)
    member = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["svc-gpu"])[
        "AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    tags = {t["Key"]: t["Value"] for r in ec2.describe_instances(InstanceIds=[member])[
        "Reservations"] for i in r["Instances"] for t in i["Tags"]
        if t["Key"].startswith("dsinfra:")}
    image = ec2.create_image(InstanceId=member, Name="svc-replica-bake", TagSpecifications=[
        {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    snaps = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image["ImageId"]])[
        "Images"][0]["BlockDeviceMappings"] if m.get("Ebs", {}).get("SnapshotId")]
    ec2.create_tags(Resources=snaps, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return [image["ImageId"], *snaps]


def _rule_tags(ids: list[str]) -> dict[str, dict[str, str]]:
    from dsinfra.cloud.aws import client

    ec2 = client("ec2", REGION)
    out: dict[str, dict[str, str]] = {}
    for page in ec2.get_paginator("describe_tags").paginate(
            Filters=[{"Name": "resource-id", "Values": ids}]):
        for t in page["Tags"]:
            if t["Key"] in RULE_KEYS:
                out.setdefault(t["ResourceId"], {})[t["Key"]] = t["Value"]
    return out


def test_a_protect_budget_and_ttl_change_reaches_the_running_replicas(aws, state):
    records: list[tuple[str, dict]] = []
    engine = GroupEngine()
    first = _config(ttlHours=12)
    _up(first, engine, records)
    baked = _bake()
    before = _check()
    assert before["status"] == "ok" and before["protect"] is False, before["reason"]
    assert before["budget_usd"] == 2000 and before["expires_at"] is not None

    # The documented TTL restart and a stricter rule: no expiry, protected, a new budget.
    second = _config(protect=True, budget={"amountUsd": 3000, "onExceed": "destroy"})
    skipped: list[tuple[str, dict]] = []
    _up(second, engine, skipped, retag=lambda *a: None)  # without the re-tag: the gap
    stale = _check()
    assert stale["status"] == "failed" and "disagree" in stale["reason"]

    _up(second, engine, records)
    after = _check()
    assert after["status"] == "ok", after["reason"]
    assert (after["protect"], after["budget_usd"], after["on_exceed"], after["expires_at"]) \
        == (True, 3000, "destroy", None)
    retags = [f for kind, f in records if kind == "up.retag"]
    assert len(retags) == 1 and retags[0]["rule"][T.PROTECT] == "true"
    changed = set(retags[0]["resources"])
    assert set(baked) <= changed  # the image and its snapshots, beside instances and volumes
    assert {k for keys in retags[0]["removed"].values() for k in keys} == {T.EXPIRES_AT}
    # Only the rule keys were written; the group's own tags (Name, owner...) stay as they were.
    assert all(set(keys) <= set(RULE_KEYS) for keys in retags[0]["written"].values())
    assert all(T.EXPIRES_AT not in tags for tags in _rule_tags(sorted(changed)).values())

    # Nothing left to change: a third `up` writes nothing and audits no re-tag.
    again: list[tuple[str, dict]] = []
    _up(second, engine, again)
    assert [k for k, _ in again if k == "up.retag"] == []


def test_another_stacks_resources_are_never_retagged(aws, state):
    from dsinfra.cloud.aws import client
    from dsinfra.cloud.retag import retag_group

    engine = GroupEngine()
    _up(_config(), engine, [])
    ec2 = client("ec2", REGION)
    # An image someone else owns the tag of, with the old rule: not ours to change.
    other = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                              InstanceType="g5.2xlarge")["Instances"][0]["InstanceId"]
    foreign = ec2.create_image(InstanceId=other, Name="other-bake", TagSpecifications=[
        {"ResourceType": "image", "Tags": [{"Key": T.STACK, "Value": "other"},
                                           {"Key": T.PROTECT, "Value": "false"}]}])["ImageId"]
    engine.stack_config = _config(protect=True)
    engine.up("svc")
    done = retag_group(REGION, "svc", "svc-gpu", lambda kind, **f: None)
    assert done.changed and foreign not in done.changed
    assert _rule_tags([foreign])[foreign][T.PROTECT] == "false"


def test_the_deployer_policy_allows_the_retag_deletes_only_on_stack_resources():
    """cloud/iam_calls.py reads the re-tag's calls from the source; ops/iam.py puts the removal
    of a key (DeleteTags) under the stack-tag condition. CreateTags stays where Pulumi needs it
    (tag-on-create, before a resource has a tag), so it is on ``*`` already."""
    from dsinfra.cloud.iam_calls import edge_actions
    from dsinfra.ops.iam import Derivation, policy_document

    edge = edge_actions()
    assert {"ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeImages", "ec2:DescribeSnapshots",
            "autoscaling:DescribeAutoScalingGroups"} <= set(edge["dsinfra.cloud.retag"])
    by_sid = {s["Sid"]: s for s in policy_document(
        Derivation(stack_types={}, guard_types=set(), edge=edge))["Statement"]}
    scoped = by_sid["ChangeOnlyStackResources"]
    assert "ec2:DeleteTags" in scoped["Action"]
    assert scoped["Condition"] == {"Null": {f"aws:ResourceTag/{T.STACK}": "false"}}
    assert "ec2:DeleteTags" not in by_sid["CreateAndRead"]["Action"]
    assert "ec2:CreateTags" in by_sid["CreateAndRead"]["Action"]
    # the sweep's new deletes are conditioned the same way
    assert {"ec2:DeregisterImage", "ec2:DeleteSnapshot",
            "autoscaling:DeleteAutoScalingGroup"} <= set(scoped["Action"])
