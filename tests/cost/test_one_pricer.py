"""One pricer (dsinfra/pricer.py): plan's price of a resource equals the meter's price of the
same resource live on moto, for every kind plan prices (issue 23 item 7: the two had drifted,
an internet-facing load balancer's public IPv4 per zone was priced by plan only).

Property-based: hypothesis draws a resource as the Pulumi program describes it (the input keys
ops/plan.py reads: instanceType, rootBlockDevice.volumeSize, associatePublicIpAddress, the
launch template's market; a load balancer's internal and subnets), plan prices that
description, the same description is created on the moto server (the double configured from
what the program would create), the inventory reads it back and the meter prices it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsinfra import tags as T
from dsinfra.catalog import GPU_INSTANCE_TYPES, is_priced
from dsinfra.ops.plan import EIP, INSTANCE, LAUNCH_TEMPLATE, LOAD_BALANCER, NAT_GATEWAY, \
    price_resources
from dsinfra.spend import resource_hourly_price

REGION = "us-east-1"
TYPES = sorted(t for t in GPU_INSTANCE_TYPES if is_priced(REGION, t))
_names = itertools.count()

instances = st.fixed_dictionaries({
    "type": st.just(INSTANCE),
    "inputs": st.fixed_dictionaries({
        "instanceType": st.sampled_from(TYPES),
        "rootBlockDevice": st.fixed_dictionaries({"volumeSize": st.integers(8, 2000)}),
        "associatePublicIpAddress": st.booleans()}),
    "market": st.sampled_from([None, "spot"])})
balancers = st.fixed_dictionaries({
    "type": st.just(LOAD_BALANCER),
    "inputs": st.fixed_dictionaries({"internal": st.booleans(),
                                     "subnets": st.integers(1, 3)})})
others = st.sampled_from([{"type": EIP, "inputs": {}}, {"type": NAT_GATEWAY, "inputs": {}}])


def _tags(stack: str) -> list[dict]:
    return [{"Key": T.STACK, "Value": stack}]


def _create_live(stack: str, drawn: dict, subnets: list[str]) -> None:
    """Create on moto what ``drawn`` describes, tagged with ``stack``."""
    from dsinfra.cloud.aws import client

    ec2, inputs = client("ec2", REGION), drawn["inputs"]
    if drawn["type"] == INSTANCE:
        spec = [{"ResourceType": k, "Tags": _tags(stack)} for k in ("instance", "volume")]
        market = {"InstanceMarketOptions": {"MarketType": "spot"}} if drawn["market"] else {}
        ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
            InstanceType=inputs["instanceType"], TagSpecifications=spec,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnets[0],
                                "AssociatePublicIpAddress": inputs["associatePublicIpAddress"]}],
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {
                "VolumeSize": inputs["rootBlockDevice"]["volumeSize"], "VolumeType": "gp3"}}],
            **market)
    elif drawn["type"] == EIP:
        ec2.allocate_address(Domain="vpc", TagSpecifications=[
            {"ResourceType": "elastic-ip", "Tags": _tags(stack)}])
    elif drawn["type"] == NAT_GATEWAY:
        eip = ec2.allocate_address(Domain="vpc")["AllocationId"]  # the program tags it apart
        ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=eip, TagSpecifications=[
            {"ResourceType": "natgateway", "Tags": _tags(stack)}])
    elif drawn["type"] == LOAD_BALANCER:
        client("elbv2", REGION).create_load_balancer(
            Name=f"lb-{stack}"[:32], Subnets=subnets[:inputs["subnets"]], Type="network",
            Scheme="internal" if inputs["internal"] else "internet-facing", Tags=_tags(stack))


def _plan_resources(drawn: dict, subnets: list[str]) -> list[dict]:
    inputs = dict(drawn["inputs"])
    if drawn["type"] == LOAD_BALANCER:
        inputs["subnets"] = subnets[:inputs["subnets"]]
    out = [{"type": drawn["type"], "name": "r", "inputs": inputs, "parent": "pool"}]
    if drawn.get("market"):
        out.append({"type": LAUNCH_TEMPLATE, "name": "lt", "parent": "pool",
                    "inputs": {"instanceMarketOptions": {"marketType": drawn["market"]}}})
    return out


@pytest.fixture
def subnets(aws):
    from dsinfra.cloud.aws import client

    ec2 = client("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # the program's subnets do not map public IPs on launch: an instance has one only when
    # its launch asks (associatePublicIpAddress)
    return [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                              AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
            for i, z in enumerate("abc")]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.one_of(instances, balancers, others))
def test_plan_and_the_meter_price_each_kind_alike(aws, state_dir, subnets, drawn):
    from dsinfra.cloud.inventory import fetch_inventory

    stack = f"twin-{next(_names)}"
    items = price_resources(_plan_resources(drawn, subnets), REGION)
    planned = {"volume": sum(i.hourly_usd for i in items if i.name.endswith("root volume")),
               "rest": sum(i.hourly_usd for i in items if not i.name.endswith("root volume"))}
    _create_live(stack, drawn, subnets)
    live = fetch_inventory((REGION,), [stack]).resources
    metered = {"volume": sum(resource_hourly_price(r).usd for r in live if r.kind == "volume"),
               "rest": sum(resource_hourly_price(r).usd for r in live if r.kind != "volume")}
    kinds = {r.kind for r in live}
    expected = {INSTANCE: {"instance", "volume"}, EIP: {"address"},
                NAT_GATEWAY: {"nat_gateway"}, LOAD_BALANCER: {"load_balancer"}}[drawn["type"]]
    assert kinds == expected, (drawn, kinds)
    # plan shows each line rounded to $0.000001/h; the meter keeps full precision
    tolerance = 0.5e-6 * len(items) + 1e-12
    assert metered["rest"] == pytest.approx(planned["rest"], abs=tolerance), (drawn, items, live)
    assert metered["volume"] == pytest.approx(planned["volume"], abs=tolerance), \
        (drawn, items, live)
    assert planned["rest"] > 0
