"""Issue 17 item 2: `up` fails over across zones, `dsinfra:fallback` alternatives and regions.

Refusals are injected at the Automation API seam (the `Engine` protocol of infra/automation.py):
the engine raises CloudError with AWS's own texts, as the Pulumi AWS provider reports them:
- InsufficientInstanceCapacity: fakes.CAPACITY_MESSAGE
- Unsupported zone: "api error Unsupported: Your requested instance type (t3.micro) is not
  supported in your requested Availability Zone (us-east-1e)..." (ned1313/Getting-Started-
  Terraform#44), with our type and zone put in
- vCPU quota: "creating EC2 Instance: VcpuLimitExceeded: You have requested more vCPU capacity
  than your current vCPU limit of 32 allows ..." (bentoml/bentoctl#202)
The moto test makes each failed attempt leave a real tagged instance behind on the moto server,
and the real cleanup (`pulumi destroy` on the fake, then the tag sweep) must remove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dsinfra.config import parse_stack_config
from dsinfra.errors import CloudError, ConfigError
from dsinfra.ops.failover import Failover, failover_options, refusal
from dsinfra.ops.up import CapacityExhausted, UpPorts, bring_up
from dsinfra.sizing import check_stack_fits

from .fakes import CAPACITY_MESSAGE, FakeBootstrap, FakeEngine
from .test_up import NOW, _doctor

UNSUPPORTED = ("creating EC2 Instance: operation error EC2: RunInstances, https response error "
               "StatusCode: 400, RequestID: f562, api error Unsupported: Your requested instance "
               "type ({itype}) is not supported in your requested Availability Zone ({zone}). "
               "Please retry your request by not specifying an Availability Zone or choosing "
               "us-east-1a, us-east-1b.")
QUOTA = ("creating EC2 Instance: VcpuLimitExceeded: You have requested more vCPU capacity than "
         "your current vCPU limit of 32 allows for the instance bucket that the specified "
         "instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request "
         "to request an adjustment to this limit.")
ZONES = {"us-east-1": ["us-east-1a", "us-east-1b"], "us-west-2": ["us-west-2a", "us-west-2b"]}


def _config(fallback=None, **values):
    base = {"tier": "dev", "instanceType": "g5.2xlarge", "ttlHours": 12,
            "budget": {"amountUsd": 300, "onExceed": "stop"}, "fallback": fallback or []}
    return parse_stack_config("dev", {**base, **values})


class RefusingEngine(FakeEngine):
    """Refuses ``up`` by (instance type, zone) as its stack config says at the time."""

    def __init__(self, refuse: dict[tuple[str, str], str], leave_behind=None) -> None:
        super().__init__()
        self.refuse, self.leave_behind = refuse, leave_behind
        self.config = {"dsinfra:instanceType": "g5.2xlarge", "dsinfra:region": "us-east-1"}

    def up(self, stack: str, on_event=None) -> dict[str, Any]:
        itype, zone = self.config["dsinfra:instanceType"], self.config.get(
            "dsinfra:availabilityZone", "")
        self.instance_type = itype
        self.fail_with = None
        if (itype, zone) in self.refuse or (itype, "*") in self.refuse:
            if self.leave_behind:
                self.leave_behind(stack, itype, zone)
            text = self.refuse.get((itype, zone)) or self.refuse[(itype, "*")]
            self.fail_with = text.format(stack=stack, itype=itype, zone=zone)
        return super().up(stack, on_event)


@dataclass
class Swept:
    clean: bool = True
    summary: str = "nothing billable with dsinfra:stack=dev remains"


def _failover(engine, *, sweeps=None, over_budget=None, audit=None):
    calls = [] if sweeps is None else sweeps
    return Failover(engine, lambda itype, region: ZONES[region],
                    lambda stack, region: calls.append((stack, region)) or Swept(),
                    over_budget or (lambda config: None),
                    audit=audit or (lambda kind, **fields: None))


def test_options_are_own_type_then_alternatives_then_other_regions():
    config = _config([{"instanceType": "g6.xlarge", "regions": ["us-west-2"]},
                      {"instanceType": "g6e.xlarge"}])
    assert [(o.instance_type, o.region) for o in failover_options(config)] == [
        ("g5.2xlarge", "us-east-1"), ("g6e.xlarge", "us-east-1"), ("g6.xlarge", "us-west-2")]


def test_refusals_are_classified_and_other_errors_are_not():
    assert refusal(CAPACITY_MESSAGE) == "insufficient capacity"
    assert refusal(UNSUPPORTED) == "unsupported zone"
    assert refusal(QUOTA) == "quota refused"
    assert refusal("api error UnauthorizedOperation: You are not authorized") is None


def test_zones_then_alternative_each_failed_attempt_swept_and_tp_follows():
    engine = RefusingEngine({("g5.2xlarge", "*"): CAPACITY_MESSAGE})
    sweeps, records = [], []
    config = _config([{"instanceType": "g6e.xlarge"}])
    raw, attempts, chosen = _failover(engine, sweeps=sweeps, audit=lambda k, **f: records.append(
        f)).deploy(config, ZONES["us-east-1"])
    assert [(a.instance_type, a.availability_zone, a.outcome) for a in attempts] == [
        ("g5.2xlarge", "us-east-1a", "insufficient capacity"),
        ("g5.2xlarge", "us-east-1b", "insufficient capacity"),
        ("g6e.xlarge", "us-east-1a", "created")]
    assert sweeps == [("dev", "us-east-1"), ("dev", "us-east-1")]  # one per failed attempt
    assert ("set_config", "dev", "dsinfra:instanceType", "g6e.xlarge") in engine.calls
    assert chosen.resolved_instance_type == "g6e.xlarge"
    assert raw["nodes"][0]["instance_type"] == "g6e.xlarge"
    assert [r["outcome"] for r in records] == ["insufficient capacity"] * 2 + ["created"]


def test_unsupported_zone_moves_on_and_quota_skips_the_other_zones():
    engine = RefusingEngine({("g5.2xlarge", "us-east-1a"): UNSUPPORTED,
                             ("g6e.xlarge", "*"): QUOTA})
    config = _config([{"instanceType": "g6e.xlarge"}])
    _, attempts, chosen = _failover(engine).deploy(config, ZONES["us-east-1"])
    assert [a.outcome for a in attempts] == ["unsupported zone", "created"]
    engine = RefusingEngine({("g5.2xlarge", "*"): QUOTA, ("g6e.xlarge", "*"): QUOTA})
    with pytest.raises(CapacityExhausted) as caught:
        _failover(engine).deploy(config, ZONES["us-east-1"])
    # a quota refusal is regional: one try per option, not one per zone
    assert [(a.instance_type, a.outcome) for a in caught.value.attempts] == [
        ("g5.2xlarge", "quota refused"), ("g6e.xlarge", "quota refused")]


def test_other_regions_come_after_every_home_option():
    engine = RefusingEngine({("g5.2xlarge", "*"): CAPACITY_MESSAGE,
                             ("g6e.xlarge", "*"): CAPACITY_MESSAGE})
    config = _config([{"instanceType": "g6.xlarge", "regions": ["us-west-2"]},
                      {"instanceType": "g6e.xlarge"}])
    _, attempts, chosen = _failover(engine).deploy(config, ZONES["us-east-1"])
    assert [(a.instance_type, a.region) for a in attempts][-1] == ("g6.xlarge", "us-west-2")
    assert [a.region for a in attempts].index("us-west-2") == 4  # after 2 + 2 home attempts
    assert chosen.region == "us-west-2" and chosen.availability_zone is None
    assert ("set_config", "dev", "dsinfra:region", "us-west-2") in engine.calls
    assert engine.config["dsinfra:availabilityZone"] == "us-west-2a"


def test_an_unclean_sweep_stops_failover_before_another_attempt():
    engine = RefusingEngine({("g5.2xlarge", "*"): CAPACITY_MESSAGE})
    failover = Failover(engine, lambda i, r: ZONES[r],
                        lambda stack, region: Swept(False, "1 billable resource(s) remain"),
                        lambda config: None)
    with pytest.raises(CloudError, match="cleanup left resources"):
        failover.deploy(_config([{"instanceType": "g6e.xlarge"}]), ZONES["us-east-1"])
    assert len([c for c in engine.calls if c[0] == "up"]) == 1


def test_an_alternative_over_budget_is_skipped_never_launched():
    engine = RefusingEngine({("g5.2xlarge", "*"): CAPACITY_MESSAGE})
    failover = _failover(engine, over_budget=lambda c: "$900/month vs budget $300")
    with pytest.raises(CapacityExhausted) as caught:
        failover.deploy(_config([{"instanceType": "g6e.xlarge"}]), ZONES["us-east-1"])
    assert caught.value.attempts[-1].outcome == "over budget"
    assert all(c[1:] != ("dev", "dsinfra:instanceType", "g6e.xlarge") for c in engine.calls)


def test_every_alternative_must_hold_the_model_at_the_door():
    ok = _config([{"instanceType": "g6e.24xlarge"}, {"instanceType": "p4de.24xlarge"}],
                 model="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", instanceType="g6e.12xlarge")
    check_stack_fits(ok)
    small = _config([{"instanceType": "g6e.12xlarge"}, {"instanceType": "g5.xlarge"}],
                    model="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", instanceType="g6e.12xlarge")
    with pytest.raises(ConfigError) as caught:
        check_stack_fits(small)
    assert "dsinfra:fallback.1" in caught.value.message and "1x g5.xlarge" in caught.value.message
    assert caught.value.exit_code == 2
    no_efa = _config([{"instanceType": "g6.xlarge", "nodeCount": 2}])
    with pytest.raises(ConfigError, match="no EFA"):
        check_stack_fits(no_efa)


def test_the_issue_example_passes_the_door():
    config = parse_stack_config("big", {
        "tier": "distributed", "instanceType": "p5.48xlarge", "nodeCount": 2,
        "model": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "precision": "bf16", "maxModelLen": 32768,
        "budget": {"amountUsd": 50000, "onExceed": "stop"},
        "fallback": [{"instanceType": "p5en.48xlarge", "nodeCount": 1},
                     {"instanceType": "p4de.24xlarge", "nodeCount": 2,
                      "regions": ["us-east-1", "us-west-2"]}]})
    check_stack_fits(config)
    assert [(o.instance_type, o.nodes, o.region) for o in failover_options(config)] == [
        ("p5.48xlarge", 2, "us-east-1"), ("p5en.48xlarge", 1, "us-east-1"),
        ("p4de.24xlarge", 2, "us-east-1"), ("p4de.24xlarge", 2, "us-west-2")]


@pytest.mark.parametrize("fallback, key", [
    ([{"instanceType": "m5.large"}], "dsinfra:fallback.0.instanceType"),
    ([{"instanceType": "g6.xlarge", "regions": ["mars-1"]}], "dsinfra:fallback.0.regions"),
    ([{"instanceType": "g6.xlarge", "nodeCount": True}], "dsinfra:fallback.0.nodeCount"),
    ([{"instanceType": "g6.xlarge", "zone": "x"}], "dsinfra:fallback.0.zone"),
])
def test_bad_fallback_is_one_line_naming_the_key(fallback, key):
    with pytest.raises(ConfigError) as caught:
        _config(fallback)
    assert caught.value.message.startswith(f"invalid value for {key}")
    assert "\n" not in caught.value.message


def test_fallback_with_a_capacity_reservation_is_refused():
    with pytest.raises(ConfigError, match="dsinfra:fallback"):
        _config([{"instanceType": "g6.xlarge"}], capacityReservationId="cr-0123456789abcdef0")


def _leave_instance(stack: str, itype: str, zone: str) -> None:
    """What a half-created attempt leaves: a running instance with the stack's tag (moto)."""
    from dsinfra.cloud.aws import client

    client("ec2", "us-east-1").run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.2xlarge",
        Placement={"AvailabilityZone": zone},
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "dsinfra:stack", "Value": stack}]}])


def test_on_moto_every_failed_attempt_is_swept_and_nothing_billable_is_left(aws):
    from dsinfra.cloud.inventory import fetch_inventory

    engine = RefusingEngine({("g5.2xlarge", "*"): CAPACITY_MESSAGE,
                             ("g6e.xlarge", "*"): CAPACITY_MESSAGE}, leave_behind=_leave_instance)
    with pytest.raises(CapacityExhausted) as caught:
        bring_up(_config([{"instanceType": "g6e.xlarge"}]), engine, now=NOW, ports=UpPorts(
            preflight=_doctor(), bootstrap=FakeBootstrap(), zones_for=lambda i, r: ZONES[r]))
    attempts = caught.value.attempts
    assert len(attempts) >= 3 and all("nothing billable" in a.cleanup for a in attempts)
    assert len([c for c in engine.calls if c[0] == "destroy"]) == len(attempts)
    left = [r for r in fetch_inventory(["us-east-1"], ["dev"]).resources
            if r.kind == "instance" and r.state not in ("terminated", "shutting-down")]
    assert left == []


# What AWS says when a spot launch finds no capacity or a price above the request's maximum,
# each as recorded in a public thread (the refusal's source is on its marker in ops/failover.py).
SPOT_REFUSALS = {
    # The spot request status code (AWS's documented code; the sentence around it is ours: no
    # recorded provider text was found).
    "capacity-not-available": "creating EC2 Instance: waiting for spot request: unexpected "
                              "state 'capacity-not-available'",
    # cortexlabs/cortex#1258 (an Auto Scaling group's activity message)
    "no spot capacity": "Could not launch Spot Instances. InsufficientInstanceCapacity - There "
                        "is no Spot capacity available that matches your request. Launching "
                        "EC2 instance failed.",
    # redhat-developer/mapt#576 (the Pulumi AWS provider, provider=aws@7.3.1)
    "spot price too low": "sdk-v2/provider2.go:572: sdk.helper_schema: waiting for Auto "
                          "Scaling Group (main-akd-asg-c26a142) capacity satisfied: scaling "
                          "activity (974662f2-2b8a-f94b-2e75-44ca5ea3396c): Failed: Could not "
                          "launch Spot Instances. SpotMaxPriceTooLow - Your Spot request price "
                          "of 0.24156000000000002 is lower than the minimum required Spot "
                          "request fulfillment price of 0.6034. Launching EC2 instance failed.",
}


@pytest.mark.parametrize("said", SPOT_REFUSALS.values(), ids=SPOT_REFUSALS.keys())
def test_spot_without_capacity_falls_back_to_on_demand_and_says_so(aws, said):
    class SpotEngine(RefusingEngine):
        def up(self, stack, on_event=None):
            self.fail_with = said if self.config.get("dsinfra:spot", "true") == "true" else None
            return FakeEngine.up(self, stack, on_event)

    engine, phases, audited = SpotEngine({}), [], []
    result = bring_up(_config(spot=True), engine, now=NOW, ports=UpPorts(
        preflight=_doctor(), bootstrap=FakeBootstrap(), zones_for=lambda i, r: ZONES[r],
        on_phase=lambda p, m: phases.append(m),
        audit=lambda kind, **fields: audited.append((kind, fields))))
    assert [(a.spot, a.outcome) for a in result.attempts][-1] == (False, "created")
    assert all(a.spot for a in result.attempts[:-1])
    assert ("set_config", "dev", "dsinfra:spot", "false") in engine.calls
    assert any("falling back to on-demand" in m for m in phases)
    assert result.notes and "spot had no capacity" in result.notes[0]
    refused = result.attempts[:-1]
    fallback = [fields for kind, fields in audited if kind == "up.spot_fallback"]
    assert fallback == [{"instance_type": "g5.2xlarge", "nodes": 1, "region": "us-east-1",
                         "spot_refusals": [f"{a.availability_zone}: {a.outcome}"
                                           for a in refused]}]
    assert len(refused) >= 2 and {a.outcome for a in refused} == {refusal(said)}
    # Each refused spot attempt was torn down before the on-demand launch.
    assert len([c for c in engine.calls if c[0] == "destroy"]) == len(refused)


def test_a_spot_price_refusal_is_its_own_kind():
    assert refusal(SPOT_REFUSALS["spot price too low"]) == "spot price too high"
    assert refusal(SPOT_REFUSALS["no spot capacity"]) == "insufficient capacity"
