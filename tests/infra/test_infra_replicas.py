"""Issue 27 items 1 and 2, infrastructure side: a stack with dsinfra:replicas runs its replicas
in ONE Auto Scaling group behind the stack's load balancer (dev and prod), or a fixed count of
node groups (distributed). Asserted on the inputs the real program registers under the SDK's
mocks (infra/offline.py)."""

from __future__ import annotations

import base64
import json

import pytest

from dsinfra.autoscale import TARGET_WAITING_TAG

from dsinfra.config import parse_stack_config
from dsinfra.infra.loadbalancer import MAX_DEREGISTRATION_DELAY_S
from dsinfra.infra.nodes import ENGINE_UNIT, ROLE_TAG
from dsinfra.infra.security import METRICS_NAMESPACE
from dsinfra.outputs import StackOutputs
from dsinfra.tags import REQUIRED_TAG_KEYS, contract_tags
from offline_stacks import (OFFICE, PROJECT_DIR, REPLICA_STACKS, SHIPPED, VARIANTS,
                            config_of)

GROUP = "aws:autoscaling/group:Group"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ATTACHMENT = "aws:lb/targetGroupAttachment:TargetGroupAttachment"
INSTANCE = "aws:ec2/instance:Instance"
LB = "aws:lb/loadBalancer:LoadBalancer"
SG = "aws:ec2/securityGroup:SecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
GROUPED = ("dev-replicas", "prod-replicas")


def _one(run, token):
    (found,) = run.of_type(token)
    return found


def _group_tags(group) -> dict[str, str]:
    return {t["key"]: t["value"] for t in group.inputs["tags"]}


@pytest.mark.parametrize("stack", GROUPED)
def test_the_nodes_are_one_group_between_min_and_max_whose_desired_the_autoscaler_owns(
        runs, stack):
    run, bounds = runs[stack], config_of(stack).replicas
    group = _one(run, GROUP)
    assert run.of_type(INSTANCE) == [] or all(
        i.inputs["tags"][ROLE_TAG] == "bastion" for i in run.of_type(INSTANCE))
    assert (group.inputs["minSize"], group.inputs["maxSize"]) == (bounds.min, bounds.max)
    assert bounds.min < bounds.max or stack == "prod-replicas"
    # desired starts at min, then is never set by Pulumi again
    assert group.inputs["desiredCapacity"] == bounds.min
    assert group.ignore_changes == ("desiredCapacity",)
    template = _one(run, TEMPLATE)
    assert group.inputs["launchTemplate"] == {"id": template.id, "version": "$Latest"}
    assert group.parent == template.parent  # both the GpuNodePool's: plan prices them together


@pytest.mark.parametrize("stack", GROUPED)
def test_the_group_registers_in_the_load_balancers_target_group_healthy_by_its_check(
        runs, stack):
    run, config = runs[stack], config_of(stack)
    group, target_group = _one(run, GROUP), _one(run, TARGET_GROUP)
    assert group.inputs["targetGroupArns"] == [f"arn:aws:lb:us-east-1:123456789012:"
                                               f"{target_group.name}"]
    assert run.of_type(ATTACHMENT) == []  # the group registers its own instances
    assert group.inputs["healthCheckType"] == "ELB"
    assert group.inputs["healthCheckGracePeriod"] == config.tier_spec.health_timeout_s
    assert target_group.inputs["healthCheck"]["path"] == config.engine.health_path
    assert target_group.inputs["healthCheck"]["matcher"] == "200"


@pytest.mark.parametrize("stack", GROUPED)
def test_the_group_spans_the_tiers_node_subnets(runs, stack):
    run, tier = runs[stack], config_of(stack).tier_spec
    node_subnets = [s.id for s in run.of_type(SUBNET)
                    if ("private" in s.name) is tier.private]
    assert len(node_subnets) == tier.zones
    assert _one(run, GROUP).inputs["vpcZoneIdentifiers"] == node_subnets


@pytest.mark.parametrize("stack, delay", [("dev-replicas", 3600), ("prod-replicas", 3600),
                                          ("dist-replicas", 900)])
def test_a_removed_replica_drains_for_the_longest_request_capped_at_awss_maximum(
        runs, stack, delay):
    config = config_of(stack)
    assert delay == min(config.api_idle_timeout_s, MAX_DEREGISTRATION_DELAY_S)
    assert _one(runs[stack], TARGET_GROUP).inputs["deregistrationDelay"] == delay
    assert config_of("prod-replicas").api_idle_timeout_s == 6000  # past the cap


@pytest.mark.parametrize("stack", [s for s in (*SHIPPED, *VARIANTS) if s not in REPLICA_STACKS])
def test_stacks_without_replicas_keep_their_instances_and_awss_default_draining(runs, stack):
    run = runs[stack]
    assert run.of_type(GROUP) == [] and "replicas" not in run.outputs
    for target_group in run.of_type(TARGET_GROUP):
        assert "deregistrationDelay" not in target_group.inputs


@pytest.mark.parametrize("stack", GROUPED)
def test_every_rule_tag_propagates_to_each_replica_at_launch(runs, stack):
    """The cost check reads a stack's rule from its instances' tags; the provider's default
    tags never reach a group's instances, so the group carries them, propagated."""
    group = _one(runs[stack], GROUP)
    assert all(t["propagateAtLaunch"] is True for t in group.inputs["tags"]
               if t["key"] != TARGET_WAITING_TAG)
    tags = _group_tags(group)
    # The scaler's target is the group's own tag, from dsinfra:replicas, not its instances'.
    (target,) = [t for t in group.inputs["tags"] if t["key"] == TARGET_WAITING_TAG]
    assert target["propagateAtLaunch"] is False
    assert float(target["value"]) == config_of(stack).replicas.target_waiting
    contract = contract_tags(config_of(stack))
    contract.pop("dsinfra:expires-at", None)  # pinned per run; compared by presence below
    assert contract.items() <= tags.items()
    assert set(REQUIRED_TAG_KEYS) <= set(tags)
    assert tags[ROLE_TAG] == "head" and tags["Name"] == group.name
    if stack == "dev-replicas":
        assert tags["team"] == "inference"
        assert "dsinfra:expires-at" in tags  # dev's shipped ttlHours


@pytest.mark.parametrize("stack", GROUPED)
def test_the_groups_template_is_encrypted_imdsv2_and_carries_what_an_instance_said(runs, stack):
    run, config = runs[stack], config_of(stack)
    template = _one(run, TEMPLATE)
    assert template.inputs["metadataOptions"] == {
        "httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 2}
    (root,) = template.inputs["blockDeviceMappings"]
    assert root["ebs"]["encrypted"] == "true" and root["ebs"]["volumeType"] == "gp3"
    assert template.inputs["instanceType"] == config.resolved_instance_type
    (node_sg,) = [g.id for g in run.of_type(SG) if g.name.endswith("-node")]
    if config.tier_spec.private:
        assert template.inputs["vpcSecurityGroupIds"] == [node_sg]
        assert "networkInterfaces" not in template.inputs
    else:  # dev: the replica's own address, on the interface the group launches it with
        (iface,) = template.inputs["networkInterfaces"]
        assert iface["associatePublicIpAddress"] == "true"
        assert iface["securityGroups"] == [node_sg] and iface["deviceIndex"] == 0
        assert "vpcSecurityGroupIds" not in template.inputs
    # A new version replaces nothing under $Latest: tags follow the budget and the expiry.
    assert "tagSpecifications" not in template.ignore_changes
    kinds = {s["resourceType"] for s in template.inputs["tagSpecifications"]}
    assert {"instance", "volume", "network-interface"} <= kinds


def test_dev_spot_replicas_launch_from_one_time_requests(runs):
    spot = _one(runs["dev-replicas"], TEMPLATE).inputs["instanceMarketOptions"]["spotOptions"]
    assert spot == {"spotInstanceType": "one-time", "instanceInterruptionBehavior": "terminate"}


def test_replicas_boot_the_baked_image_and_start_the_engine_unit(runs):
    from dsinfra.bootstrap.engine import UNIT_NAME, UNIT_PATH

    assert ENGINE_UNIT == UNIT_NAME
    baked = _one(runs["prod-replicas"], TEMPLATE)
    assert baked.inputs["imageId"] == "ami-0123456789abcdef0"
    assert "imageId" not in baked.ignore_changes  # a new bake is what the next replica boots
    script = base64.b64decode(baked.inputs["userData"]).decode()
    assert f"systemctl enable --now {ENGINE_UNIT}" in script
    assert f"if [ -f {UNIT_PATH} ]" in script  # where bootstrap installs the unit
    unbaked = _one(runs["dev-replicas"], TEMPLATE)
    assert "imageId" in unbaked.ignore_changes  # the DLAMI's monthly move replaces nothing
    assert ENGINE_UNIT not in base64.b64decode(unbaked.inputs["userData"]).decode()


def test_dev_replicas_sit_behind_a_load_balancer_that_alone_reaches_the_api(runs):
    run = runs["dev-replicas"]
    balancer = _one(run, LB)
    assert balancer.inputs["internal"] is False  # apiAllowedCidrs: internet-facing
    (public,) = [s.id for s in run.of_type(SUBNET)]
    assert balancer.inputs["subnets"] == [public]
    groups = {g.name.rsplit("-", 1)[-1]: g for g in run.of_type(SG)}
    api_rules = [r for r in groups["node"].inputs["ingress"] if r["fromPort"] == 8000]
    assert api_rules == [{**api_rules[0], "securityGroups": [groups["lb"].id]}]
    assert not api_rules[0].get("cidrBlocks")
    assert [r["cidrBlocks"] for r in groups["lb"].inputs["ingress"]] == [[OFFICE]]
    assert run.outputs["endpoint"].startswith("http://dev-replicas-api-")


def test_an_internal_dev_balancer_sits_in_the_nodes_public_subnet():
    from dsinfra.infra.offline import run_offline
    from offline_stacks import stack_values

    run = run_offline("dev-internal", stack_values("dev", {"replicas": 2}))
    balancer = _one(run, LB)
    assert balancer.inputs["internal"] is True
    assert balancer.inputs["subnets"] == [s.id for s in run.of_type(SUBNET)]


@pytest.mark.parametrize("stack", GROUPED)
def test_the_replicas_output_is_what_stack_outputs_reads(runs, stack):
    run = runs[stack]
    outputs = StackOutputs.from_dict(run.outputs)
    assert outputs.replica_group == _one(run, GROUP).name
    assert outputs.target_group_arn.endswith(f":{_one(run, TARGET_GROUP).name}")
    assert outputs.launch_template_id == _one(run, TEMPLATE).id
    assert outputs.nodes == []  # the group's instances are AWS's to launch, not Pulumi's
    assert outputs.endpoint.endswith(":8000")


def test_distributed_replicas_are_a_fixed_count_of_node_groups_each_head_a_target(runs):
    run, config = runs["dist-replicas"], config_of("dist-replicas")
    assert run.of_type(GROUP) == []
    nodes = [i for i in run.of_type(INSTANCE) if i.inputs["tags"][ROLE_TAG] != "bastion"]
    assert len(nodes) == config.replicas.max * config.resolved_node_count
    assert len(run.of_type(TEMPLATE)) == len(
        run.of_type("aws:ec2/placementGroup:PlacementGroup")) == config.replicas.max
    heads = {i.id for i in nodes if i.inputs["tags"][ROLE_TAG] == "head"}
    assert len(heads) == config.replicas.max
    assert {a.inputs["targetId"] for a in run.of_type(ATTACHMENT)} == heads
    outputs = StackOutputs.from_dict(run.outputs)
    assert outputs.replica_group is None and outputs.target_group_arn
    # Each node says which group (engine) it serves in, each group with one head: bootstrap
    # ranks and peers within it (bootstrap/hosts.py).
    by_group: dict[int, list[str]] = {}
    for node in outputs.nodes:
        by_group.setdefault(node.group, []).append(node.role)
    assert sorted(by_group) == list(range(config.replicas.max))
    assert all(sorted(roles) == ["head"] + ["worker"] * (config.resolved_node_count - 1)
               for roles in by_group.values())
    # The first group keeps the names a stack without replicas has (replicas: 1 renders
    # as before); the others are numbered.
    assert sorted(t.name for t in run.of_type(TEMPLATE)) == \
        ["dist-replicas-gpu", "dist-replicas-gpu-r1"]


@pytest.mark.parametrize("stack", REPLICA_STACKS)
def test_replica_nodes_may_publish_metrics_in_the_dsinfra_namespace_only(runs, stack):
    (policy,) = [p for p in runs[stack].of_type("aws:iam/rolePolicy:RolePolicy")
                 if p.name.endswith("-node-metrics")]
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    publish = statements.pop("PublishOwnMetricsOnly")
    assert publish["Action"] == "cloudwatch:PutMetricData"
    assert publish["Condition"] == {"StringEquals": {"cloudwatch:namespace":
                                                     METRICS_NAMESPACE}}
    assert METRICS_NAMESPACE == "dsinfra"
    # Reads with no resource-level permissions; the one write only on its own stack's group.
    reads = statements.pop("ReadReplicaState")
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in reads["Action"])
    hold = statements.pop("HoldOnlyOwnGroup")
    assert hold["Action"] == ["autoscaling:SuspendProcesses"]
    assert hold["Condition"] == {"StringEquals": {"aws:ResourceTag/dsinfra:stack":
                                                  config_of(stack).stack}}
    assert not statements


def test_distributed_autoscaling_is_refused_at_the_door():
    from dsinfra.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dsinfra:replicas\.min.*equal to replicas\.max"):
        parse_stack_config("d", {"tier": "distributed", "budget": {"amountUsd": 10},
                                 "replicas": {"min": 1, "max": 3}})


def test_the_deployers_policy_covers_the_group_with_changes_on_the_stack_tag(runs):
    """iam-policy keeps the rows of the types a project's stacks register: a project with a
    replica stack gets the group's, its changes conditioned on the dsinfra:stack tag."""
    from dsinfra.infra.iam import is_aws_resource
    from dsinfra.ops.iam import Derivation, policy_document

    types = {r.type: {"prod-replicas"} for r in runs["prod-replicas"].resources
             if is_aws_resource(r.type)}
    assert GROUP in types
    statements = {s["Sid"]: s for s in policy_document(Derivation(stack_types=types))
                  ["Statement"]}
    anywhere, change = statements["CreateAndRead"], statements["ChangeOnlyStackResources"]
    assert {"autoscaling:CreateAutoScalingGroup", "ec2:RunInstances",
            "autoscaling:DescribeAutoScalingGroups"} <= set(anywhere["Action"])
    assert {"autoscaling:UpdateAutoScalingGroup", "autoscaling:DeleteAutoScalingGroup"} <= \
        set(change["Action"])
    assert not any(a.startswith("autoscaling:") and a.split(":")[1].startswith(
        ("Update", "Delete", "Attach", "Detach", "Suspend", "Resume"))
        for a in anywhere["Action"])
    assert change["Condition"] == {"Null": {"aws:ResourceTag/dsinfra:stack": "false"}}
    assert statements["PassRolesToTheirServices"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com"]}}


def test_iam_policy_for_a_project_with_a_replica_stack_covers_the_group_and_the_bake(tmp_path):
    """End to end through ops/iam.py: the offline run of the project's replica stack brings the
    group's row, the source scan of cloud/images.py the bake's calls; the bake's changes to
    the group are conditioned on the stack tag, like every change."""
    import yaml

    from dsinfra.ops.iam import iam_policies
    from dsinfra.stackfiles import stack_file

    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: dsinfra\nruntime: python\n")
    document = yaml.safe_load(stack_file("prod", PROJECT_DIR).read_text())
    document["config"]["dsinfra:replicas"] = {"min": 1, "max": 2}
    (tmp_path / "stacks" / "Pulumi.rp.yaml").write_text(yaml.safe_dump(document))
    statements = [s for part in iam_policies(tmp_path) for s in part["Statement"]]
    granted = {a: s for s in statements for a in s["Action"]}
    for action in ("autoscaling:CreateAutoScalingGroup", "ec2:CreateImage", "ec2:DescribeImages",
                   "ec2:DescribeVolumes", "elasticloadbalancing:DescribeTargetHealth",
                   "autoscaling:DescribeAutoScalingGroups"):
        assert granted[action]["Resource"] == "*" and "Condition" not in granted[action], action
    for action in ("autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses",
                   "autoscaling:UpdateAutoScalingGroup", "autoscaling:DeleteAutoScalingGroup"):
        assert granted[action]["Condition"] == {
            "Null": {"aws:ResourceTag/dsinfra:stack": "false"}}, action
