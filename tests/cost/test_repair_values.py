"""Issue 23 item 3: `cost repair` rebuilds spend from AWS, not from the audit log.

The moto server's clock stands 30 hours back (tests/moto_contracts.py freeze_clock), so the
stack's instance and volumes were launched and created 30 hours ago by AWS's own times, and
what AWS shows is about 30 hours of a g5.2xlarge. Every hostile audit value repair accepts
(spend 0, a cent, a month's 0, at times AWS allows) leaves the repaired spend at or above
that; a spend AWS no longer shows (an instance terminated before) comes from the log; every
value AWS could not have produced (negative, NaN, infinite, in the future, before the stack's
first resource, or written by a dry-run with --now a year ahead) is refused in one line, exit
2, the ledger left as it was."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from dsinfra.catalog import on_demand_price
from dsinfra.cli.main import app

from .conftest import make_stack

runner = CliRunner()
NOW = datetime.now(timezone.utc).replace(microsecond=0)
LAUNCHED = NOW - timedelta(hours=30)
G5 = on_demand_price("us-east-1", "g5.2xlarge").usd  # the bundled catalog's price


@pytest.fixture(scope="module")
def past_moto_url():
    from motoserver import moto_server

    yield from moto_server("127.0.0.1", frozen_at=LAUNCHED.replace(tzinfo=None).isoformat())


@pytest.fixture
def past(past_moto_url, state_dir, monkeypatch, tmp_path):
    from motoserver import point_boto3_at, reset

    point_boto3_at(past_moto_url, monkeypatch)
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    monkeypatch.chdir(tmp_path)
    yield
    reset(past_moto_url)


def _aws_floor(ids: list[str]) -> float:
    """Compute alone, from AWS's launch times and the catalog's price: what AWS shows at
    least (volumes and the public IPv4 come on top)."""
    from dsinfra.cloud.aws import client

    pages = client("ec2", "us-east-1").describe_instances(InstanceIds=ids)["Reservations"]
    launched = [i["LaunchTime"] for r in pages for i in r["Instances"]]
    assert all(abs(t - LAUNCHED) < timedelta(seconds=2) for t in launched), launched
    return sum((datetime.now(timezone.utc) - t).total_seconds() / 3600 * G5 for t in launched)


def _check_spend(stack: str) -> float:
    out = runner.invoke(app, ["cost", "check", "--json"])
    assert out.exit_code == 0, out.output
    return {s["stack"]: s for s in json.loads(out.stdout)["stacks"]}[stack]["spend_usd"]


def _lose_ledger(state_dir) -> None:
    (state_dir / "ledger.sqlite3").write_bytes(b"\x00not SQLite" * 100)
    for suffix in ("-wal", "-shm"):
        state_dir.joinpath("ledger.sqlite3" + suffix).unlink(missing_ok=True)


def _forge(stack: str, spend, at: datetime, period: str = "total") -> None:
    from dsinfra.ops.local import audit_log

    audit_log().append("decision", stack=stack, status="ok", spend_usd=spend, period=period,
                       checked_at=at.isoformat())


@pytest.mark.parametrize("spend,at,period", [
    (0.0, NOW - timedelta(hours=1), "total"),
    (0.01, LAUNCHED, "total"),
    (0, NOW - timedelta(minutes=1), "month"),
    (3.0, NOW, "total"),
], ids=["zero-an-hour-ago", "a-cent-at-launch", "month-zero", "three-dollars-now"])
def test_low_log_values_never_lower_spend_below_what_aws_shows(past, state_dir, spend, at,
                                                               period):
    made = make_stack("five", budget_usd=5, period="total", on_exceed="notify")
    honest = _check_spend("five")  # the ledger metered from AWS's launch time
    assert honest >= _aws_floor(made["instances"]) * 0.999
    _forge("five", spend, at, period)
    _lose_ledger(state_dir)
    out = runner.invoke(app, ["cost", "repair", "--json"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)["spend_usd"]["five"]
    # the log adds at most what it claims beyond AWS's own figure by then, never subtracts
    assert 0 <= body["from_audit_log_usd"] <= spend, body
    floor = _aws_floor(made["instances"])
    repaired = _check_spend("five")
    assert repaired >= floor and repaired >= honest, (repaired, floor, honest)
    assert repaired < floor + 0.5  # volumes and the IPv4 for 30 h, not a second stack's worth


def test_spend_aws_no_longer_shows_comes_from_the_log(past, state_dir):
    """An instance terminated before the ledger was lost: AWS lists it no more, the last
    decision's spend still holds it, and repair keeps exactly the part AWS cannot show."""
    from dsinfra.cloud.aws import client

    made = make_stack("churn", nodes=2, budget_usd=500, period="total")
    client("ec2", "us-east-1").terminate_instances(InstanceIds=made["instances"][1:])
    live = made["instances"][:1]
    decided_at = NOW - timedelta(hours=1)
    # what the log knew an hour ago: both nodes ran 29 hours
    logged = 2 * 29 * G5
    _forge("churn", round(logged, 4), decided_at)
    _lose_ledger(state_dir)
    out = runner.invoke(app, ["cost", "repair", "--json"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)["spend_usd"]["churn"]
    # the terminated node's 29 hours (less the live node's volume and IPv4, which AWS shows)
    assert 29 * G5 - 0.5 < body["from_audit_log_usd"] <= 29 * G5, body
    repaired = _check_spend("churn")
    assert repaired >= _aws_floor(live) + 29 * G5 - 0.5
    assert repaired >= logged  # and never below what the log proved, either


def test_a_stack_the_log_never_decided_on_is_metered_from_its_launch_time(past, state_dir):
    made = make_stack("fresh", budget_usd=5, period="total")
    out = runner.invoke(app, ["cost", "repair", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["spend_usd"]["fresh"]["from_audit_log_usd"] == 0
    floor = _aws_floor(made["instances"])
    assert floor <= _check_spend("fresh") < floor + 0.5


@pytest.mark.parametrize("spend,at,named", [
    (-5.0, NOW - timedelta(hours=1), "spend_usd=-5.0"),
    ("nan", NOW - timedelta(hours=1), "spend_usd='nan'"),
    (float("nan"), NOW - timedelta(hours=1), "spend_usd=nan"),
    ("inf", NOW - timedelta(hours=1), "spend_usd='inf'"),
    (True, NOW - timedelta(hours=1), "spend_usd=True"),
    (1.0, NOW + timedelta(days=365), "checked_at="),
    (1.0, LAUNCHED - timedelta(hours=10), "the stack's first resource"),
], ids=["negative", "nan-text", "nan", "inf", "bool", "future", "before-creation"])
def test_repair_refuses_values_aws_could_not_have_produced(past, state_dir, spend, at, named):
    make_stack("five", budget_usd=5, period="total")
    _check_spend("five")
    _forge("five", spend, at)
    _lose_ledger(state_dir)
    before = (state_dir / "ledger.sqlite3").read_bytes()
    out = runner.invoke(app, ["cost", "repair"])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert lines[0].startswith("error: ") and named in lines[0] and len(lines) <= 2, out.output
    assert "Traceback" not in out.output
    assert (state_dir / "ledger.sqlite3").read_bytes() == before


def test_a_dry_run_a_year_ahead_is_refused_not_believed(past, state_dir):
    """The issue's case: `cost check --now` a year ahead writes a decision dated then (a
    year's spend); repair refuses it by name instead of metering from a year ahead."""
    make_stack("five", budget_usd=5, period="total")
    ahead = (NOW + timedelta(days=365)).isoformat()
    dry = runner.invoke(app, ["cost", "check", "--json", "--now", ahead])
    assert dry.exit_code == 0, dry.output
    _lose_ledger(state_dir)
    out = runner.invoke(app, ["cost", "repair"])
    assert out.exit_code == 2, out.output
    assert "checked_at=" in out.output and "no later than now" in out.output, out.output
