"""The budget commands through typer's CliRunner: JSON shapes, confirmation, exit statuses."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

from .conftest import hours_later, make_stack
from .helpers import billable, instance_states

runner = CliRunner()
CHECK_KEYS = {"stack", "tier", "budget_usd", "period", "spend_usd", "hourly_usd",
              "forecast_usd", "status", "action", "action_result", "reason"}


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input)


@pytest.fixture(autouse=True)
def _regions(monkeypatch, tmp_path):
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    monkeypatch.chdir(tmp_path)  # not a dsinfra project: no stack files, no Pulumi


def test_cost_check_json_has_the_documented_shape(aws, state_dir):
    make_stack("shape", budget_usd=1, period="total", on_exceed="stop")
    out = invoke("cost", "check", "--json", "--now", hours_later(3).isoformat())
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert set(body) >= {"checked_at", "stacks"}
    (stack,) = body["stacks"]
    assert CHECK_KEYS <= set(stack)
    assert (stack["status"], stack["action"], stack["action_result"]) == \
        ("exceeded", "stop", "dry-run")


def test_cost_check_with_no_reachable_aws_exits_3_without_traceback(state_dir, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    from dsinfra.cloud.aws import reset_session

    reset_session()
    out = invoke("cost", "check")
    assert out.exit_code == 3 and "Traceback" not in out.output
    assert "could not list" in out.output


@pytest.mark.parametrize("args, needle", [
    (["cost", "check", "--stack", "a", "--all"], "--stack and --all"),
    (["cost", "check", "--region", "mars-1"], "--region"),
    (["cost", "check", "--now", "soon"], "--now"),
    (["schedule", "install", "--every", "90m"], "--every"),
])
def test_bad_arguments_exit_2_naming_the_argument(args, needle, state_dir):
    out = invoke(*args)
    assert out.exit_code == 2 and needle in out.output and "Traceback" not in out.output


def test_report_shows_burn_series_and_time_left(aws, state_dir):
    make_stack("charted", budget_usd=100, period="total")
    out = invoke("cost", "report", "--json", "--now", hours_later(10).isoformat())
    (stack,) = json.loads(out.stdout)["stacks"]
    assert len(stack["burn_series_usd"]) == 24 and sum(stack["burn_series_usd"]) > 0
    assert stack["hours_left"] == pytest.approx((100 - stack["spend_usd"]) / stack["hourly_usd"], rel=1e-3)
    human = invoke("cost", "report", "--now", hours_later(10).isoformat())
    assert "charted" in human.stdout and "█" in human.stdout


def test_audit_json_lists_check_decisions(aws, state_dir):
    make_stack("logged", budget_usd=1, period="total", on_exceed="stop")
    invoke("cost", "check", "--enforce", "--now", hours_later(3).isoformat())
    body = json.loads(invoke("cost", "audit", "--json").stdout)
    kinds = [r["kind"] for r in body["records"]]
    assert kinds == ["intent", "result", "decision"] and body["skipped_torn_lines"] == 0


def test_down_asks_for_the_stack_name_and_refuses_a_mismatch(aws, state_dir, monkeypatch):
    made = make_stack("victim", eip=True, extra_volume_gib=50)
    monkeypatch.setattr("dsinfra.cli.confirm.stdin_is_terminal", lambda: True)  # typed below
    refused = invoke("down", "victim", input="vict\n")
    assert refused.exit_code == 2 and "nothing was destroyed" in refused.output
    assert set(instance_states(made["instances"]).values()) == {"running"}
    done = invoke("down", "victim", "--json", input="victim\n")
    assert done.exit_code == 0, done.output
    assert billable("victim") == []
    assert "nothing billable with dsinfra:stack=victim remains" in done.stdout


def test_down_refuses_a_protected_stack_without_force(aws, state_dir):
    made = make_stack("crown", protect=True)
    refused = invoke("down", "crown", "--yes")
    assert refused.exit_code == 2 and "--force" in refused.output
    assert set(instance_states(made["instances"]).values()) == {"running"}
    assert invoke("down", "crown", "--yes", "--force").exit_code == 0
    assert billable("crown") == []


def test_status_lists_every_stack_found_by_tag(aws, state_dir):
    make_stack("alpha", nodes=2, budget_usd=500)
    make_stack("beta", budget_usd=500)
    out = invoke("status", "--json", "--now", hours_later(2).isoformat())
    rows = {s["stack"]: s for s in json.loads(out.stdout)["stacks"]}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"]["nodes"] == 2 and rows["alpha"]["state"] == "running"
    assert rows["alpha"]["uptime_h"] == pytest.approx(2, abs=0.1)
    assert rows["alpha"]["health"] == "skipped"  # no stack file here: no endpoint to probe


def test_resume_starts_stopped_instances(aws, state_dir):
    from dsinfra.cloud.aws import client

    made = make_stack("sleepy")
    client("ec2", "us-east-1").stop_instances(InstanceIds=made["instances"])
    out = invoke("resume", "sleepy", "--json")
    assert json.loads(out.stdout)["started"] == made["instances"]
    assert set(instance_states(made["instances"]).values()) == {"running"}


def test_cost_check_table_says_dry_run_and_the_price_date(aws, state_dir):
    make_stack("tabled", budget_usd=1, period="total", on_exceed="destroy")
    out = invoke("cost", "check", "--now", hours_later(3).isoformat())
    assert out.exit_code == 0, out.output
    assert "dry run (add --enforce to act)" in out.stdout
    assert "tabled: spend $" in out.stdout and "onExceed destroy" in out.stdout
    assert "prices as of 2026-07-20" in out.stdout


def test_stop_keeps_volumes_is_audited_and_start_wakes_the_stack(aws, state_dir):
    made = make_stack("napper")
    out = invoke("stop", "napper", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["stopped"] == made["instances"]
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    audit = invoke("cost", "audit", "--json")
    records = [r for r in json.loads(audit.stdout)["records"] if r.get("stack") == "napper"]
    assert [(r["kind"], r.get("action"), r.get("result")) for r in records] == \
        [("intent", "stop", None), ("result", "stop", "done")]
    again = invoke("stop", "napper")
    assert again.exit_code == 0 and "no running instances" in again.stderr
    woke = invoke("start", "napper", "--json")
    assert woke.exit_code == 0, woke.output
    assert json.loads(woke.stdout)["started"] == made["instances"]
    assert set(instance_states(made["instances"]).values()) == {"running"}


def _one_time_spot(stack: str) -> str:
    from dsinfra.cloud.aws import client

    from .conftest import _spec, stack_tags

    tags = stack_tags(stack)
    out = client("ec2", "us-east-1").run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
        InstanceMarketOptions={"MarketType": "spot"},  # AWS's default: a one-time request
        TagSpecifications=[_spec("instance", tags), _spec("spot-instances-request", tags)])
    return out["Instances"][0]["InstanceId"]


def test_stop_refuses_one_time_spot_in_one_line_without_terminate_spot(aws, state_dir):
    spot = _one_time_spot("mixed")
    on_demand = make_stack("mixed")["instances"][0]
    out = invoke("stop", "mixed")
    assert out.exit_code == 2, out.output
    (line,) = out.stderr.strip().splitlines()
    assert spot in line and "one-time spot request" in line and "nothing was stopped" in line
    assert "--terminate-spot" in line and "Traceback" not in out.output
    assert instance_states([spot, on_demand]) == {spot: "running", on_demand: "running"}
    audit = json.loads(invoke("cost", "audit", "--json").stdout)["records"]
    assert [r for r in audit if r.get("stack") == "mixed"] == []  # nothing was done


def test_stop_with_terminate_spot_notifies_audits_then_terminates(aws, state_dir, webhook):
    spot = _one_time_spot("mixed")
    on_demand = make_stack("mixed")["instances"][0]
    out = invoke("stop", "mixed", "--terminate-spot", "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert (body["stopped"], body["terminated"], body["notice"]) == ([on_demand], [spot], "sent")
    assert instance_states([spot, on_demand]) == {spot: "terminated", on_demand: "stopped"}
    (notice,) = webhook.messages
    assert spot in notice["text"] and "terminates it now" in notice["text"]
    assert "--terminate-spot" in notice["text"]
    audit = json.loads(invoke("cost", "audit", "--json").stdout)["records"]
    mine = [r for r in audit if r.get("stack") == "mixed"]
    assert [r["kind"] for r in mine] == ["intent", "terminate-notice", "result"]
    assert mine[1]["instances"] == [spot] and mine[2]["result"] == "done"


def test_start_refuses_a_stack_over_budget_without_force(aws, state_dir):
    from .helpers import check

    made = make_stack("spendy", budget_usd=1, period="total", on_exceed="stop")
    check(hours_later(5), enforce=True)  # the budget rule stops it
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    refused = invoke("start", "spendy", "--now", hours_later(5.1).isoformat())
    assert refused.exit_code == 2 and "nothing was started" in refused.output
    assert "--force" in refused.output
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    forced = invoke("start", "spendy", "--force", "--now", hours_later(5.1).isoformat())
    assert forced.exit_code == 0, forced.output
    assert set(instance_states(made["instances"]).values()) == {"running"}


def test_status_never_probes_an_api_closed_to_this_machine(aws, state_dir, monkeypatch):
    """The shipped dev stack has no apiAllowedCidrs: its API answers only inside its VPC, so
    status says so instead of sending a GET to the node's (moto-assigned) public address."""
    from pathlib import Path

    from dsinfra.ops.status import UNREACHABLE, build_status

    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(Path(__file__).resolve().parents[2]))
    make_stack("dev")
    probed = []
    status = build_status(["us-east-1"], now=hours_later(1),
                          health=lambda url: probed.append(url) or "healthy")
    (row,) = [r for r in status["stacks"] if r["stack"] == "dev"]
    assert row["health"] == UNREACHABLE == "unreachable from here"
    assert row["endpoint"] is None and probed == []
    # With a probe inside SSH (the CLI's: ops/status.py ssh_health) that is what answers, and
    # still nothing goes to the public address.
    inside = []
    status = build_status(["us-east-1"], now=hours_later(1),
                          health=lambda url: probed.append(url) or "healthy",
                          closed_health=lambda stack: inside.append(stack) or "healthy (SSH)")
    (row,) = [r for r in status["stacks"] if r["stack"] == "dev"]
    assert row["health"] == "healthy (SSH)" and inside == ["dev"] and probed == []
