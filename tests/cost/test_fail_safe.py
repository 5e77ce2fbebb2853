"""Every gap in metering or enforcement is loud, never silent (issue 12), on the moto server:
unusable budget tags, unpriced types, hostile stack names, strict JSON."""

from __future__ import annotations

import json

import pytest

from dsinfra import tags as T
from dsinfra.ops.check import run_check
from dsinfra.ops.local import local_context

from .conftest import hours_later, make_stack
from .helpers import REGIONS, check, instance_states

# Values float() accepts or that are no number at all; each read as "within budget" before.
BAD_BUDGETS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "abc", "", "-5", " 5",
               "0x10", "1_000"]


def _retag(ids: list[str], key: str, value: str) -> None:
    from dsinfra.cloud.aws import client

    client("ec2", "us-east-1").create_tags(Resources=ids, Tags=[{"Key": key, "Value": value}])



@pytest.mark.parametrize("value", BAD_BUDGETS)
def test_unusable_budget_tag_fails_the_stack_and_never_destroys_it(aws, state_dir, value):
    made = make_stack("tagged", budget_usd=1, period="total", on_exceed="destroy")
    _retag(made["instances"], T.BUDGET_USD, value)
    result = check(hours_later(5), enforce=True)["tagged"]
    assert result["status"] == "failed"
    assert result["action"] == "notify"  # never stop/destroy on a bad tag
    assert T.BUDGET_USD in result["reason"] and made["instances"][0] in result["reason"]
    assert set(instance_states(made["instances"]).values()) == {"running"}
    # spend still accrues while the tag is broken: the GPU's hours are in the ledger
    assert result["spend_usd"] == 0.0 and result["hourly_usd"] > 1.0


@pytest.mark.parametrize("bad_first", [True, False], ids=["bad-tag-first", "bad-tag-last"])
def test_one_nan_tag_among_good_ones_fails_the_stack_whatever_the_order(aws, state_dir,
                                                                      bad_first):
    made = make_stack("mixed", nodes=3, budget_usd=1, period="total", on_exceed="stop")
    bad = made["instances"][0 if bad_first else -1]
    _retag([bad], T.BUDGET_USD, "nan")
    result = check(hours_later(5), enforce=True)["mixed"]
    assert result["status"] == "failed" and bad in result["reason"]
    assert set(instance_states(made["instances"]).values()) == {"running"}


@pytest.mark.parametrize("key,value", [(T.WARN_AT, "nan"), (T.WARN_AT, "inf"),
                                       (T.ON_EXCEED, "explode"), (T.PROTECT, "maybe"),
                                       (T.EXPIRES_AT, "tomorrow"), (T.BUDGET_PERIOD, "week")])
def test_other_unusable_budget_tags_fail_the_stack(aws, state_dir, key, value):
    made = make_stack("odd", budget_usd=1, period="total", on_exceed="destroy")
    _retag(made["instances"], key, value)
    result = check(hours_later(5), enforce=True)["odd"]
    assert result["status"] == "failed" and key in result["reason"]
    assert set(instance_states(made["instances"]).values()) == {"running"}


def test_failed_stack_is_notified_once_per_crossing(aws, state_dir, webhook):
    made = make_stack("noisy", budget_usd=1, period="total", on_exceed="destroy")
    _retag(made["instances"], T.BUDGET_USD, "abc")
    first = check(hours_later(5), enforce=True)["noisy"]
    second = check(hours_later(6), enforce=True)["noisy"]
    assert first["action_result"] == "done" and second["action_result"] == "skipped"
    assert len(webhook.messages) == 1
    assert "failed" in webhook.messages[0]["text"] and "abc" in webhook.messages[0]["text"]
    _retag(made["instances"], T.BUDGET_USD, "nan")  # a new cause is a new crossing
    check(hours_later(7), enforce=True)
    assert len(webhook.messages) == 2


def _pricing_stub(answers: dict[str, str | None]):
    """A Pricing API client answering GetProducts (moto has no Pricing service: Stubber, with
    the response shape of the AWS Pricing API reference, as in test_schedule_catalog_audit)."""
    import boto3
    from botocore.stub import Stubber

    from dsinfra.cloud.catalog_cache import on_demand_filters

    from .test_schedule_catalog_audit import _price_item

    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    stub = Stubber(pricing)
    for itype, usd in answers.items():
        stub.add_response("get_products", {
            "PriceList": [_price_item(itype, usd)] if usd else [], "FormatVersion": "aws_v1"},
            {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1",
             "Filters": on_demand_filters("us-east-1", itype)})
    stub.activate()
    return pricing, stub


def _check_with_pricing(pricing, now, enforce=True) -> dict:
    ctx = local_context(REGIONS, enforce=enforce, now=now, use_pulumi=False)
    ctx.pricing = pricing
    try:
        return {s["stack"]: s for s in run_check(ctx)["stacks"]}
    finally:
        ctx.ledger.close()


def test_type_missing_from_the_catalog_is_priced_by_the_pricing_api(aws, state_dir):
    # g4dn is not in the catalog (issue 17 added g6, so this test moved to g4dn)
    make_stack("newtype", instance_type="g4dn.xlarge", budget_usd=1000, period="total")
    pricing, stub = _pricing_stub({"g4dn.xlarge": "0.5260000000"})
    result = _check_with_pricing(pricing, hours_later(10))["newtype"]
    stub.assert_no_pending_responses()
    assert result["status"] == "ok"
    # the API's price (g4dn.xlarge's us-east-1 on-demand price in karpenter-provider-aws's
    # zz_generated.pricing_aws.go, 2026-07-20) plus moto's public IPv4 and root volume
    assert 0.52 < result["hourly_usd"] < 0.54
    assert 5.2 < result["spend_usd"] < 5.5


def test_type_nobody_prices_is_metered_at_the_family_upper_bound_and_fails(aws, state_dir):
    made = make_stack("mystery", instance_type="g4dn.xlarge", budget_usd=1, period="total",
                      on_exceed="destroy")
    pricing, _ = _pricing_stub({"g4dn.xlarge": None})
    result = _check_with_pricing(pricing, hours_later(10))["mystery"]
    assert result["status"] == "failed"
    assert "g4dn.xlarge" in result["reason"] and "upper bound" in result["reason"]
    # g6e.48xlarge, the G family's top since issue 17, plus the root volume
    assert result["hourly_usd"] == pytest.approx(30.13118, abs=0.002)
    assert result["spend_usd"] > 300
    assert set(instance_states(made["instances"]).values()) == {"running"}


@pytest.mark.parametrize("hostile", ["a" * 256, "../../../../tmp/evil", "x/y", ".", "..",
                                     "dev\ttab"])
def test_a_hostile_stack_name_does_not_stop_other_stacks(aws, state_dir, hostile):
    make_stack(hostile, budget_usd=1, period="total", on_exceed="stop")
    fine = make_stack("fine", budget_usd=1, period="total", on_exceed="stop")
    result = check(hours_later(5), enforce=True)
    assert result["fine"]["action_result"] == "done"
    assert result[hostile]["action_result"] == "done"
    assert set(instance_states(fine["instances"]).values()) == {"stopped"}
    locks = list((state_dir / "locks").iterdir())
    assert len(locks) == 2 and all(p.parent == state_dir / "locks" for p in locks)
    assert all(len(p.name) < 80 for p in locks)


def test_cost_check_json_is_strict_with_non_finite_tags(aws, state_dir, monkeypatch):
    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    made = make_stack("weird", budget_usd=1, period="total")
    _retag(made["instances"], T.BUDGET_USD, "inf")
    out = CliRunner().invoke(app, ["cost", "check", "--json", "--now",
                                   hours_later(5).isoformat()])
    assert out.exit_code == 3  # a stack could not be enforced: the check says so
    body = out.stdout

    def refuse(token):
        raise AssertionError(f"not JSON: {token}")

    parsed = json.loads(body, parse_constant=refuse)
    assert parsed["stacks"][0]["status"] == "failed" and parsed["ok"] is False
