"""Autoscaling within the budget (issue 27 item 2) on the moto server: a replicas stack's
Auto Scaling group, its replicas' counts published to CloudWatch the way each node's watcher
publishes them (cloud/idle_watch.py ``publish``), and the cost check's scaling step
(ops/scale.py) setting the group's desired capacity, refusing what the budget cannot hold, and
never scaling in on missing counts. A budget stop holds the group so the group replaces
nothing; ``dsinfra start`` gives it back.

moto launches instances on SetDesiredCapacity and stores PutMetricData. What moto does not do,
and the doubles do with their sources: a suspended ``Launch`` launches nothing and
SetDesiredCapacity above MaxSize is refused (tests/moto_contracts.py, contracts 4 and 5); and
EC2 Auto Scaling's health checks, which moto does not run, are ``aws_health_checks`` below."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dsinfra import idle
from dsinfra.cloud import replicas as R

from .conftest import hours_later, stack_tags
from .helpers import check, instance_states

REGION = "us-east-1"


def _asg():
    from dsinfra.cloud.aws import client

    return client("autoscaling", REGION)


def make_replicas(stack: str, *, min_size: int = 1, max_size: int = 3, desired: int = 1,
                  cool_down_s: int = 300, target_waiting: float = 1.0,
                  budget_usd: float = 10_000, target_group: str | None = None,
                  **tag_args) -> str:
    """A replicas stack as infra/ builds one: a launch template and a group tagged with the
    stack's rule, propagated to the instances at launch; the cool-down in DefaultCooldown and
    the target in the group's dsinfra:target-waiting tag (cloud/replicas.py)."""
    from dsinfra.cloud.aws import client

    template = client("ec2", REGION).create_launch_template(
        LaunchTemplateName=f"{stack}-replica",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g5.2xlarge"})
    name = f"{stack}-replicas"
    tags = [{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
             "PropagateAtLaunch": True}
            for k, v in stack_tags(stack, budget_usd=budget_usd, **tag_args).items()]
    tags.append({"ResourceId": name, "ResourceType": "auto-scaling-group",
                 "Key": R.TARGET_WAITING_TAG, "Value": f"{target_waiting:g}",
                 "PropagateAtLaunch": False})
    _asg().create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=min_size, MaxSize=max_size,
        DesiredCapacity=desired, DefaultCooldown=cool_down_s,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]},
        AvailabilityZones=[f"{REGION}a"], Tags=tags,
        **({"TargetGroupARNs": [target_group]} if target_group else {}))
    return name


def make_target_group(stack: str) -> str:
    from dsinfra.cloud.aws import client

    vpc = client("ec2", REGION).describe_vpcs()["Vpcs"][0]["VpcId"]
    return client("elbv2", REGION).create_target_group(
        Name=f"{stack}-api", Protocol="TCP", Port=8000, VpcId=vpc,
        TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]


def group(name: str) -> dict:
    return _asg().describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"][0]


def members(name: str) -> list[str]:
    return sorted(i["InstanceId"] for i in group(name)["Instances"]
                  if i["LifecycleState"] == "InService")


def publish(stack: str, counts: dict[str, tuple[float, float]], at: datetime) -> None:
    """Each replica's (running, waiting) as its node's watcher publishes them."""
    from dsinfra.cloud.idle_watch import publish as node_publish

    for instance, (running, waiting) in counts.items():
        assert node_publish({"stack": stack, "region": REGION},
                            idle.Reading(running, waiting, 0.0), instance, at.timestamp())


def aws_health_checks() -> None:
    """What EC2 Auto Scaling's health checks do, which moto does not run: an InService
    instance in any state but running fails the EC2 health check and is marked Unhealthy
    (unless ``HealthCheck`` is suspended), and an Unhealthy instance is terminated and replaced
    "to maintain the desired capacity of the group" (unless ``ReplaceUnhealthy`` is
    suspended; the replacement needs ``Launch``, moto_contracts.py contract 4). Sources: EC2
    Auto Scaling User Guide, "Health checks for instances in an Auto Scaling group" ("When
    Amazon EC2 Auto Scaling determines that an InService instance is unhealthy, it replaces it
    with a new instance to maintain the desired capacity of the group"); its "Amazon EC2 health
    checks" (an instance that is not running is unhealthy); "Suspend and resume processes"
    (HealthCheck, ReplaceUnhealthy)."""
    asg = _asg()
    for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
        suspended = {p["ProcessName"] for p in g.get("SuspendedProcesses") or []}
        if "HealthCheck" in suspended:
            continue
        ids = [i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"]
        for instance, state in (instance_states(ids) if ids else {}).items():
            if state == "running":
                continue
            asg.set_instance_health(InstanceId=instance, HealthStatus="Unhealthy",
                                    ShouldRespectGracePeriod=False)
            if "ReplaceUnhealthy" not in suspended:
                asg.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance, ShouldDecrementDesiredCapacity=False)


def audit(state_dir, kind: str) -> list[dict]:
    from dsinfra.cloud.audit import AuditLog

    return [r for r in AuditLog(state_dir / "audit.jsonl").records()[0] if r["kind"] == kind]


def soon(minutes: float = 1) -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=minutes)


# --- scaling out -----------------------------------------------------------------------------

def test_waiting_above_the_target_scales_out_and_is_audited(aws, state_dir):
    name = make_replicas("svc", max_size=4, target_waiting=2)
    now = soon()
    publish("svc", {members(name)[0]: (8, 6)}, now)  # 6 waiting on one replica, target 2
    report = check(now, enforce=True)["svc"]
    assert group(name)["DesiredCapacity"] == 3, report["notes"]  # ceil(1 * 6 / 2)
    assert len(members(name)) == 3
    done = [r for r in audit(state_dir, "replicas.scale") if r["result"] == "done"]
    assert [(r["current"], r["target"], r["action"]) for r in done] == [(1, 3, "out")]


def test_counts_within_the_target_do_not_scale(aws, state_dir):
    name = make_replicas("svc", target_waiting=2)
    now = soon()
    publish("svc", {members(name)[0]: (4, 2)}, now)  # at the target, not above it
    check(now, enforce=True)
    assert group(name)["DesiredCapacity"] == 1
    assert audit(state_dir, "replicas.scale") == []


def test_a_dry_run_decides_and_says_so_but_scales_nothing(aws, state_dir):
    name = make_replicas("svc")
    now = soon()
    publish("svc", {members(name)[0]: (3, 5)}, now)
    report = check(now, enforce=False)["svc"]
    assert group(name)["DesiredCapacity"] == 1
    assert any("scale out 1 -> 3" in n for n in report["notes"]), report["notes"]


def test_no_scaling_within_the_cool_down_then_again_after_it(aws, state_dir):
    name = make_replicas("svc", max_size=4, cool_down_s=300)
    first = soon()
    publish("svc", {members(name)[0]: (2, 2)}, first)
    check(first, enforce=True)
    assert group(name)["DesiredCapacity"] == 2
    scaled_at = {t["Key"]: t["Value"] for t in group(name)["Tags"]}[R.SCALED_AT_TAG]
    assert scaled_at == first.strftime("%Y-%m-%dT%H:%M:%SZ")

    within = first + timedelta(seconds=240)
    publish("svc", {i: (2, 5) for i in members(name)}, within)
    report = check(within, enforce=True)["svc"]
    assert group(name)["DesiredCapacity"] == 2
    assert any("cool-down" in n for n in report["notes"]), report["notes"]

    after = first + timedelta(seconds=301)
    publish("svc", {i: (2, 5) for i in members(name)}, after)
    check(after, enforce=True)
    assert group(name)["DesiredCapacity"] == 4


def test_never_past_max(aws, state_dir):
    name = make_replicas("svc", max_size=2)
    now = soon()
    publish("svc", {members(name)[0]: (50, 400)}, now)
    check(now, enforce=True)
    assert group(name)["DesiredCapacity"] == 2  # not 400: the group's MaxSize

    later = now + timedelta(minutes=10)
    publish("svc", {i: (50, 400) for i in members(name)}, later)
    report = check(later, enforce=True)["svc"]
    assert group(name)["DesiredCapacity"] == 2
    assert any("already at max (2)" in n for n in report["notes"]), report["notes"]


def test_the_double_refuses_a_desired_capacity_above_max_as_aws_does(aws):
    from botocore.exceptions import ClientError

    name = make_replicas("svc", max_size=2)
    with pytest.raises(ClientError) as refused:
        _asg().set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=3)
    assert refused.value.response["Error"]["Message"] == (
        "New SetDesiredCapacity value 3 is above max value 2 for the AutoScalingGroup.")


# --- the budget ------------------------------------------------------------------------------

def test_a_scale_out_the_budget_cannot_hold_is_not_made_audited_and_notified(
        aws, state_dir, webhook):
    # One g5.2xlarge for the rest of the month fits $1,000; two do not (each ~$1.21/h).
    name = make_replicas("svc", budget_usd=1000, max_size=3)
    now = soon()
    publish("svc", {members(name)[0]: (4, 9)}, now)
    report = check(now, enforce=True)["svc"]
    assert report["status"] == "ok", report
    assert group(name)["DesiredCapacity"] == 1 and len(members(name)) == 1
    refused = audit(state_dir, "replicas.refused")
    assert len(refused) == 1 and refused[0]["current"] == 1 and refused[0]["target"] == 1
    assert refused[0]["projected_usd"] > 1000
    assert audit(state_dir, "replicas.scale") == []
    texts = [m["text"] for m in webhook.messages]
    assert any("scale-out refused by the budget" in t and "refused by the budget" in t
               for t in texts), texts

    # the same refusal on the next run is audited again but notified once
    later = now + timedelta(minutes=10)
    publish("svc", {members(name)[0]: (4, 9)}, later)
    check(later, enforce=True)
    assert len(audit(state_dir, "replicas.refused")) == 2
    assert sum("scale-out refused" in m["text"] for m in webhook.messages) == 1


def test_a_budget_that_holds_part_of_the_scale_out_caps_it(aws, state_dir, webhook):
    # Two replicas fit $2,500 for the rest of the month; four do not.
    name = make_replicas("svc", budget_usd=2500, max_size=4)
    now = soon()
    publish("svc", {members(name)[0]: (4, 9)}, now)
    check(now, enforce=True)
    desired = group(name)["DesiredCapacity"]
    assert 1 < desired < 4
    assert [r["target"] for r in audit(state_dir, "replicas.refused")] == [desired]


# --- missing counts --------------------------------------------------------------------------

def test_missing_counts_never_scale_in_and_are_audited_and_notified(aws, state_dir, webhook):
    name = make_replicas("svc", min_size=1, desired=2)
    one, other = members(name)
    now = soon()
    publish("svc", {one: (0, 0)}, now)  # the other replica published nothing
    report = check(now, enforce=True)["svc"]
    assert group(name)["DesiredCapacity"] == 2, report["notes"]
    unread = audit(state_dir, "replicas.unreadable")
    assert [r["replicas"] for r in unread] == [[other]]
    assert any("replica counts unreadable" in m["text"] and other in m["text"]
               for m in webhook.messages), webhook.messages


def test_idle_counts_from_every_replica_scale_in_by_one(aws, state_dir):
    name = make_replicas("svc", min_size=1, desired=3)
    now = soon()
    publish("svc", {i: (0, 0) for i in members(name)}, now)
    check(now, enforce=True)
    assert group(name)["DesiredCapacity"] == 2


def test_stale_counts_are_missing(aws, state_dir):
    name = make_replicas("svc", min_size=1, desired=2)
    now = soon()
    publish("svc", {i: (0, 0) for i in members(name)}, now - timedelta(minutes=10))
    check(now, enforce=True)
    assert group(name)["DesiredCapacity"] == 2
    assert len(audit(state_dir, "replicas.unreadable")) == 1


# --- a budget stop on a group ----------------------------------------------------------------

def test_the_health_double_replaces_a_stopped_instance_of_a_group_not_held(aws):
    from dsinfra.cloud.aws import client

    name = make_replicas("svc", desired=2)
    before = members(name)
    client("ec2", REGION).stop_instances(InstanceIds=[before[0]])
    aws_health_checks()
    after = members(name)
    assert before[0] not in after and len(after) == 2  # replaced: a new, billing instance


def test_a_budget_stop_on_a_group_does_not_come_back(aws, state_dir):
    name = make_replicas("svc", desired=2, budget_usd=0.01, period="total", on_exceed="stop")
    ids = members(name)
    report = check(hours_later(5), enforce=True)["svc"]
    assert report["action"] == "stop" and report["action_result"] == "done", report
    assert instance_states(ids) == {i: "stopped" for i in ids}
    assert set(R.HOLD_PROCESSES) <= {p["ProcessName"] for p in group(name)["SuspendedProcesses"]}
    held = audit(state_dir, "replicas.hold")
    assert [r["group"] for r in held] == [name]

    aws_health_checks()  # what AWS does next, every few seconds
    assert members(name) == ids and instance_states(ids) == {i: "stopped" for i in ids}
    all_instances = instance_states(ids)
    assert len(all_instances) == 2

    # a later check neither scales a held group nor lets it launch
    check(hours_later(6), enforce=True)
    assert members(name) == ids and group(name)["DesiredCapacity"] == 2


def test_start_gives_the_group_back_and_the_check_its_health_checks(aws, state_dir):
    from dsinfra.cloud.actions import resume_stack
    from dsinfra.cloud.audit import AuditLog

    name = make_replicas("svc", desired=2, budget_usd=0.01, period="total", on_exceed="stop")
    ids = members(name)
    check(hours_later(5), enforce=True)
    log = AuditLog(state_dir / "audit.jsonl")
    assert sorted(resume_stack("svc", [REGION], log.append)) == ids
    suspended = {p["ProcessName"] for p in group(name)["SuspendedProcesses"]}
    assert suspended == set(R.HEALTH_PROCESSES)  # Launch and the rest are back
    assert instance_states(ids) == {i: "running" for i in ids}
    assert [r["processes"] for r in audit(state_dir, "replicas.release")] == \
        [list(R.start_processes())]
    aws_health_checks()
    assert members(name) == ids


# --- the guard's IAM -------------------------------------------------------------------------

def test_the_guard_may_scale_only_groups_tagged_with_a_stack_and_read_the_counts():
    from dsinfra.cloud.actions import TAG_CONDITION, policy_document

    document = policy_document(table_arn="arn:t")
    (scoped,) = [s for s in document["Statement"] if "Condition" in s]
    (reads,) = [s for s in document["Statement"] if s["Sid"] == "InventoryByTag"]
    assert scoped["Condition"] == TAG_CONDITION
    assert {"autoscaling:SetDesiredCapacity", "autoscaling:CreateOrUpdateTags",
            "autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses"} <= \
        set(scoped["Action"])
    assert {"cloudwatch:GetMetricData", "autoscaling:DescribeAutoScalingGroups",
            "elasticloadbalancing:DescribeTargetHealth"} <= set(reads["Action"])
    assert not {"autoscaling:SetDesiredCapacity", "autoscaling:SuspendProcesses"} & \
        set(reads["Action"])


def test_the_guard_package_carries_the_scaler():
    from dsinfra.ops.guard import lambda_files

    files = lambda_files()
    assert {"dsinfra/ops/scale.py", "dsinfra/autoscale.py", "dsinfra/cloud/replicas.py"} <= \
        set(files)


def test_the_check_gives_the_health_checks_back_once_every_replica_serves(aws, state_dir):
    from dsinfra.cloud.actions import resume_stack
    from dsinfra.cloud.audit import AuditLog
    from dsinfra.cloud.aws import client

    tg = make_target_group("svc")
    name = make_replicas("svc", desired=2, budget_usd=0.01, period="total", on_exceed="stop",
                         target_group=tg)
    ids = members(name)
    check(hours_later(5), enforce=True)
    resume_stack("svc", [REGION], AuditLog(state_dir / "audit.jsonl").append)
    # the budget rule is raised (`up` re-tags the record), so the stack is ok again
    ec2 = client("ec2", REGION)
    ec2.create_tags(Resources=ids, Tags=[{"Key": "dsinfra:budget-usd", "Value": "10000.00"},
                                         {"Key": "dsinfra:budget-period", "Value": "month"}])
    elb = client("elbv2", REGION)
    elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": ids[0]}])  # not serving yet
    now = soon()
    publish("svc", {i: (0, 0) for i in ids}, now)
    report = check(now, enforce=True)["svc"]
    assert report["status"] == "ok", report
    assert set(R.HEALTH_PROCESSES) <= {p["ProcessName"]
                                       for p in group(name)["SuspendedProcesses"]}
    assert any("health checks held" in n for n in report["notes"]), report["notes"]

    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": ids[0], "Port": 8000}])
    later = now + timedelta(minutes=1)
    publish("svc", {i: (0, 0) for i in ids}, later)
    check(later, enforce=True)
    assert group(name)["SuspendedProcesses"] == []
    released = [r["processes"] for r in audit(state_dir, "replicas.release")]
    assert released == [list(R.start_processes()), list(R.HEALTH_PROCESSES)]


def test_dsinfra_stop_and_start_go_through_the_group_too(aws, state_dir):
    from dsinfra.ops.resume import resume_checked, stop_checked

    name = make_replicas("svc", desired=2)
    ids = members(name)
    out = stop_checked("svc", [REGION])
    assert sorted(out["stopped"]) == ids and out["result"] == "done"
    assert "Launch" in {p["ProcessName"] for p in group(name)["SuspendedProcesses"]}
    aws_health_checks()
    assert members(name) == ids and instance_states(ids) == {i: "stopped" for i in ids}

    started = resume_checked("svc", [REGION], force=False)
    assert sorted(started["started"]) == ids
    assert {p["ProcessName"] for p in group(name)["SuspendedProcesses"]} == \
        set(R.HEALTH_PROCESSES)


def test_a_budget_destroy_deletes_the_group_so_nothing_is_relaunched(aws, state_dir):
    from dsinfra.cloud.aws import client

    name = make_replicas("svc", desired=2, budget_usd=0.01, period="total",
                         on_exceed="destroy")
    ids = members(name)
    report = check(hours_later(5), enforce=True)["svc"]
    assert report["action"] == "destroy" and report["action_result"] == "done", report
    assert _asg().describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"] == []
    assert set(instance_states(ids).values()) <= {"shutting-down", "terminated"}
    aws_health_checks()  # a group left behind would replace what the sweep terminated
    live = client("ec2", REGION).describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    assert live == []


def test_a_ttl_expiry_with_destroy_deletes_the_group_before_any_instance(aws, state_dir):
    """The expiry takes the same dispatch as a budget destroy (dsinfra/budget_actions.py's
    row, cloud/actions.py's sweep runner): the group goes first, audited, then its instances;
    terminating them alone would be undone by the group."""
    name = make_replicas("ttl", desired=2, on_exceed="destroy",
                         expires_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    ids = members(name)
    report = check(soon(), enforce=True)["ttl"]
    assert (report["action"], report["action_result"]) == ("destroy", "done"), report
    assert "TTL expired" in report["reason"]
    assert _asg().describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"] == []
    deleted = [(r["resource_kind"], r["id"]) for r in audit(state_dir, "teardown.deleted")]
    assert deleted[0] == ("auto_scaling_group", name)
    assert {i for k, i in deleted if k == "instance"} <= set(ids)
    aws_health_checks()
    assert set(instance_states(ids).values()) <= {"shutting-down", "terminated"}


def test_a_protected_replicas_stack_past_its_ttl_keeps_its_group(aws, state_dir):
    name = make_replicas("kept", desired=1, on_exceed="destroy", protect=True,
                         expires_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    report = check(soon(), enforce=True)["kept"]
    assert report["action"] == "notify", report
    assert group(name)["DesiredCapacity"] == 1 and members(name)
    assert audit(state_dir, "teardown.deleted") == []
