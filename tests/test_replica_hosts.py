"""Issue 27: the hosts of a replicas stack are its Auto Scaling group's InService instances,
read from AWS (cloud/replica_hosts.py), and `up` waits for the group's minimum of them
(ops/up.py wait_for_replicas). AWS is the moto server, which runs autoscaling's instances
through its EC2 backend and implements EnterStandby (an instance leaves InService)."""

from __future__ import annotations

import pytest

from dsinfra.config import parse_stack_config
from dsinfra.errors import CloudError
from dsinfra.outputs import NodeOutput, StackOutputs

REGION = "us-east-1"


def _group(name: str, size: int) -> None:
    from dsinfra.cloud.aws import client

    ec2 = client("ec2", REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
        "ImageId": image, "InstanceType": "g5.2xlarge"})["LaunchTemplate"]
    client("autoscaling", REGION).create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=size, MaxSize=size + 1, DesiredCapacity=size,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"],
                        "Version": "$Latest"}, AvailabilityZones=[f"{REGION}a"])


def test_the_groups_in_service_instances_are_one_node_replicas_each_its_own_head(aws):
    from dsinfra.cloud.aws import client
    from dsinfra.cloud.replica_hosts import read_group

    _group("dev-gpu", 3)
    ids = sorted(i["InstanceId"] for i in client("autoscaling", REGION)
                 .describe_auto_scaling_groups(AutoScalingGroupNames=["dev-gpu"])
                 ["AutoScalingGroups"][0]["Instances"])
    client("autoscaling", REGION).enter_standby(
        AutoScalingGroupName="dev-gpu", InstanceIds=[ids[1]],
        ShouldDecrementDesiredCapacity=True)
    described = {i["InstanceId"]: i for r in client("ec2", REGION).describe_instances(
        InstanceIds=ids)["Reservations"] for i in r["Instances"]}

    state = read_group(REGION, "dev-gpu")

    assert state.min_size == 3 and state.not_in_service == {ids[1]: "Standby"}
    assert [(n.id, n.role, n.group, n.instance_type, n.efa_interfaces) for n in state.nodes] == \
        [(ids[0], "head", 0, "g5.2xlarge", 0), (ids[2], "head", 1, "g5.2xlarge", 0)]
    assert [n.private_ip for n in state.nodes] == \
        [described[i]["PrivateIpAddress"] for i in (ids[0], ids[2])]


def test_a_group_that_is_gone_is_a_loud_failure_not_an_empty_stack(aws):
    from dsinfra.cloud.replica_hosts import read_group

    with pytest.raises(CloudError, match="dev-gpu of the stack's replicas does not exist"):
        read_group(REGION, "dev-gpu")


class _Growing:
    """A group that reaches its minimum on the n-th read (a stand-in for launches landing)."""

    def __init__(self, counts: list[int], min_size: int = 2) -> None:
        self.counts, self.min_size, self.reads = counts, min_size, 0

    def __call__(self, outputs):
        from dsinfra.cloud.replica_hosts import GroupState

        count = self.counts[min(self.reads, len(self.counts) - 1)]
        self.reads += 1
        nodes = [NodeOutput(f"i-{n}", "head", f"10.0.0.{n + 5}", None, "g5.2xlarge", 0,
                            group=n) for n in range(count)]
        pending = {f"i-{n}": "Pending" for n in range(count, self.min_size)}
        return GroupState("dev-gpu", self.min_size, self.min_size, nodes, pending)


def _outputs() -> StackOutputs:
    return StackOutputs.from_dict({"nodes": [], "endpoint": "http://lb:8000",
                                   "region": REGION, "replicas": {"group": "dev-gpu"}})


def _config():
    return parse_stack_config("dev", {"tier": "dev", "budget": {"amountUsd": 1000},
                                      "replicas": 2})


def test_up_waits_for_the_groups_minimum_then_takes_its_instances_as_the_nodes():
    from dsinfra.ops.up import wait_for_replicas

    read, phases, audit = _Growing([0, 1, 2]), [], []
    outputs = wait_for_replicas(_config(), _outputs(), read,
                                lambda p, m: phases.append(m), poll_s=0,
                                audit=lambda kind, **f: audit.append((kind, f)))
    assert read.reads == 3 and [n.id for n in outputs.nodes] == ["i-0", "i-1"]
    assert phases[0] == ("0/2 InService in Auto Scaling group dev-gpu, i-0 Pending, "
                         "i-1 Pending") and phases[-1].startswith("2/2 InService")
    assert audit == [("up.replicas", {"stack": "dev", "group": "dev-gpu",
                                      "instances": ["i-0", "i-1"], "min_size": 2})]


def test_a_group_short_of_its_minimum_at_the_deadline_fails_loudly_and_is_audited():
    from dsinfra.ops.up import wait_for_replicas

    audit = []
    with pytest.raises(CloudError, match=r"has 1 of its 2 replica\(s\) InService within 0 s, "
                                         r"i-1 Pending; its instances are billing"):
        wait_for_replicas(_config(), _outputs(), _Growing([1]), lambda p, m: None,
                          timeout_s=0, audit=lambda kind, **f: audit.append(kind))
    assert audit == ["up.replicas_not_ready"]


def test_bootstrap_takes_what_is_in_service_now_and_refuses_an_empty_group():
    from dsinfra.ops.up import wait_for_replicas

    read = _Growing([1])
    outputs = wait_for_replicas(_config(), _outputs(), read, lambda p, m: None, wait=False)
    assert read.reads == 1 and [n.id for n in outputs.nodes] == ["i-0"]
    with pytest.raises(CloudError, match="has 0 of its 2 replica"):
        wait_for_replicas(_config(), _outputs(), _Growing([0]), lambda p, m: None,
                          wait=False)


@pytest.mark.parametrize("as_json", [False, True])
def test_up_prints_each_replicas_health(as_json, capsys, tmp_path, monkeypatch):
    from dsinfra.cli.up import _print_result
    from dsinfra.ops.up import ReplicaHealth, UpResult

    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("DSINFRA_API_KEY", raising=False)
    replicas = [ReplicaHealth("i-0a", "10.0.1.5", True, "healthy"),
                ReplicaHealth("i-0b", "10.0.1.6", False, "HTTP 503")]
    result = UpResult("dev", _outputs(), [], None, True, "answered 200", 10.0,
                      replicas=replicas, region=REGION)
    _print_result(_config(), result, as_json)
    out = capsys.readouterr().out
    if as_json:
        import json

        assert json.loads(out)["replicas"] == [r.to_dict() for r in replicas]
    else:
        assert "replica:  i-0a (10.0.1.5) healthy" in out
        assert "replica:  i-0b (10.0.1.6) HTTP 503" in out


def test_a_replica_that_does_not_answer_after_bootstrap_fails_up_audited():
    from dsinfra.ops.up import ReplicaHealth, refuse_sick_replicas

    audit = []
    healthy = ReplicaHealth("i-0a", "10.0.1.5", True, "healthy")
    refuse_sick_replicas(_config(), [healthy], lambda kind, **f: audit.append(kind))
    assert audit == []
    with pytest.raises(CloudError, match=r"1 of 2 replica\(s\) did not answer /health with "
                                         r"200 after bootstrap: i-0b \(10.0.1.6\) HTTP 503"):
        refuse_sick_replicas(_config(), [healthy, ReplicaHealth("i-0b", "10.0.1.6", False,
                                                                "HTTP 503")],
                             lambda kind, **f: audit.append(kind))
    assert audit == ["up.replicas_unhealthy"]


def test_day_two_commands_see_the_groups_instances_as_aws_lists_them_now():
    """ssh, logs, exec, port-forward, status and top take a replicas stack's nodes from its
    Auto Scaling group at the time they run (ops/remote.py with_replica_nodes), not from the
    outputs of the last `up`, which name none; a stack without a group is left as it is."""
    from dsinfra.cloud.replica_hosts import GroupState
    from dsinfra.ops.remote import with_replica_nodes
    from dsinfra.outputs import NodeOutput, StackOutputs

    live = [NodeOutput(id=f"i-{n}", role="head", private_ip=f"10.0.1.{n}", public_ip=None,
                       instance_type="g5.2xlarge", efa_interfaces=0, group=n) for n in range(3)]
    asked = []

    def read_group(region, group):
        asked.append((region, group))
        return GroupState(group=group, min_size=2, desired=3, nodes=live, not_in_service={})

    grouped = StackOutputs.from_dict({"nodes": [], "endpoint": "http://lb", "ssh_user": "ubuntu",
                                      "region": "us-west-2",
                                      "replicas": {"group": "dev-gpu"}})
    assert with_replica_nodes(grouped, "us-east-1", read_group).nodes == live
    assert asked == [("us-west-2", "dev-gpu")]
    plain = StackOutputs.from_dict({"nodes": [{"id": "i-9", "role": "head",
                                               "private_ip": "10.0.0.9",
                                               "instance_type": "g5.2xlarge"}],
                                    "endpoint": "", "region": "us-east-1"})
    assert with_replica_nodes(plain, "us-east-1", read_group) is plain and len(asked) == 1


def test_up_keeps_the_launch_template_on_the_stack_files_engine_settings(aws):
    """A later `up` must not send new replicas back to the settings before a deploy: Pulumi
    writes a template version from its own state, and `up` then adds one whose user data
    starts the engine the stack file names (ops/up.py reconcile_replica_template); a second
    `up` finds it so and adds nothing."""
    import base64

    from dsinfra.cloud.aws import client
    from dsinfra.ops.up import reconcile_replica_template

    ec2 = client("ec2", REGION)
    template = ec2.create_launch_template(LaunchTemplateName="svc-gpu", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "g5.2xlarge",
        "UserData": base64.b64encode(b"#!/bin/bash\n# the node pool's own\n").decode()}
    )["LaunchTemplate"]["LaunchTemplateId"]
    outputs = StackOutputs(nodes=[], bastion=None, endpoint="", ssh_user="ubuntu",
                           region=REGION, replica_group="svc-gpu", launch_template_id=template)
    config = parse_stack_config("svc", {
        "tier": "dev", "budget": {"amountUsd": 5000}, "replicas": 2,
        "replicaImage": "ami-0123456789abcdef0", "engineImage": "vllm/vllm-openai:v0.11.1",
        "engine": {"name": "vllm", "extraArgs": ["--enable-prefix-caching"]}})

    assert reconcile_replica_template(config, outputs) == "2"
    latest = ec2.describe_launch_template_versions(LaunchTemplateId=template,
                                                   Versions=["$Latest"])
    user_data = base64.b64decode(latest["LaunchTemplateVersions"][0]["LaunchTemplateData"]
                                 ["UserData"]).decode()
    assert user_data.startswith("#!/bin/bash\n# the node pool's own\n")
    assert "vllm/vllm-openai:v0.11.1" in user_data and "--enable-prefix-caching" in user_data
    assert reconcile_replica_template(config, outputs) is None  # already so: no new version
    changed = config.model_copy(update={"engine_image": "vllm/vllm-openai:v0.11.2"})
    assert reconcile_replica_template(changed, outputs) == "3"
