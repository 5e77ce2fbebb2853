"""Issue 23 item 1: only the deployment sets a stack's rules. The record is the tags of the
stack's instances (kept current by `dsinfra up`); any other resource that claims the stack
with another rule makes it `failed`, naming the resource, and is never a reason to act."""

from __future__ import annotations

from dsinfra import tags as T
from dsinfra.budget import RecordError, budget_from_record
from dsinfra.spend import Resource

from .conftest import _spec, hours_later, make_stack
from .helpers import check, instance_states


def test_a_foreign_elastic_ip_cannot_destroy_the_stack_it_claims(aws, state_dir, webhook):
    """The attack: someone with tagging rights tags an Elastic IP as the stack "victim" with
    a $0 budget and on-exceed destroy. The stack is failed, the address named, nothing
    stopped or destroyed (moto)."""
    from dsinfra.cloud.aws import client

    victim = make_stack("victim", nodes=2, budget_usd=500, on_exceed="notify")
    ec2 = client("ec2", "us-east-1")
    forged = ec2.allocate_address(Domain="vpc", TagSpecifications=[_spec("elastic-ip", {
        T.STACK: "victim", T.BUDGET_USD: "0.00", T.ON_EXCEED: "destroy"})])["AllocationId"]
    report = check(hours_later(5), enforce=True)["victim"]
    assert report["status"] == "failed", report
    assert forged in report["reason"] and T.BUDGET_USD in report["reason"]
    assert report["action"] == "notify" and report["action_result"] == "done"
    assert set(instance_states(victim["instances"]).values()) == {"running"}
    assert [a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]] == [forged]
    assert any(forged in str(m) for m in webhook.messages)


def test_the_record_sets_the_rule_not_the_strictest_resource(aws, state_dir):
    """protect true -> false and a new budget on the instances and every resource: the new
    rule applies (no stale `protect` or budget from any resource wins)."""
    from dsinfra.cloud.aws import client

    made = make_stack("moved", budget_usd=1, period="total", on_exceed="stop", protect=True)
    ec2 = client("ec2", "us-east-1")
    volumes = [v["VolumeId"] for v in ec2.describe_volumes(Filters=[
        {"Name": "attachment.instance-id", "Values": made["instances"]}])["Volumes"]]
    ec2.create_tags(Resources=made["instances"] + volumes,
                    Tags=[{"Key": T.PROTECT, "Value": "false"}])
    report = check(hours_later(5), enforce=True)["moved"]
    assert report["status"] == "exceeded" and report["action"] == "stop", report
    assert set(instance_states(made["instances"]).values()) == {"stopped"}


def test_a_stale_root_volume_fails_the_stack_until_up_retags_it(aws, state_dir):
    from dsinfra.cloud.aws import client

    made = make_stack("stale", budget_usd=1, period="total", on_exceed="destroy")
    client("ec2", "us-east-1").create_tags(Resources=made["instances"],
                                           Tags=[{"Key": T.BUDGET_USD, "Value": "50.00"}])
    report = check(hours_later(5), enforce=True)["stale"]
    assert report["status"] == "failed" and "vol-" in report["reason"], report
    assert set(instance_states(made["instances"]).values()) == {"running"}


def _r(kind, rid, **tags):
    base = {T.STACK: "s", T.BUDGET_USD: "10.00", T.ON_EXCEED: "stop"}
    return Resource(kind, rid, "us-east-1", "s", {**base, **tags}, "running")


def test_record_rules_in_the_core():
    assert budget_from_record("s", [_r("instance", "i-1"), _r("volume", "vol-1")]) \
        .amount_usd == 10.0
    for resources, named in [
            ([_r("address", "eipalloc-1")], "eipalloc-1"),  # no record at all
            ([_r("instance", "i-1"), _r("instance", "i-2", **{T.PROTECT: "true"})], "i-2"),
            ([_r("instance", "i-1"), _r("address", "eipalloc-2", **{T.BUDGET_USD: "0.00"})],
             "eipalloc-2")]:
        try:
            budget_from_record("s", resources)
        except RecordError as exc:
            assert named in str(exc) and named in exc.resources
        else:
            raise AssertionError(f"{named} was not refused")
