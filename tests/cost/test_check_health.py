"""A scheduled check that stops, hangs or fails is seen (issue 12, item 4): heartbeats and
stale warnings, a deadline on hung endpoints, exit statuses."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

from .conftest import hours_later, make_stack
from .proxy import FaultProxy

runner = CliRunner()


@pytest.fixture(autouse=True)
def _regions(monkeypatch, tmp_path):
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    monkeypatch.chdir(tmp_path)


def test_status_and_report_warn_when_the_last_good_check_is_older_than_two_intervals(
        aws, state_dir, monkeypatch):
    make_stack("watched", budget_usd=1000)
    monkeypatch.setenv("DSINFRA_CHECK_INTERVAL_S", "900")  # what the schedule's env file sets
    assert runner.invoke(app, ["cost", "check"]).exit_code == 0
    fresh = json.loads(runner.invoke(app, ["status", "--json", "--no-health", "--now",
                                           hours_later(0.25).isoformat()]).stdout)
    assert fresh["warnings"] == []
    stale = json.loads(runner.invoke(app, ["status", "--json", "--no-health", "--now",
                                           hours_later(1).isoformat()]).stdout)
    assert "more than two intervals (30 min)" in stale["warnings"][0]
    report = runner.invoke(app, ["cost", "report", "--now", hours_later(1).isoformat()])
    assert "warning: the last good scheduled cost check" in report.output


def test_a_failed_check_does_not_count_as_good(aws, state_dir, monkeypatch):
    from dsinfra import tags as T
    from dsinfra.cloud.aws import client

    made = make_stack("broken", budget_usd=1000)
    client("ec2", "us-east-1").create_tags(Resources=made["instances"],
                                           Tags=[{"Key": T.BUDGET_USD, "Value": "nan"}])
    monkeypatch.setenv("DSINFRA_CHECK_INTERVAL_S", "900")
    assert runner.invoke(app, ["cost", "check"]).exit_code == 3
    status = json.loads(runner.invoke(app, ["status", "--json", "--no-health"]).stdout)
    assert "was never" in status["warnings"][0]


def test_a_hung_endpoint_is_cut_off_by_the_deadline_and_exits_3(aws, state_dir, monkeypatch):
    from dsinfra.cloud import aws as aws_edge

    proxy = FaultProxy(aws)
    try:
        proxy.rules["GetResources"] = ["hang"] * 20
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("DSINFRA_CHECK_DEADLINE_S", "2")
        monkeypatch.setattr(aws_edge, "READ_TIMEOUT_S", 1)
        aws_edge.reset_session()
        started = time.monotonic()
        out = runner.invoke(app, ["cost", "check", "--json"])
        elapsed = time.monotonic() - started
    finally:
        aws_edge.set_deadline(None)
        proxy.close()
    assert out.exit_code == 3
    assert elapsed < 15  # botocore's defaults would wait 8 x 60 s
    assert "us-east-1" in json.loads(out.stdout)["region_errors"]


def test_a_corrupt_ledger_is_one_line_exit_3_and_repair_rebuilds_it(aws, state_dir):
    make_stack("ledgered", budget_usd=50, period="total", on_exceed="stop")
    # A check at the real time: repair refuses a decision dated in the future (issue 23).
    first = runner.invoke(app, ["cost", "check", "--json"])
    before = json.loads(first.stdout)["stacks"][0]["spend_usd"]
    ledger = state_dir / "ledger.sqlite3"
    ledger.write_bytes(b"\x00garbage, not SQLite" * 100)
    for suffix in ("-wal", "-shm"):
        state_dir.joinpath("ledger.sqlite3" + suffix).unlink(missing_ok=True)
    broken = runner.invoke(app, ["cost", "check", "--now", hours_later(1).isoformat()])
    assert broken.exit_code == 3 and "Traceback" not in broken.output
    assert str(ledger) in broken.output and "dsinfra cost repair" in broken.output
    assert broken.output.startswith("error: ") and broken.output.count("error:") == 1
    repaired = runner.invoke(app, ["cost", "repair", "--json"])
    assert repaired.exit_code == 0, repaired.output
    body = json.loads(repaired.stdout)
    # all of it from AWS's launch time: nothing of this stack is beyond what AWS shows
    assert body["spend_usd"]["ledgered"]["from_audit_log_usd"] == 0, body
    assert body["spend_usd"]["ledgered"]["aws_usd"] >= before and body["corrupt_file_kept"]
    after = json.loads(runner.invoke(app, ["cost", "check", "--json", "--now",
                                           hours_later(1).isoformat()]).stdout)
    spend = after["stacks"][0]["spend_usd"]
    assert before < spend < before + 1.3 * 1.22  # one more hour of g5.2xlarge, not restarted


def test_a_check_that_cannot_read_aws_exits_3_and_tells_someone_once_a_day(state_dir,
                                                                          monkeypatch):
    from dsinfra.cloud.aws import reset_session

    from .helpers import WebhookReceiver

    receiver = WebhookReceiver()
    try:
        monkeypatch.setenv("DSINFRA_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        reset_session()
        for _ in range(2):
            out = runner.invoke(app, ["cost", "check", "--enforce"])
            assert out.exit_code == 3 and "Traceback" not in out.output
        assert len(receiver.messages) == 1
        assert "cannot read AWS" in receiver.messages[0]["text"]
    finally:
        receiver.close()
        reset_session()
