"""Issue 23 item 2: a region whose services answer an HTML page (a captive proxy, an outage
page) in place of AWS's XML or JSON fails that region's stacks loudly, with a notice, and
every other stack is still checked and enforced. The page comes from a real HTTP proxy in
front of the moto server (tests/cost/proxy.py), by region and signing service."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app
from tests.motoserver import point_boto3_at

from .conftest import hours_later, make_stack
from .helpers import instance_states
from .proxy import FaultProxy

runner = CliRunner()


@pytest.fixture(autouse=True)
def _here(monkeypatch, tmp_path):
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1,us-west-2")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def proxy(aws, monkeypatch):
    front = FaultProxy(aws)
    point_boto3_at(front.url, monkeypatch)
    yield front
    front.close()


def _check(hours: float, *extra: str) -> tuple[int, dict]:
    out = runner.invoke(app, ["cost", "check", "--json", "--now",
                              hours_later(hours).isoformat(), *extra])
    assert out.stdout.startswith("{"), (out.exit_code, out.output[-2000:], out.exception)
    return out.exit_code, json.loads(out.stdout)


def _two_stacks() -> tuple[dict, dict]:
    east = make_stack("east", budget_usd=1, period="total", on_exceed="stop")
    west = make_stack("west", region="us-west-2", budget_usd=1, period="total",
                      on_exceed="destroy")
    return east, west


# A page botocore's parsers cannot read at all (ResponseParserError, which is not a
# BotoCoreError): cut-off XML sent as XML, as a proxy that drops the connection's tail would.
CUT_XML = (b'<?xml version="1.0" encoding="UTF-8"?><DescribeInstancesResponse><reservationSet>',
           "text/xml", "ResponseParserError")
HTML = (None, None, "HTML page")


@pytest.mark.parametrize("services,page", [(("ec2",), HTML), (("ec2", "tagging"), HTML),
                                           (("ec2",), CUT_XML)],
                         ids=["ec2-html", "ec2-and-tagging-html", "ec2-cut-xml"])
def test_an_html_region_fails_its_stacks_and_the_others_are_enforced(
        proxy, state_dir, webhook, services, page):
    east, west = _two_stacks()
    code, body = _check(0.01)  # an earlier good check: the ledger knows where each stack is
    assert code == 0 and {s["stack"] for s in body["stacks"]} == {"east", "west"}, body
    proxy.html = {("us-west-2", service) for service in services}
    body_bytes, content_type, named = page
    if body_bytes is not None:
        proxy.page, proxy.page_type = body_bytes, content_type
    code, body = _check(5, "--enforce")
    assert code == 3, body  # not a crash (1), and not ok
    assert named in body["region_errors"]["us-west-2"], body["region_errors"]
    by = {s["stack"]: s for s in body["stacks"]}
    assert by["west"]["status"] == "failed" and "us-west-2" in by["west"]["reason"]
    assert by["west"]["action"] == "notify" and by["west"]["action_result"] == "done"
    assert by["east"]["status"] == "exceeded" and by["east"]["action_result"] == "done"
    assert set(instance_states(east["instances"]).values()) == {"stopped"}
    proxy.html = set()
    assert set(instance_states(west["instances"], "us-west-2").values()) == {"running"}
    assert any("west" in json.dumps(m) for m in webhook.messages), webhook.messages


def test_tagging_api_html_alone_reads_the_region_through_ec2(proxy, state_dir, webhook):
    """An HTML page parses to an empty answer in botocore's JSON parser: the region must not
    read as empty. It is read through EC2 instead, and its expired stack is enforced."""
    east, west = _two_stacks()
    proxy.html = {("us-west-2", "tagging")}
    code, body = _check(5, "--enforce")
    by = {s["stack"]: s for s in body["stacks"]}
    assert by["west"]["status"] == "exceeded" and by["west"]["action_result"] == "done", body
    assert set(instance_states(west["instances"], "us-west-2").values()) == {"terminated"}
    assert set(instance_states(east["instances"]).values()) == {"stopped"}
    assert body["region_errors"] == {}


def test_on_a_first_check_an_unread_region_may_hold_any_stack(proxy, state_dir, webhook):
    """With no earlier check, nothing says where a stack is: every stack fails safe."""
    east, west = _two_stacks()
    proxy.html = {("us-west-2", "ec2"), ("us-west-2", "tagging")}
    code, body = _check(5, "--enforce")
    assert code == 3
    assert {s["stack"]: s["status"] for s in body["stacks"]} == {"east": "failed"}
    assert set(instance_states(east["instances"]).values()) == {"running"}
