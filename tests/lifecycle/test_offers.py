"""Issue 17 item 4: `dsinfra offers MODEL`.

Offline: the catalog snapshot only (no credentials). With credentials: Service Quotas and EC2's
GetSpotPlacementScores are not served by moto, so both are answered through botocore's Stubber
with responses shaped like the documented ones (GetServiceQuota's Quota.Value; the
SpotPlacementScores list of {Region, Score} in botocore's ec2 service model).
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber
from motoserver import no_aws_credentials
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.ops.offers import find_offers

R1 = ["p4de.24xlarge", "p5en.48xlarge", "p4d.24xlarge", "g5.48xlarge", "p5.48xlarge",
      "p6-b200.48xlarge"]


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    no_aws_credentials(tmp_path, monkeypatch)


def test_offline_lists_every_fit_in_every_region_cheapest_first(no_credentials):
    result = CliRunner().invoke(app, ["offers", "DeepSeek-R1-Distill-Qwen-7B", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["offline"] is True and "no AWS credentials" in payload["notes"][0]
    offers = payload["offers"]
    prices = [o["hourly_usd"] for o in offers]
    assert prices == sorted(prices)
    assert (offers[0]["instance_type"], offers[0]["hourly_usd"]) == ("g6.xlarge", 0.8048)
    assert {o["region"] for o in offers} == {"us-east-1", "us-west-2"}
    assert "p5e.48xlarge" not in {o["instance_type"] for o in offers}  # unpriced
    assert all(o["price_as_of"] == "2026-07-20" and o["price_source"] for o in offers)


def test_the_fewest_nodes_per_type_and_precision_support_are_shown(no_credentials):
    payload = find_offers("DeepSeek-R1", "fp8", 8192, ["us-east-1"])
    shapes = [(o["instance_type"], o["nodes"]) for o in payload["offers"]]
    assert [t for t, _ in shapes] == R1
    assert ("p5en.48xlarge", 1) in shapes and ("p5.48xlarge", 2) in shapes
    assert {o["instance_type"]: o["precision_native"] for o in payload["offers"]}[
        "p4de.24xlarge"] is False  # A100: no FP8 tensor cores
    table = CliRunner().invoke(app, ["offers", "DeepSeek-R1", "-p", "fp8", "--region",
                                     "us-east-1"], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "1x p5en.48xlarge" in table.output and "63.30" in table.output
    assert "54.89 *" in table.output and "without hardware support" in table.output
    assert "offline" in table.output


def test_bad_input_is_one_line_exit_2(no_credentials):
    for args in (["offers", "DeepSeek-R1", "--region", "eu-west-1"],
                 ["offers", "DeepSeek-R1", "--precision", "fp4"],
                 ["offers", "DeepSeek-R1", "--context", "0"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def _stubbed_factory(spot_answers: dict[tuple[str, int], list[dict]]):
    quotas = boto3.client("service-quotas", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    q, e = Stubber(quotas), Stubber(ec2)
    # P family first (p4de is the cheapest offer): the account's own quota value.
    q.add_response("get_service_quota", {"Quota": {"ServiceCode": "ec2", "QuotaCode":
                                                   "L-417A185B", "Value": 384.0}},
                   {"ServiceCode": "ec2", "QuotaCode": "L-417A185B"})
    e.add_response("describe_instances", {"Reservations": []})
    # G family: neither the applied nor the default quota answers -> headroom unknown.
    q.add_client_error("get_service_quota", "NoSuchResourceException")
    q.add_client_error("get_aws_default_service_quota", "NoSuchResourceException")
    for itype, nodes in sorted({(t, n) for t, n in spot_answers}):
        scores = spot_answers[(itype, nodes)]
        if scores is None:
            e.add_client_error("get_spot_placement_scores", "UnauthorizedOperation")
        else:
            e.add_response("get_spot_placement_scores", {"SpotPlacementScores": scores},
                           {"InstanceTypes": [itype], "TargetCapacity": nodes,
                            "TargetCapacityUnitType": "units", "SingleAvailabilityZone": False,
                            "RegionNames": ["us-east-1"]})
    q.activate()
    e.activate()
    return (lambda service, region=None: quotas if service == "service-quotas" else ec2), q, e


def test_with_credentials_quota_headroom_and_spot_scores_are_added():
    answers = {("g5.48xlarge", 5): [{"Region": "us-east-1", "Score": 3}],
               ("p4d.24xlarge", 3): None,  # AWS declines: no score, no failure
               ("p4de.24xlarge", 2): [{"Region": "us-east-1", "Score": 1}],
               ("p5.48xlarge", 2): [{"Region": "us-east-1", "Score": 9}],
               ("p5en.48xlarge", 1): [{"Region": "us-east-1", "Score": 2}],
               ("p6-b200.48xlarge", 1): [{"Region": "us-east-1", "Score": 1}]}
    factory, q, e = _stubbed_factory(answers)
    payload = find_offers("DeepSeek-R1", "fp8", 8192, ["us-east-1"], factory=factory)
    q.assert_no_pending_responses()
    e.assert_no_pending_responses()
    by_type = {o["instance_type"]: o for o in payload["offers"]}
    assert payload["offline"] is False
    assert by_type["p5.48xlarge"]["spot_placement_score"] == 9
    assert by_type["p4d.24xlarge"]["spot_placement_score"] is None
    p5 = by_type["p5.48xlarge"]
    assert (p5["quota_headroom_vcpus"], p5["vcpus_needed"], p5["quota_ok"]) == (384.0, 384, True)
    assert by_type["p4d.24xlarge"]["quota_ok"] is True  # 3 x 96 = 288 <= 384
    assert by_type["g5.48xlarge"]["quota_ok"] is None  # Service Quotas did not answer
    assert any("quota headroom unknown" in n for n in payload["notes"])


def test_offers_carry_the_cached_spot_price_for_all_nodes_with_its_date(aws):
    from datetime import date, datetime, timezone

    from dsinfra.catalog import Price
    from dsinfra.cloud.aws import client
    from dsinfra.cloud.catalog_cache import fetch_spot

    # As `dsinfra catalog refresh` caches them: moto's spot price history, highest zone.
    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    found = fetch_spot(client("ec2", "us-east-1"), ["g6.xlarge", "g5.xlarge"], now)
    assert found, "moto answers DescribeSpotPriceHistory"
    cached = {("us-east-1", t): Price(usd, "hour", date(2026, 11, 30), "spot history")
              for t, usd in found.items()}
    result = find_offers("DeepSeek-R1-Distill-Qwen-7B", "bf16", 8192, ["us-east-1"],
                         spot_prices=cached)
    by_type = {(o["instance_type"], o["nodes"]): o for o in result["offers"]}
    for itype, usd in found.items():
        offer = next(o for (t, _n), o in by_type.items() if t == itype)
        assert offer["spot_hourly_usd"] == pytest.approx(usd * offer["nodes"], abs=1e-4)
        assert offer["spot_as_of"] == "2026-11-30"
    uncached = [o for o in result["offers"] if o["instance_type"] not in found]
    assert uncached and all(o["spot_hourly_usd"] is None for o in uncached)
