"""Issue 17 item 1, the launch half: a stack whose capacityReservationId is a Capacity Block.

moto has no DescribeCapacityReservations (no capacity reservation support in its ec2
responses), so the reservation is answered through botocore's Stubber. SOURCE of the shape:
the CapacityReservation members of botocore's ec2 service model (AvailabilityZone,
InstanceType, TotalInstanceCount, AvailableInstanceCount, StartDate, EndDate, State,
ReservationType default|capacity-block, Tags) and the AWS API reference for
DescribeCapacityReservations; the states are those of
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-blocks-view.html (payment-pending,
payment-failed, scheduled, active, expired); blocks end at 11:30 UTC (capacity-blocks-purchase).
It has no price member: that is why the fee comes from dsinfra's purchase tag or record.
The reservation ids, dates and fees are made up for the test; the shape is the documented one.
Everything else doctor reads (STS, offerings, instances, images) comes from the moto server.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber

from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError, UserError
from dsinfra.ops.capacity import resolve_block
from dsinfra.ops.doctor import check_budget, estimate_stack_cost, run_doctor
from dsinfra.ops.up import UpOptions, UpPorts, bring_up

from .fakes import FakeBootstrap, FakeEngine, StubbedFactory

RID = "cr-0b10c0000000000a1"
START = datetime(2030, 1, 7, 11, 30, tzinfo=timezone.utc)
END = START + timedelta(days=2)
INSIDE = START + timedelta(hours=1)


def reservation(kind: str = "capacity-block", *, state: str = "active", count: int = 2,
                itype: str = "p5.48xlarge", fee_tag: str | None = "3801.60") -> dict:
    tags = [{"Key": "dsinfra:upfront-usd", "Value": fee_tag}] if fee_tag else []
    return {"CapacityReservations": [{
        "CapacityReservationId": RID, "OwnerId": "123456789012",
        "CapacityReservationArn": f"arn:aws:ec2:us-east-1:123456789012:capacity-reservation/"
                                  f"{RID}",
        "AvailabilityZoneId": "use1-az6", "InstanceType": itype,
        "InstancePlatform": "Linux/UNIX", "AvailabilityZone": "us-east-1c",
        "Tenancy": "default", "TotalInstanceCount": count, "AvailableInstanceCount": count,
        "EbsOptimized": True, "EphemeralStorage": False, "State": state,
        "StartDate": START, "EndDate": END, "EndDateType": "limited",
        "InstanceMatchCriteria": "targeted", "CreateDate": START - timedelta(days=3),
        "Tags": tags, "ReservationType": kind}]}


def _stubbed_ec2(answer: dict | str) -> tuple[object, Stubber]:
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    stub = Stubber(ec2)
    expected = {"CapacityReservationIds": [RID]}
    if isinstance(answer, str):
        stub.add_client_error("describe_capacity_reservations", answer, expected_params=expected)
    else:
        stub.add_response("describe_capacity_reservations", answer, expected)
    stub.activate()
    return ec2, stub


def factory_for(answer: dict | str):
    ec2, stub = _stubbed_ec2(answer)
    return (lambda service, region=None: ec2), stub


def _config(**values):
    base = {"tier": "distributed", "instanceType": "p5.48xlarge", "nodeCount": 2,
            "capacityReservationId": RID, "precision": "fp8",
            "budget": {"amountUsd": 20_000, "period": "total", "onExceed": "destroy"}}
    return parse_stack_config("dist", {**base, **values})


# --- the pre-flight read -----------------------------------------------------------------------

def test_a_capacity_block_is_read_into_plain_values_with_its_zone():
    factory, stub = factory_for(reservation())
    config, state = resolve_block(_config(), factory=factory)
    stub.assert_no_pending_responses()
    block = config.capacity_block
    assert state == "active"
    assert (block.availability_zone, block.instance_type, block.instance_count) == (
        "us-east-1c", "p5.48xlarge", 2)
    assert (block.start, block.end, block.upfront_usd) == (START, END, 3801.60)
    assert config.availability_zone == "us-east-1c"
    # No ttlHours: the guard's expiry is 60 minutes before the block ends.
    assert config.expiry() == END - timedelta(minutes=60)


def test_the_fee_comes_from_the_purchase_record_when_the_reservation_is_untagged():
    factory, _ = factory_for(reservation(fee_tag=None))
    bought = [{"kind": "capacity.buy.result", "result": "bought",
               "capacity_reservation_id": RID, "upfront_usd": 3700.0}]
    config, _ = resolve_block(_config(), factory=factory, purchases=bought)
    assert config.capacity_block.upfront_usd == 3700.0


def test_an_unknown_fee_stays_unknown_and_fails_the_budget_check():
    factory, _ = factory_for(reservation(fee_tag=None))
    config, _ = resolve_block(_config(), factory=factory)
    assert config.capacity_block.upfront_usd is None
    check = check_budget(config, estimate_stack_cost(config))
    assert check.status == "fail" and "upfront price" in check.detail
    assert "capacityBlock.upfrontUsd" in check.fix


def test_the_stack_file_may_state_the_fee_of_a_block_bought_elsewhere():
    factory, _ = factory_for(reservation(fee_tag=None))
    stated = {"availabilityZone": "us-east-1c", "instanceType": "p5.48xlarge",
              "instanceCount": 2, "start": "2030-01-07T11:30:00Z",
              "end": "2030-01-09T11:30:00Z", "upfrontUsd": 3650}
    config, _ = resolve_block(_config(capacityBlock=stated), factory=factory)
    assert config.capacity_block.upfront_usd == 3650


def test_an_on_demand_reservation_is_left_as_a_plain_target():
    factory, _ = factory_for(reservation("default"))
    config, state = resolve_block(_config(), factory=factory)
    assert config.capacity_block is None and config.availability_zone is None
    assert state == "active"


@pytest.mark.parametrize("values, key, allowed", [
    ({"nodeCount": 3}, "dsinfra:nodeCount", "at most 2"),
    ({"instanceType": "p5en.48xlarge", "nodeCount": 1}, "dsinfra:instanceType",
     "p5.48xlarge"),
    ({"availabilityZone": "us-east-1a"}, "dsinfra:availabilityZone", "us-east-1c"),
])
def test_a_stack_that_does_not_fit_its_block_stops_at_the_door(values, key, allowed):
    factory, _ = factory_for(reservation())
    with pytest.raises(ConfigError) as caught:
        resolve_block(_config(**values), factory=factory)
    assert caught.value.key == key and allowed in caught.value.allowed
    assert "\n" not in caught.value.message


def test_an_unknown_reservation_id_is_bad_input():
    factory, _ = factory_for("InvalidCapacityReservationId.NotFound")
    with pytest.raises(ConfigError) as caught:
        resolve_block(_config(), factory=factory)
    assert caught.value.key == "dsinfra:capacityReservationId"


# --- up: the door, the values the program gets, the zone ---------------------------------------

def _up(config, engine, answer, now, doctor=None):
    """``up`` with a preflight that reads the block from the stubbed reservation (the one
    read) and passes everything else, offering the block's zone."""
    from dsinfra.ops.doctor import BudgetVerdict, Check, DoctorReport, Preflight

    def passing(cfg):
        factory, _ = factory_for(answer)
        cfg, state = resolve_block(cfg, factory=factory)
        return Preflight(DoctorReport(cfg.stack, [Check("instance type offered", "pass", "")]),
                         config=cfg, block_state=state, zones=("us-east-1c",),
                         budget=BudgetVerdict(True, 1.0, ""))

    return bring_up(config, engine, options=UpOptions(health_timeout_s=0), now=now,
                    ports=UpPorts(preflight=doctor or passing, bootstrap=FakeBootstrap(),
                                  probe=lambda _u, _t: True, tunnel_url=lambda _o: None,
                                  cleanup=_swept_clean))


def _swept_clean(_stack, _region):
    from types import SimpleNamespace

    return SimpleNamespace(clean=True, summary="nothing billable left")


def test_up_writes_the_block_into_the_program_config_and_launches_in_its_zone():
    engine = FakeEngine(instance_type="p5.48xlarge")
    result = _up(_config(apiAllowedCidrs=["203.0.113.0/24"]), engine, reservation(), INSIDE)
    assert engine.config["dsinfra:availabilityZone"] == "us-east-1c"
    import json

    written = json.loads(engine.config["dsinfra:capacityBlock"])
    assert written["availabilityZone"] == "us-east-1c" and written["upfrontUsd"] == 3801.6
    ups = [c for c in engine.calls if c[0] == "up"]
    assert ups == [("up", "dist", "us-east-1c")]
    # The block's values were in the config before pulumi up ran.
    first_up = engine.calls.index(ups[0])
    assert any(c[:3] == ("set_config", "dist", "dsinfra:capacityBlock")
               for c in engine.calls[:first_up])
    assert result.expires_at == END - timedelta(minutes=60)


def test_up_refuses_a_ttl_past_the_block_before_anything_is_created():
    engine = FakeEngine(instance_type="p5.48xlarge")
    with pytest.raises(ConfigError) as caught:
        _up(_config(ttlHours=72), engine, reservation(), INSIDE)
    assert caught.value.key == "dsinfra:ttlHours"
    assert "2030-01-09T10:30:00Z" in caught.value.allowed
    assert engine.calls == []


def test_up_accepts_a_ttl_inside_the_block():
    engine = FakeEngine(instance_type="p5.48xlarge")
    result = _up(_config(ttlHours=12, apiAllowedCidrs=["203.0.113.0/24"]), engine,
                 reservation(), INSIDE)
    assert result.expires_at == INSIDE + timedelta(hours=12)


@pytest.mark.parametrize("state, now, says", [
    ("scheduled", START - timedelta(hours=5), "scheduled"),
    ("active", END - timedelta(minutes=45), "ends 2030-01-09T11:30:00Z"),
    ("payment-failed", INSIDE, "payment-failed"),
])
def test_up_outside_the_blocks_window_creates_nothing(state, now, says):
    engine = FakeEngine(instance_type="p5.48xlarge")
    with pytest.raises(UserError) as caught:
        _up(_config(), engine, reservation(state=state), now)
    assert says in caught.value.message and "nothing was created" in caught.value.message
    assert engine.calls == []


def test_up_never_fails_over_out_of_a_block():
    from dsinfra.ops.failover import CapacityExhausted

    engine = FakeEngine(instance_type="p5.48xlarge", no_capacity_in=("us-east-1c",))
    with pytest.raises(CapacityExhausted) as caught:
        _up(_config(), engine, reservation(), INSIDE)
    assert [a.availability_zone for a in caught.value.attempts] == ["us-east-1c"]


# --- doctor: the block's window and fee; a mismatch is one line, exit 2 ------------------------

class _Ec2WithBlock:
    """moto's ec2 client, except DescribeCapacityReservations (moto lacks it): Stubber."""

    def __init__(self, moto_client, stubbed) -> None:
        self._moto, self._stubbed = moto_client, stubbed

    def describe_capacity_reservations(self, **kwargs):
        return self._stubbed.describe_capacity_reservations(**kwargs)

    def __getattr__(self, name):
        return getattr(self._moto, name)


def _doctor_factory(answer: dict):
    stubbed, _ = _stubbed_ec2(answer)
    inner = StubbedFactory(quota_value=384)

    def factory(service, region=None):
        made = inner(service, region)
        return _Ec2WithBlock(made, stubbed) if service == "ec2" else made
    return factory


def test_doctor_shows_the_blocks_window_and_upfront_price(aws):
    report = run_doctor(_config(), client_factory=_doctor_factory(reservation()),
                        pulumi_version=lambda: "v3.200.0", purchases=lambda: [])
    block = report.get("capacity block")
    assert block is not None
    assert "2030-01-07 11:30 to 2030-01-09 11:30 UTC" in block.detail
    assert "$3,801.60 up front" in block.detail and "us-east-1c" in block.detail
    assert block.data["upfront_usd"] == 3801.6
    budget = report.get("budget")
    assert budget.data["upfront_usd"] == 3801.6
    assert "including $3,801.60 paid up front" in budget.detail


def test_doctor_stops_with_one_line_when_the_nodes_outnumber_the_block(aws):
    with pytest.raises(ConfigError) as caught:
        run_doctor(_config(nodeCount=3), client_factory=_doctor_factory(reservation()),
                   pulumi_version=lambda: "v3.200.0", purchases=lambda: [])
    assert caught.value.key == "dsinfra:nodeCount"
    assert "Capacity Block cr-0b10c0000000000a1 holds 2x p5.48xlarge" in caught.value.allowed
