"""Security and tagging policies that hold for every tier and every variant of the program."""

from __future__ import annotations

import importlib
import inspect
import ipaddress

import pytest

from dsinfra.autoscale import TARGET_WAITING_TAG

from dsinfra.infra.nodes import DLAMI_SSM_PARAMETER
from dsinfra.infra.security import SSM_CORE_POLICY_ARN, node_policies, node_policies_markdown
from dsinfra.tags import REQUIRED_TAG_KEYS
from dsinfra.tiers import TIERS
from offline_stacks import PROJECT_DIR, SHIPPED, VARIANTS, config_of, tier_of

ALL = (*SHIPPED, *VARIANTS)
INSTANCE = "aws:ec2/instance:Instance"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SG = "aws:ec2/securityGroup:SecurityGroup"


def _world(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).prefixlen == 0


def _sources(rule: dict) -> list[str]:
    return (rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or [])


def _is_taggable(token: str) -> bool:
    """Does the pulumi-aws resource class for this type token accept ``tags``?"""
    module, name = token.split(":")[1].split("/")[0], token.split(":")[2]
    cls = getattr(importlib.import_module(f"pulumi_aws.{module}"), name)
    return "tags" in inspect.signature(cls._internal_init).parameters


@pytest.mark.parametrize("stack", ALL)
def test_no_port_is_open_to_the_world(runs, stack):
    for sg in runs[stack].of_type(SG):
        for rule in sg.inputs.get("ingress", []):
            assert not list(filter(_world, _sources(rule))), (sg.name, rule)


def test_a_wide_api_opens_the_load_balancer_never_the_nodes(runs):
    run = runs["prod-wide-api"]
    by_name = {sg.name: sg for sg in run.of_type(SG)}
    lb_rule, = by_name["prod-wide-api-lb"].inputs["ingress"]
    assert lb_rule["cidrBlocks"] == ["100.0.0.0/8"] and lb_rule["ipv6CidrBlocks"] == ["2600::/8"]
    for rule in by_name["prod-wide-api-node"].inputs["ingress"]:
        assert not _sources(rule)


@pytest.mark.parametrize("stack", ALL)
def test_cidr_ingress_only_from_configured_cidrs_on_ssh_or_api_port(runs, stack):
    config = config_of(stack)
    allowed = {22: set(config.ssh_allowed_cidrs), config.resolved_api_port:
               set(config.api_allowed_cidrs) | {"10.42.0.0/16"}}
    for sg in runs[stack].of_type(SG):
        for rule in sg.inputs.get("ingress", []):
            if _sources(rule):
                assert rule["fromPort"] == rule["toPort"] and rule["fromPort"] in allowed
                assert set(_sources(rule)) <= allowed[rule["fromPort"]], (sg.name, rule)


@pytest.mark.parametrize("stack", ALL)
def test_imdsv2_is_required_everywhere_with_hop_limit_two(runs, stack):
    run = runs[stack]
    holders = run.of_type(TEMPLATE) + [i for i in run.of_type(INSTANCE)
                                       if "launchTemplate" not in i.inputs]
    assert holders
    for res in holders:
        metadata = res.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required", res.name
        assert metadata["httpPutResponseHopLimit"] == 2, res.name


@pytest.mark.parametrize("stack", ALL)
def test_root_volumes_are_encrypted_gp3(runs, stack):
    run = runs[stack]
    config = config_of(stack)
    for template in run.of_type(TEMPLATE):
        (root,) = template.inputs["blockDeviceMappings"]
        assert root["ebs"] == {"volumeType": "gp3", "volumeSize": config.root_volume_gib,
                               "encrypted": "true", "deleteOnTermination": "true"}
    for instance in run.of_type(INSTANCE):
        if "launchTemplate" not in instance.inputs:  # the bastion
            root = instance.inputs["rootBlockDevice"]
            assert (root["volumeType"], root["encrypted"]) == ("gp3", True)


@pytest.mark.parametrize("stack", ALL)
def test_every_taggable_resource_carries_the_whole_tag_contract(runs, stack):
    config = config_of(stack)
    # A Capacity Block stack expires before its block ends even without ttlHours.
    tagged, expires = 0, config.ttl_hours is not None or config.capacity_block is not None
    for res in runs[stack].resources:
        if not res.type.startswith("aws:") or not _is_taggable(res.type):
            continue
        tags = res.inputs.get("tags") or {}
        if isinstance(tags, list):  # an Auto Scaling group's: each tag also reaches its nodes
            # but the scaler's target, which is the group's own (cloud/replicas.py)
            assert all(t["propagateAtLaunch"] is (t["key"] != TARGET_WAITING_TAG)
                       for t in tags), res.name
            tags = {t["key"]: t["value"] for t in tags}
        missing = [k for k in REQUIRED_TAG_KEYS if k not in tags]
        assert not missing, f"{res.type} {res.name} lacks {missing}"
        assert tags["dsinfra:stack"] == stack and tags["dsinfra:tier"] == tier_of(stack)
        assert ("dsinfra:expires-at" in tags) == expires
        tagged += 1
    assert tagged >= 8  # the policy must not pass vacuously


@pytest.mark.parametrize("stack", ALL)
def test_launch_templates_tag_the_instance_its_volumes_and_its_interfaces(runs, stack):
    for template in runs[stack].of_type(TEMPLATE):
        specs = {s["resourceType"]: s["tags"] for s in template.inputs["tagSpecifications"]}
        assert {"instance", "volume", "network-interface"} <= set(specs)
        for tags in specs.values():
            assert set(REQUIRED_TAG_KEYS) <= set(tags)


def test_user_tags_reach_resources_but_never_override_the_contract(runs):
    for res in runs["dist-reserved"].of_type(INSTANCE):
        assert res.inputs["tags"]["team"] == "inference"
        assert res.inputs["tags"]["dsinfra:stack"] == "dist-reserved"


@pytest.mark.parametrize("stack", ALL)
def test_iam_grants_only_ssm_core_and_the_idle_stop(runs, stack):
    """SSM core, and where idle autostop is on (dev by default) the watcher's policy, which
    tests/infra/test_infra_idle_policy.py holds to its own stack; where the tier takes the
    engine image from ECR, the dsinfra/* repositories' policy (test_infra_model_cache_iam)."""
    run = runs[stack]
    attachments = run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert [a.inputs["policyArn"] for a in attachments] == [SSM_CORE_POLICY_ARN]
    inline = [r for r in run.resources if r.type in (
        "aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy", "aws:iam/user:User")]
    config = config_of(stack)
    idle = config.resolved_idle_minutes is not None
    assert [r.name for r in inline] == ([f"{stack}-node-idle-stop"] if idle else []) + (
        [f"{stack}-node-weights-mirror"] if config.model_cache else []) + (
        [f"{stack}-node-engine-image"] if config.tier_spec.image_from_ecr else []) + (
        [f"{stack}-node-metrics"] if config.replicas is not None else [])
    (role,) = run.of_type("aws:iam/role:Role")
    assert "ec2.amazonaws.com" in role.inputs["assumeRolePolicy"]
    # ...which is exactly what NODE_POLICIES, the table docs/tiers.md shows, says.
    assert [a.name for a in attachments] + [r.name for r in inline] == \
        [f"{stack}-node-{p.suffix}" for p in node_policies(config)]


def test_the_docs_list_the_instance_profiles_policies_from_the_table():
    """docs/tiers.md's table is node_policies_markdown(): a policy added to the nodes' role
    without its row there fails here (issue 26 item 5: the docs said "only SSM" while the
    role had up to three more)."""
    text = (PROJECT_DIR / "docs" / "tiers.md").read_text()
    assert node_policies_markdown() in text
    assert "only `AmazonSSMManagedInstanceCore`" not in text


@pytest.mark.parametrize("stack", [s for s in ALL if TIERS[tier_of(s)].private])
def test_private_tier_nodes_have_no_public_address(runs, stack):
    run = runs[stack]
    for node in run.of_type(INSTANCE):
        if node.inputs["tags"].get("dsinfra:role") == "bastion":
            continue
        assert not node.inputs.get("associatePublicIpAddress"), node.name
    for template in run.of_type(TEMPLATE):
        for iface in template.inputs.get("networkInterfaces", []):
            assert iface["associatePublicIpAddress"] == "false"
    assert all(n["public_ip"] is None for n in run.outputs["nodes"])


@pytest.mark.parametrize("stack", ALL)
def test_subnets_never_hand_out_public_addresses(runs, stack):
    for subnet in runs[stack].of_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs["mapPublicIpOnLaunch"] is False


@pytest.mark.parametrize("stack", SHIPPED)
def test_gpu_ami_comes_from_the_dlami_ssm_parameter(runs, stack):
    from dsinfra.infra.offline import _RecordingMocks

    expected, _ = _RecordingMocks("us-east-1").call(
        type("Call", (), {"token": "aws:ssm/getParameter:getParameter",
                          "args": {"name": DLAMI_SSM_PARAMETER}})())
    (template,) = runs[stack].of_type(TEMPLATE)
    assert template.inputs["imageId"] == expected["value"]


def test_ami_override_replaces_the_lookup(runs):
    (template,) = runs["dist-reserved"].of_type(TEMPLATE)
    assert template.inputs["imageId"] == "ami-0fedcba9876543210"
    assert "imageId" not in template.ignore_changes


def test_a_newer_dlami_or_new_tag_values_never_replace_running_nodes(runs):
    # A new template version would replace the instances that launched from it.
    (template,) = runs["dev"].of_type(TEMPLATE)
    assert {"imageId", "tagSpecifications"} <= set(template.ignore_changes)


@pytest.mark.parametrize("stack", ALL)
def test_provider_targets_the_configured_region(runs, stack):
    (provider,) = runs[stack].of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == config_of(stack).region
