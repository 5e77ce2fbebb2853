"""Issue 12 on the moto server: every region, notices that are never lost or leaked, typos
that exit 2, and resume that refuses a stack still over its budget."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from dsinfra import tags as T
from dsinfra.cli.main import app

from .conftest import hours_later, make_stack
from .helpers import check, instance_states

runner = CliRunner()
SECRET = "T0SECRET/B0SECRET/xoxSECRETTOKEN"


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input)


@pytest.fixture(autouse=True)
def _here(monkeypatch, tmp_path):
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1,us-west-2,eu-west-1")
    monkeypatch.chdir(tmp_path)


class Receiver:
    """A loopback webhook answering each POST with the next status of ``statuses``."""

    def __init__(self, statuses=(200,)) -> None:
        self.bodies: list[bytes] = []
        self.statuses = list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_check_status_and_down_find_a_stack_in_a_region_nobody_configured(aws, state_dir,
                                                                        monkeypatch):
    """The one test that asks every region moto enables (about 30: slow, so all three
    commands share it); the others name three regions."""
    monkeypatch.delenv("DSINFRA_REGIONS")
    far = make_stack("faraway", region="eu-north-1", budget_usd=1, period="total",
                     on_exceed="destroy")
    out = invoke("cost", "check", "--enforce", "--json", "--now", hours_later(5).isoformat())
    body = json.loads(out.stdout)
    assert len(body["regions"]) > 10 and "eu-north-1" in body["regions"]
    assert body["regions_with_stacks"] == ["eu-north-1"]
    found = body["stacks"][0]
    assert found["stack"] == "faraway" and found["regions"] == ["eu-north-1"]
    # the catalog has no eu-north-1 prices: found, metered at an upper bound, loudly failed
    assert found["status"] == "failed" and "eu-north-1" in found["reason"]
    assert out.exit_code == 3
    status = json.loads(invoke("status", "--json", "--no-health").stdout)
    assert [s["stack"] for s in status["stacks"]] == ["faraway"]
    down = invoke("down", "faraway", "--yes", "--force")
    assert down.exit_code == 0, down.output
    assert f"will destroy instance {far['instances'][0]} (eu-north-1" in down.output
    assert "regions checked:" in down.output and "eu-north-1" in down.output
    assert set(instance_states(far["instances"], "eu-north-1").values()) == {"terminated"}


def test_check_and_down_act_in_every_listed_region(aws, state_dir):
    east = make_stack("dev", region="us-east-1", budget_usd=1, period="total", on_exceed="stop")
    west = make_stack("dev", region="us-west-2", budget_usd=1, period="total", on_exceed="stop")
    out = invoke("cost", "check", "--enforce", "--json", "--now", hours_later(5).isoformat())
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["stacks"][0]["regions"] == ["us-east-1", "us-west-2"]
    assert set(instance_states(west["instances"], "us-west-2").values()) == {"stopped"}
    out = invoke("down", "dev", "--yes")
    assert out.exit_code == 0, out.output
    assert f"will destroy instance {west['instances'][0]} (us-west-2" in out.output
    assert set(instance_states(east["instances"]).values()) == {"terminated"}
    assert set(instance_states(west["instances"], "us-west-2").values()) == {"terminated"}


def test_a_region_that_cannot_be_read_fails_the_check_loudly(aws, state_dir, monkeypatch):
    # Fault injection at our edge: moto cannot deny one region's tagging API, so the
    # region's call raises the ClientError AWS sends for a denied call; EC2 is denied there
    # too (issue 23: a region whose tagging API alone fails is read through EC2 instead).
    from botocore.exceptions import ClientError

    from dsinfra.cloud import regions

    real = regions.stacks_in_region

    def denied(region, stacks=None, **options):
        if region == "us-west-2":
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                              "GetResources")
        return real(region, stacks, **options)

    monkeypatch.setattr(regions, "stacks_in_region", denied)
    from dsinfra.ops import check as check_module

    real_fetch = check_module.fetch_inventory

    def ec2_denied(regions_, stacks=None, **kwargs):
        if "us-west-2" in regions_:
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}},
                              "DescribeInstances")
        return real_fetch(regions_, stacks, **kwargs)

    monkeypatch.setattr(check_module, "fetch_inventory", ec2_denied)
    made = make_stack("victim", budget_usd=1, period="total", on_exceed="destroy")
    out = invoke("cost", "check", "--enforce", "--json", "--now", hours_later(5).isoformat())
    assert out.exit_code == 3
    body = json.loads(out.stdout)
    assert set(body["region_errors"]) == {"us-west-2"}
    victim = body["stacks"][0]
    assert victim["status"] == "failed" and "us-west-2" in victim["reason"]
    assert set(instance_states(made["instances"]).values()) == {"running"}


@pytest.mark.parametrize("args", [("cost", "check", "--stack", "nope"), ("resume", "nope"),
                                  ("down", "nope", "--yes")])
def test_unknown_stack_names_exit_2_listing_the_known_ones(aws, state_dir, args):
    make_stack("real-one")
    out = invoke(*args)
    assert out.exit_code == 2, out.output
    assert "'nope'" in out.output and "real-one" in out.output


def test_resume_refuses_an_over_budget_stack_without_force(aws, state_dir):
    made = make_stack("spendy", budget_usd=1, period="total", on_exceed="stop")
    check(hours_later(5), enforce=True)  # stops it
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    refused = invoke("resume", "spendy", "--now", hours_later(5.1).isoformat())
    assert refused.exit_code == 2 and "exceeded" in refused.output and "--force" in refused.output
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    forced = invoke("resume", "spendy", "--force", "--json", "--now",
                    hours_later(5.1).isoformat())
    assert forced.exit_code == 0, forced.output
    assert set(instance_states(made["instances"]).values()) == {"running"}


@pytest.mark.parametrize("url", [f"hooks.slack.com/services/{SECRET}",
                                 f"ftp://example.com/{SECRET}", f"htps://x/{SECRET}"])
def test_a_bad_webhook_url_is_refused_at_the_door_without_printing_it(aws, state_dir,
                                                                     monkeypatch, url):
    monkeypatch.setenv("DSINFRA_WEBHOOK_URL", url)
    make_stack("quiet", budget_usd=1, period="total")
    out = invoke("cost", "check", "--enforce")
    assert out.exit_code == 2
    assert "DSINFRA_WEBHOOK_URL" in out.output and "Traceback" not in out.output
    assert "SECRET" not in out.output
    assert not state_dir.joinpath("audit.jsonl").exists()  # the check never started


def test_a_failed_send_releases_the_claim_and_the_next_run_retries(aws, state_dir,
                                                                  monkeypatch):
    receiver = Receiver(statuses=(500, 200))
    try:
        monkeypatch.setenv("DSINFRA_WEBHOOK_URL",
                           f"http://127.0.0.1:{receiver.port}/hooks/{SECRET}")
        make_stack("loud", budget_usd=1, period="total", on_exceed="notify")
        first = check(hours_later(5), enforce=True)["loud"]
        assert first["action_result"] == "failed" and "HTTP 500" in first["reason"]
        assert "SECRET" not in first["reason"]
        second = check(hours_later(6), enforce=True)["loud"]
        assert second["action_result"] == "done"
        assert len(receiver.bodies) == 2
    finally:
        receiver.close()


def test_a_send_that_crashes_releases_the_claim_and_leaks_nothing(aws, state_dir,
                                                                  monkeypatch, receiver):
    import urllib.request

    url = f"http://127.0.0.1:{receiver.port}/hooks/{SECRET}"
    monkeypatch.setenv("DSINFRA_WEBHOOK_URL", url)
    make_stack("crashy", budget_usd=1, period="total", on_exceed="notify")
    real = urllib.request.urlopen

    def crash(request, *a, **k):
        raise ValueError(f"unknown url type: {url}")  # what urllib says, URL included

    monkeypatch.setattr(urllib.request, "urlopen", crash)
    first = check(hours_later(5), enforce=True)["crashy"]
    assert first["action_result"] == "failed" and "SECRET" not in json.dumps(first)
    monkeypatch.setattr(urllib.request, "urlopen", real)
    assert check(hours_later(6), enforce=True)["crashy"]["action_result"] == "done"
    assert len(receiver.bodies) == 1


def test_notices_go_through_apprise_urls(aws, state_dir, monkeypatch, receiver):
    # apprise's json:// posts {"version", "title", "message", "type"} (apprise wiki,
    # Notify_Custom_JSON); the receiver is ours, so nothing here imitates a real service.
    monkeypatch.setenv("DSINFRA_WEBHOOK_URL", f"json://127.0.0.1:{receiver.port}/notify")
    make_stack("via-apprise", budget_usd=1, period="total", on_exceed="notify")
    result = check(hours_later(5), enforce=True)["via-apprise"]
    assert result["action_result"] == "done", result["reason"]
    sent = json.loads(receiver.bodies[0])
    assert "via-apprise" in sent["title"] and "exceeded" in sent["title"]
    assert "spend $" in sent["message"]


def test_bad_budget_tag_on_down_needs_force(aws, state_dir):
    from dsinfra.cloud.aws import client

    made = make_stack("mangled")
    client("ec2", "us-east-1").create_tags(Resources=made["instances"],
                                           Tags=[{"Key": T.PROTECT, "Value": "perhaps"}])
    assert invoke("down", "mangled", "--yes").exit_code == 2
    assert set(instance_states(made["instances"]).values()) == {"running"}


def test_a_region_whose_inventory_fails_fails_only_the_stacks_tagged_there(aws, state_dir,
                                                                           monkeypatch):
    # Fault injection at our edge (moto cannot deny one region's DescribeInstances): the
    # tagging API answered, so the check knows which stacks that region holds.
    from botocore.exceptions import ClientError

    from dsinfra.ops import check

    real = check.fetch_inventory

    def denied(regions, *args, **kwargs):
        if tuple(regions) == ("us-west-2",):
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}},
                              "DescribeInstances")
        return real(regions, *args, **kwargs)

    monkeypatch.setattr(check, "fetch_inventory", denied)
    make_stack("east-only", region="us-east-1", budget_usd=1000)
    west = make_stack("west-only", region="us-west-2", budget_usd=1, period="total",
                      on_exceed="destroy")
    result = {s["stack"]: s for s in json.loads(invoke(
        "cost", "check", "--enforce", "--json", "--now", hours_later(5).isoformat()).stdout)
        ["stacks"]}
    assert result["east-only"]["status"] == "ok"
    assert result["west-only"]["status"] == "failed"
    assert "us-west-2" in result["west-only"]["reason"]
    assert set(instance_states(west["instances"], "us-west-2").values()) == {"running"}


def test_a_failed_region_reports_every_stack_it_holds_not_only_discoverys_sample(
        aws, state_dir, monkeypatch):
    """The check asks the tagging API only whether a region holds anything (one page, not a
    second listing of every resource); when the region's inventory then fails, the full list
    of its stacks is read, so each one is reported failed (issue 23 item 9)."""
    from botocore.exceptions import ClientError

    from dsinfra.cloud import regions
    from dsinfra.ops import check as C

    asked = []

    def listing(region, stacks=None, *, complete=True):
        asked.append(complete)
        return {"alpha", "beta"} if complete else {"alpha"}

    def unreadable(*args, **kwargs):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}},
                          "DescribeInstances")

    monkeypatch.setattr(regions, "stacks_in_region", listing)
    monkeypatch.setattr(C, "fetch_inventory", unreadable)
    result = check(hours_later(1), enforce=True)
    assert set(result) == {"alpha", "beta"}
    assert {r["status"] for r in result.values()} == {"failed"}
    assert asked == [False, True]  # one sample, completed only for the failed region
