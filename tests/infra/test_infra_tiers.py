"""Each tier gets the instance family and network shape the issue describes."""

from __future__ import annotations

import pytest

from dsinfra.catalog import BASTION_INSTANCE_TYPE
from dsinfra.outputs import StackOutputs
from dsinfra.tiers import TIERS
from offline_stacks import OFFICE, REPLICA_STACKS, SHIPPED, VARIANTS, run_stack, stack_values

INSTANCE = "aws:ec2/instance:Instance"
SUBNET = "aws:ec2/subnet:Subnet"
SG = "aws:ec2/securityGroup:SecurityGroup"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LB = "aws:lb/loadBalancer:LoadBalancer"


def _count(run, token: str) -> int:
    return len(run.of_type(token))


def _nodes(run):
    return [i for i in run.of_type(INSTANCE) if i.inputs["tags"]["dsinfra:role"] != "bastion"]


def _group(run, suffix: str):
    (group,) = [g for g in run.of_type(SG) if g.name.endswith(suffix)]
    return group


def test_dev_is_one_public_subnet_behind_an_internet_gateway(runs):
    run = runs["dev"]
    (subnet,) = run.of_type(SUBNET)
    assert subnet.name.endswith("public-0")
    assert _count(run, "aws:ec2/internetGateway:InternetGateway") == 1
    for absent in ("aws:ec2/natGateway:NatGateway", LB, "aws:ec2/vpcEndpoint:VpcEndpoint"):
        assert _count(run, absent) == 0
    (node,) = _nodes(run)
    assert node.inputs["instanceType"].startswith("g5.")
    assert node.inputs["associatePublicIpAddress"] is True
    assert run.outputs["nodes"][0]["public_ip"] and run.outputs["bastion"] is None


EICE = "aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint"


def _from_endpoint_only(run) -> list:
    """The node group's rules besides the endpoint's, which admit SSH and nothing else: the
    endpoint carries ports 22 and 3389 only, so an API rule for it could never be used."""
    rules = _group(run, "-node").inputs.get("ingress", [])
    eice = [r for r in rules if r.get("securityGroups") == [_group(run, "-eice").id]]
    assert sorted((r["fromPort"], r["toPort"], r["protocol"]) for r in eice) == \
        [(22, 22, "tcp")]
    return [r for r in rules if r not in eice]


def test_dev_node_group_admits_ssh_only_from_the_connect_endpoint(runs):
    assert _from_endpoint_only(runs["dev"]) == []


@pytest.mark.parametrize("tier", TIERS.values(), ids=lambda t: t.name)
def test_each_tiers_shipped_stack_has_the_network_its_spec_says(runs, tier):
    """Per TierSpec, not per name: a fourth tier runs this with its own traits."""
    run = runs[tier.name]
    subnets = run.of_type(SUBNET)
    zones = {s.inputs["availabilityZone"] for s in subnets}
    assert len(zones) == tier.zones
    assert any("private" in s.name for s in subnets) is tier.private
    assert (_count(run, LB) == 1) is tier.load_balancer
    assert (_count(run, "aws:ec2/natGateway:NatGateway") >= 1) is tier.private
    assert bool(_group_or_none(run, "-efa")) is tier.efa
    nodes = _nodes(run)
    assert len(nodes) == tier.default_node_count
    assert {n.inputs["instanceType"] for n in nodes} == {tier.default_instance_type}
    assert all(bool(n.inputs.get("associatePublicIpAddress")) is not tier.private
               for n in nodes)


def _group_or_none(run, suffix: str):
    return next((g for g in run.of_type(SG) if g.name.endswith(suffix)), None)


@pytest.mark.parametrize("stack", [*SHIPPED, *VARIANTS])
def test_every_stack_gets_one_connect_endpoint_with_a_closed_group(runs, stack):
    run = runs[stack]
    (endpoint,) = run.of_type(EICE)
    group = _group(run, "-eice")
    assert endpoint.inputs["securityGroupIds"] == [group.id]
    # The client's address is not preserved: the node group's rule on the endpoint's group
    # is what admits the tunnel.
    assert endpoint.inputs["preserveClientIp"] is False
    private = [s.id for s in run.of_type(SUBNET) if "private" in s.name]
    # In the nodes' own subnets: private ones where the tier has them.
    assert endpoint.inputs["subnetId"] in (private or [s.id for s in run.of_type(SUBNET)])
    assert group.inputs.get("ingress", []) == []
    assert sorted((e["fromPort"], e["cidrBlocks"]) for e in group.inputs["egress"]) == \
        [(22, ["10.42.0.0/16"])]
    assert {(e["fromPort"], e["toPort"], e["protocol"]) for e in group.inputs["egress"]} == \
        {(22, 22, "tcp")}
    assert endpoint.inputs["tags"]["dsinfra:stack"] == stack
    outputs = StackOutputs.from_dict(run.outputs)
    assert outputs.connect_endpoint_id == endpoint.id
    assert outputs.connect_endpoint_dns.endswith(".ec2-instance-connect-endpoint."
                                                 "us-east-1.amazonaws.com")


def test_dev_opens_ssh_and_api_only_to_the_configured_cidrs(runs):
    rules = {r["fromPort"]: r for r in _from_endpoint_only(runs["dev-open"])}
    assert set(rules) == {22, 8000}
    assert rules[22]["cidrBlocks"] == [OFFICE]
    assert rules[22]["ipv6CidrBlocks"] == ["2001:db8::/32"]
    assert rules[8000]["cidrBlocks"] == [OFFICE]


def test_dev_spot_is_a_persistent_request_that_aws_stops(runs):
    """Issue 23 item 5: a spot node that onExceed stop, idle autostop and `dsinfra stop` can
    stop: persistent, interruption behaviour stop (AWS refuses to stop one-time spot)."""
    (template,) = runs["dev-open"].of_type(TEMPLATE)
    assert template.inputs["instanceMarketOptions"]["marketType"] == "spot"
    spot = template.inputs["instanceMarketOptions"]["spotOptions"]
    assert spot["spotInstanceType"] == "persistent"
    assert spot["instanceInterruptionBehavior"] == "stop"
    kinds = {s["resourceType"] for s in template.inputs["tagSpecifications"]}
    assert "spot-instances-request" in kinds
    (shipped,) = runs["dev"].of_type(TEMPLATE)
    assert "instanceMarketOptions" not in shipped.inputs


def test_spot_interruption_terminate_keeps_the_one_time_request():
    """spotInterruption: terminate launches AWS's default kind, which no stop can stop (plan
    says a stop terminates it); the key is refused on a stack that is not spot."""
    from dsinfra.config import parse_stack_config
    from dsinfra.errors import ConfigError
    from dsinfra.infra.offline import run_offline

    run = run_offline("dev-one-time", stack_values("dev", {"spot": True,
                                                           "spotInterruption": "terminate"}))
    (template,) = run.of_type(TEMPLATE)
    spot = template.inputs["instanceMarketOptions"]["spotOptions"]
    assert (spot["spotInstanceType"], spot["instanceInterruptionBehavior"]) == \
        ("one-time", "terminate")
    with pytest.raises(ConfigError, match="spotInterruption.*'terminate'.*unless spot is true"):
        parse_stack_config("x", stack_values("dev", {"spotInterruption": "terminate"}))


def test_every_up_retags_the_nodes_root_volumes(runs):
    """Issue 23 item 1: the instances' volume tags are an input Pulumi updates in place, and
    equal the instance's own tags (the record the cost check compares them with)."""
    nodes = [node for name in ("dev", "dev-open")
             for node in runs[name].of_type("aws:ec2/instance:Instance")
             if node.inputs.get("launchTemplate")]
    assert nodes
    for node in nodes:
        assert node.inputs["volumeTags"] == node.inputs["tags"]


def test_key_pair_comes_from_ssh_public_key(runs):
    (pair,) = runs["dev-open"].of_type("aws:ec2/keyPair:KeyPair")
    assert pair.inputs["publicKey"].startswith("ssh-ed25519 ")
    (template,) = runs["dev-open"].of_type(TEMPLATE)
    assert template.inputs["keyName"] == pair.name
    assert _count(runs["dev"], "aws:ec2/keyPair:KeyPair") == 0


def test_prod_spans_two_zones_with_private_nodes_nat_nlb_and_s3_endpoint(runs):
    run = runs["prod"]
    subnets = run.of_type(SUBNET)
    assert len({s.inputs["availabilityZone"] for s in subnets}) == 2
    assert sorted(s.name.rsplit("-", 2)[1] for s in subnets) == ["private"] * 2 + ["public"] * 2
    assert _count(run, "aws:ec2/natGateway:NatGateway") == 1
    (endpoint,) = run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert [n.inputs["instanceType"] for n in _nodes(run)] == ["p4d.24xlarge"]
    (bastion,) = [i for i in runs["prod-bastion"].of_type(INSTANCE)
                  if i.name.endswith("bastion")]
    assert bastion.inputs["instanceType"] == BASTION_INSTANCE_TYPE


def test_listener_idle_timeout_defaults_to_an_hour_for_long_reasoning_answers(runs):
    # AWS's own default is 350 s: a non-streaming R1 answer that thinks longer is cut.
    for stack in (t.name for t in TIERS.values() if t.load_balancer):
        (listener,) = runs[stack].of_type("aws:lb/listener:Listener")
        assert listener.inputs["tcpIdleTimeoutSeconds"] == 3600


def test_prod_load_balancer_is_internal_without_api_cidrs(runs):
    (nlb,) = runs["prod"].of_type(LB)
    assert nlb.inputs["loadBalancerType"] == "network" and nlb.inputs["internal"] is True
    assert runs["prod"].outputs["endpoint"].startswith("http://internal-")
    lb_rules = _group(runs["prod"], "-lb").inputs["ingress"]
    assert [r["cidrBlocks"] for r in lb_rules] == [["10.42.0.0/16"]]


def test_prod_load_balancer_checks_engine_health_and_reaches_every_node(runs):
    run = runs["prod-public-api"]
    (group,) = run.of_type("aws:lb/targetGroup:TargetGroup")
    check = group.inputs["healthCheck"]
    assert (check["protocol"], check["path"], check["port"]) == ("HTTP", "/health",
                                                                 "traffic-port")
    (listener,) = run.of_type("aws:lb/listener:Listener")
    assert listener.inputs["port"] == 8000
    assert listener.inputs["tcpIdleTimeoutSeconds"] == 6000  # the stack's apiIdleTimeoutS
    assert _count(run, "aws:lb/targetGroupAttachment:TargetGroupAttachment") == 3
    (nlb,) = run.of_type(LB)
    assert nlb.inputs["internal"] is False and nlb.inputs["securityGroups"]
    lb_rules = _group(run, "-lb").inputs["ingress"]
    assert [r["cidrBlocks"] for r in lb_rules] == [[OFFICE]]


def test_prod_nodes_spread_over_both_private_subnets_from_the_configured_zone(runs):
    run = runs["prod-public-api"]
    zones = [s.inputs["availabilityZone"] for s in run.of_type(SUBNET)
             if "private" in s.name]
    assert sorted(zones) == ["us-east-1a", "us-east-1c"]
    assert len({n.inputs["subnetId"] for n in _nodes(run)}) == 2


def test_private_stacks_have_no_bastion_unless_asked(runs):
    private = [t.name for t in TIERS.values() if t.private]
    for stack in (*private, "prod-public-api"):
        run = runs[stack]
        assert [r for r in _from_endpoint_only(run) if r["fromPort"] == 22] == []
        assert not [g for g in run.of_type(SG) if g.name.endswith("-bastion")]
        assert not [i for i in run.of_type(INSTANCE) if i.name.endswith("bastion")]
        assert run.outputs["bastion"] is None and run.outputs["bastion_id"] is None


def test_a_bastion_asked_for_reaches_private_nodes_besides_the_endpoint(runs):
    run = runs["prod-bastion"]
    ssh = [r for r in _from_endpoint_only(run) if r["fromPort"] == 22]
    assert [r.get("cidrBlocks") for r in ssh] == [None]
    assert ssh[0]["securityGroups"] == [_group(run, "-bastion").id]


def test_distributed_is_one_zone_with_a_cluster_placement_group(runs):
    run = runs["distributed"]
    assert len({s.inputs["availabilityZone"] for s in run.of_type(SUBNET)}) == 1
    (group,) = run.of_type("aws:ec2/placementGroup:PlacementGroup")
    assert group.inputs["strategy"] == "cluster"
    (template,) = run.of_type(TEMPLATE)
    assert template.inputs["placement"]["groupName"] == group.name
    assert [n.inputs["instanceType"] for n in _nodes(run)] == ["p5.48xlarge"] * 2


def test_distributed_efa_group_allows_all_traffic_in_from_and_out_to_itself(runs):
    efa = _group(runs["distributed"], "-efa")
    assert efa.inputs["ingress"] == [{"protocol": "-1", "fromPort": 0, "toPort": 0,
                                      "self": True, "description": "EFA: all from itself"}]
    assert efa.inputs["egress"] == [{"protocol": "-1", "fromPort": 0, "toPort": 0,
                                     "self": True, "description": "EFA: all to itself"}]


def test_p5_lays_out_32_cards_one_ip_interface_and_32_efa_only(runs):
    (template,) = runs["distributed"].of_type(TEMPLATE)
    interfaces = template.inputs["networkInterfaces"]
    kinds = [i["interfaceType"] for i in interfaces]
    assert kinds.count("interface") == 1 and kinds.count("efa-only") == 32
    assert len({i["networkCardIndex"] for i in interfaces}) == 32
    first = [(i["networkCardIndex"], i["deviceIndex"], i["interfaceType"]) for i in interfaces[:2]]
    assert first == [(0, 0, "interface"), (0, 1, "efa-only")]
    assert all(len(i["securityGroups"]) == 2 and i["subnetId"] for i in interfaces)


def test_p5en_lays_out_its_16_cards(runs):
    (template,) = runs["dist-reserved"].of_type(TEMPLATE)
    assert len({i["networkCardIndex"] for i in template.inputs["networkInterfaces"]}) == 16


def test_efa_nodes_take_their_network_only_from_the_template(runs):
    for node in _nodes(runs["distributed"]):
        assert not {"subnetId", "vpcSecurityGroupIds", "associatePublicIpAddress"} & set(
            node.inputs)


def test_distributed_load_balancer_targets_only_the_head(runs):
    run = runs["dist-reserved"]
    (attachment,) = run.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    head = next(n for n in run.outputs["nodes"] if n["role"] == "head")
    assert attachment.inputs["targetId"] == head["id"]


def test_capacity_reservation_is_targeted_when_set(runs):
    (template,) = runs["dist-reserved"].of_type(TEMPLATE)
    target = template.inputs["capacityReservationSpecification"]["capacityReservationTarget"]
    assert target == {"capacityReservationId": "cr-0123456789abcdef0"}
    (shipped,) = runs["distributed"].of_type(TEMPLATE)
    assert "capacityReservationSpecification" not in shipped.inputs


# Stacks with replicas export one more object, `replicas` (tests/infra/test_infra_replicas.py).
@pytest.mark.parametrize("stack", [s for s in (*SHIPPED, *VARIANTS) if s not in REPLICA_STACKS])
def test_outputs_follow_the_stack_outputs_contract(runs, stack):
    outputs = StackOutputs.from_dict(runs[stack].outputs)
    assert set(runs[stack].outputs) == {"nodes", "bastion", "bastion_id", "endpoint", "ssh_user",
                                        "region", "connect_endpoint"}
    private = runs[stack].outputs["bastion"] is not None
    # The bastion's instance id is what bootstrap pins its host key from (console output).
    assert (outputs.bastion_id is not None) == private
    assert outputs.head is outputs.nodes[0]
    assert [n.role for n in outputs.nodes[1:]] == ["worker"] * (len(outputs.nodes) - 1)
    assert outputs.ssh_user == "ubuntu" and outputs.region == "us-east-1"
    assert outputs.endpoint.startswith("http://") and outputs.endpoint.endswith(":8000")
    assert all(n.id.startswith("i-") and n.private_ip for n in outputs.nodes)


@pytest.mark.parametrize("stack", SHIPPED)
def test_one_expiry_is_pinned_for_every_resource_of_a_run(runs, stack):
    expiries = {r.inputs["tags"].get("dsinfra:expires-at") for r in runs[stack].resources
                if isinstance(r.inputs.get("tags"), dict)}
    assert len(expiries) == 1


def test_stacks_run_one_after_another_in_one_process_stay_independent(runs):
    again = run_stack("dev")
    assert [(r.type, r.name) for r in again.resources] == \
        [(r.type, r.name) for r in runs["dev"].resources]
    assert run_stack("prod-bastion").outputs["bastion"]


# --- Capacity Blocks (issue 17 item 1) -------------------------------------------------------

def _template(run):
    (template,) = run.of_type(TEMPLATE)
    return template.inputs


@pytest.mark.parametrize("stack", ["dist-block", "prod-block"])
def test_capacity_block_launches_with_its_market_type_and_reservation_target(runs, stack):
    inputs = _template(runs[stack])
    assert inputs["instanceMarketOptions"] == {"marketType": "capacity-block"}
    reservation = VARIANTS[stack][1]["capacityReservationId"]
    assert inputs["capacityReservationSpecification"] == {
        "capacityReservationTarget": {"capacityReservationId": reservation}}


def test_plain_reservation_keeps_the_default_market(runs):
    # An On-Demand Capacity Reservation is targeted without a market type.
    assert "instanceMarketOptions" not in _template(runs["dist-reserved"])


def _subnet_zones(run) -> dict[str, str]:
    return {s.id: s.inputs["availabilityZone"] for s in run.of_type(SUBNET)}


def test_capacity_block_nodes_sit_in_the_blocks_zone_on_a_one_zone_network(runs):
    run = runs["dist-block"]
    zones = set(_subnet_zones(run).values())
    assert zones == {"us-east-1c"}  # distributed is one zone: the block's, not the first
    subnet_ids = {iface["subnetId"] for iface in _template(run)["networkInterfaces"]}
    assert {_subnet_zones(run)[s] for s in subnet_ids} == {"us-east-1c"}


def test_capacity_block_puts_every_node_in_the_blocks_zone_on_two_zone_prod(runs):
    run = runs["prod-block"]
    by_id = _subnet_zones(run)
    assert "us-east-1d" in by_id.values()
    nodes = _nodes(run)
    assert len(nodes) == 2
    assert {by_id[n.inputs["subnetId"]] for n in nodes} == {"us-east-1d"}
    # Without a block, prod's nodes go round-robin over both zones.
    spread = runs["prod-public-api"]
    assert len({_subnet_zones(spread)[n.inputs["subnetId"]] for n in _nodes(spread)}) == 2


def test_capacity_block_gets_no_placement_group(runs):
    # AWS: "there is no need to use a cluster placement group with a Capacity Block"
    # (capacity-blocks-using.html); the block is not a reservation in a placement group.
    assert _count(runs["dist-block"], "aws:ec2/placementGroup:PlacementGroup") == 0
    assert "placement" not in _template(runs["dist-block"])
    assert _count(runs["dist-reserved"], "aws:ec2/placementGroup:PlacementGroup") == 1


def test_capacity_block_stack_is_tagged_with_its_end_fee_and_teardown_time(runs):
    tags = _nodes(runs["dist-block"])[0].inputs["tags"]
    assert tags["dsinfra:block-ends-at"] == "2030-01-09T11:30:00Z"
    assert tags["dsinfra:upfront-usd"] == "3801.60"
    # No ttlHours: the TTL defaults to 60 minutes before the block's end.
    assert tags["dsinfra:expires-at"] == "2030-01-09T10:30:00Z"


@pytest.mark.parametrize("stack", [*SHIPPED, *VARIANTS])
def test_every_node_installs_the_instance_connect_agent_where_its_image_lacks_it(runs, stack):
    """Keys pushed with SendSSHPublicKey log in only where the EC2 Instance Connect agent runs
    (sshd's AuthorizedKeysCommand); the DLAMI is not documented to carry it, so the launch
    template's user data installs it when it is missing, and leaves an image that has it."""
    import base64
    import shutil
    import subprocess

    templates = runs[stack].of_type(TEMPLATE)  # one per node group
    assert templates
    for template in templates:
        script = base64.b64decode(template.inputs["userData"]).decode()
        assert script.startswith("#!/bin/bash\n")
        assert "agent=/usr/share/ec2-instance-connect/eic_run_authorized_keys" in script
        assert 'if [ ! -x "$agent" ]' in script
        assert "apt-get install -y ec2-instance-connect" in script
        if shutil.which("bash"):
            assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
