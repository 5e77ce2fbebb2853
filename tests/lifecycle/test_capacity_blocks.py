"""Issue 17 item 1 (part): `dsinfra capacity offers`.

Capacity Block offerings are not in moto: DescribeCapacityBlockOfferings is answered through
botocore's Stubber with responses shaped like the documented ones (the CapacityBlockOfferings
members of botocore's ec2 service model; UpfrontFee is a string, as in the API reference).
The offering ids and fees below are made up for the test; their shape is the documented one.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.errors import CloudError, UserError
from dsinfra.ops import capacity
from dsinfra.ops.capacity import capacity_offers, check_request

START = datetime(2026, 12, 3, 11, 30, tzinfo=timezone.utc)


def _offering(oid: str, zone: str, start_day: int, fee: str) -> dict:
    start = START.replace(day=start_day)
    return {"CapacityBlockOfferingId": oid, "InstanceType": "p5.48xlarge",
            "AvailabilityZone": zone, "InstanceCount": 2, "StartDate": start,
            "EndDate": start.replace(day=start_day + 1), "CapacityBlockDurationHours": 24,
            "UpfrontFee": fee, "CurrencyCode": "USD", "Tenancy": "default"}


def _factory(answers: dict[str, list[dict] | Exception]):
    clients = {}
    for region, offerings in answers.items():
        ec2 = boto3.client("ec2", region_name=region, aws_access_key_id="x",
                           aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
        stub = Stubber(ec2)
        if isinstance(offerings, Exception):
            stub.add_client_error("describe_capacity_block_offerings", "UnauthorizedOperation")
        else:
            stub.add_response("describe_capacity_block_offerings",
                              {"CapacityBlockOfferings": offerings},
                              {"InstanceType": "p5.48xlarge", "InstanceCount": 2,
                               "CapacityDurationHours": 24})
        stub.activate()
        clients[region] = ec2
    return lambda service, region=None: clients[region]


def test_offerings_from_every_region_earliest_first_with_per_instance_hour_price():
    factory = _factory({
        "us-east-1": [_offering("cb-0aaaaaaaaaaaaaaa1", "us-east-1a", 5, "1900.80")],
        "us-west-2": [_offering("cb-0bbbbbbbbbbbbbbb2", "us-west-2b", 4, "2112.00")]})
    rows = capacity_offers("p5.48xlarge", 2, 24, ["us-east-1", "us-west-2"], factory)
    assert [r["offering_id"] for r in rows] == ["cb-0bbbbbbbbbbbbbbb2", "cb-0aaaaaaaaaaaaaaa1"]
    assert rows[1]["upfront_usd"] == 1900.80
    assert rows[1]["usd_per_instance_hour"] == round(1900.80 / 48, 4)
    assert rows[0]["availability_zone"] == "us-west-2b" and rows[0]["region"] == "us-west-2"


@pytest.mark.parametrize("itype, count, hours, key", [
    ("m5.large", 1, 24, "--instance-type"), ("p5.48xlarge", 0, 24, "--count"),
    ("p5.48xlarge", 65, 24, "--count"), ("p5.48xlarge", 1, 25, "--duration"),
    ("p5.48xlarge", 1, 15 * 24, "--duration"), ("p5.48xlarge", 1, 183 * 24, "--duration")])
def test_requests_aws_would_refuse_stop_at_the_door(itype, count, hours, key):
    with pytest.raises(UserError) as caught:
        check_request(itype, count, hours)
    assert caught.value.message.startswith(f"invalid value for {key}")
    assert caught.value.exit_code == 2


def test_allowed_durations_pass():
    for hours in (24, 14 * 24, 21 * 24, 182 * 24):
        check_request("p5.48xlarge", 64, hours)


def test_an_aws_refusal_is_a_cloud_error():
    factory = _factory({"us-east-1": RuntimeError()})
    with pytest.raises(CloudError, match="DescribeCapacityBlockOfferings in us-east-1"):
        capacity_offers("p5.48xlarge", 2, 24, ["us-east-1"], factory)


def test_cli_table_and_json(monkeypatch):
    offer = [_offering("cb-0aaaaaaaaaaaaaaa1", "us-east-1a", 5, "1900.80")]
    for args in (["--json"], []):
        factory = _factory({"us-east-1": offer})
        monkeypatch.setattr(capacity, "_client", factory)
        result = CliRunner().invoke(app, ["capacity", "offers", "--instance-type",
                                          "p5.48xlarge", "--count", "2", "--duration", "24",
                                          "--region", "us-east-1", *args],
                                    env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        if args:
            payload = json.loads(result.stdout)
            assert payload["offerings"][0]["upfront_usd"] == 1900.8
        else:
            assert "1,900.80" in result.output and "39.60" in result.output
    bad = CliRunner().invoke(app, ["capacity", "offers", "--instance-type", "p5.48xlarge",
                                   "--count", "2", "--duration", "25"])
    assert bad.exit_code == 2 and "--duration" in bad.output


def _buy_factory(offer: list[dict], purchase: dict | None):
    """Offerings, then PurchaseCapacityBlock (not in moto: Stubber; the CapacityReservation
    members are those of botocore's ec2 service model)."""
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    stub = Stubber(ec2)
    stub.add_response("describe_capacity_block_offerings", {"CapacityBlockOfferings": offer},
                      {"InstanceType": "p5.48xlarge", "InstanceCount": 2,
                       "CapacityDurationHours": 24})
    if purchase is not None:
        stub.add_response("purchase_capacity_block", purchase,
                          {"CapacityBlockOfferingId": "cb-0aaaaaaaaaaaaaaa1",
                           "InstancePlatform": "Linux/UNIX", "TagSpecifications": [
                               {"ResourceType": "capacity-reservation", "Tags": [
                                   {"Key": "dsinfra:upfront-usd", "Value": "1900.80"}]}]})
    stub.activate()
    return (lambda service, region=None: ec2), stub


PURCHASE = {"CapacityReservation": {
    "CapacityReservationId": "cr-0123456789abcdef0", "InstanceType": "p5.48xlarge",
    "AvailabilityZone": "us-east-1a", "TotalInstanceCount": 2, "State": "payment-pending",
    "ReservationType": "capacity-block", "StartDate": START.replace(day=5),
    "EndDate": START.replace(day=6)}}
BUY = ["capacity", "buy", "cb-0aaaaaaaaaaaaaaa1", "--instance-type", "p5.48xlarge", "--count",
       "2", "--duration", "24", "--region", "us-east-1"]


@pytest.fixture
def audit_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path))
    return tmp_path


def _records(audit_dir):
    from dsinfra.cloud.audit import AuditLog

    return [r for r in AuditLog(audit_dir / "audit.jsonl").records()[0]]


def test_buy_needs_the_typed_price_and_is_audited(monkeypatch, audit_dir):
    offer = [_offering("cb-0aaaaaaaaaaaaaaa1", "us-east-1a", 5, "1900.80")]
    factory, stub = _buy_factory(offer, PURCHASE)
    monkeypatch.setattr(capacity, "_client", factory)
    result = CliRunner().invoke(app, [*BUY, "--price", "$1,900.80", "--json"])
    assert result.exit_code == 0, result.output
    stub.assert_no_pending_responses()
    assert json.loads(result.stdout)["capacity_reservation_id"] == "cr-0123456789abcdef0"
    kinds = [(r["kind"], r.get("result")) for r in _records(audit_dir)]
    assert kinds == [("capacity.buy.intent", None), ("capacity.buy.result", "bought")]


def test_a_wrong_price_buys_nothing(monkeypatch, audit_dir):
    offer = [_offering("cb-0aaaaaaaaaaaaaaa1", "us-east-1a", 5, "1900.80")]
    factory, stub = _buy_factory(offer, None)  # a purchase call would find no response
    monkeypatch.setattr(capacity, "_client", factory)
    result = CliRunner().invoke(app, [*BUY, "--price", "1900"])
    assert result.exit_code == 2 and "nothing was bought" in result.output
    assert _records(audit_dir) == []


def test_buy_without_a_terminal_or_price_refuses(monkeypatch, audit_dir):
    offer = [_offering("cb-0aaaaaaaaaaaaaaa1", "us-east-1a", 5, "1900.80")]
    factory, _ = _buy_factory(offer, None)
    monkeypatch.setattr(capacity, "_client", factory)
    result = CliRunner().invoke(app, BUY)
    assert result.exit_code == 2 and "not a terminal" in result.output
    # The flag that confirms a purchase is the price, not --yes (which buy does not have).
    assert "Pass --price USD" in result.output and "--yes" not in result.output
    assert "nothing was bought" in result.output


def test_buy_of_an_offering_no_longer_listed_buys_nothing(monkeypatch, audit_dir):
    factory, _ = _buy_factory([], None)
    monkeypatch.setattr(capacity, "_client", factory)
    result = CliRunner().invoke(app, [*BUY, "--price", "1900.80"])
    assert result.exit_code == 2 and "is not offered now" in result.output


@pytest.mark.parametrize("width", [80, 200])
def test_capacity_offers_table_never_cuts_a_value(monkeypatch, width):
    from table_check import assert_whole_and_within

    offers = [_offering("cb-0aaaaaaaaaaaaaaa1", "us-east-1a", 5, "1900.80"),
              _offering("cb-0bbbbbbbbbbbbbbb2", "us-east-1b", 6, "21900.00")]
    argv = ["capacity", "offers", "--instance-type", "p5.48xlarge", "--count", "2",
            "--duration", "24", "--region", "us-east-1"]
    monkeypatch.setattr(capacity, "_client", _factory({"us-east-1": offers}))
    payload = json.loads(CliRunner().invoke(app, [*argv, "--json"]).stdout)
    values = [v for o in payload["offerings"]
              for v in (o["offering_id"], o["availability_zone"], f"{o['upfront_usd']:,.2f}",
                        f"{o['usd_per_instance_hour']:,.2f}")]
    monkeypatch.setattr(capacity, "_client", _factory({"us-east-1": offers}))
    result = CliRunner().invoke(app, argv, env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    assert_whole_and_within(result.output, values, width)
