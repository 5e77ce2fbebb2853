"""Scheduling files, the price refresh (Pricing API is not in moto: botocore Stubber with
responses recorded in the Pricing API's documented shape), and the audit log's durability."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

runner = CliRunner()


@pytest.fixture
def schedule_dirs(tmp_path, monkeypatch, aws, state_dir):
    units, crontab = tmp_path / "units", tmp_path / "crontab"
    crontab.write_text("0 3 * * * /usr/bin/backup # someone else's job\n")
    monkeypatch.setenv("DSINFRA_SYSTEMD_DIR", str(units))
    monkeypatch.setenv("DSINFRA_CRONTAB_FILE", str(crontab))
    monkeypatch.setenv("DSINFRA_ENV_FILE", str(tmp_path / "env"))
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    return units, crontab


def test_schedule_install_writes_a_systemd_timer_and_show_reads_it_back(schedule_dirs,
                                                                       tmp_path, state_dir):
    units, _ = schedule_dirs
    out = runner.invoke(app, ["schedule", "install", "--every", "15m", "--enforce"])
    assert out.exit_code == 0, out.output
    assert "first run: ok" in out.output
    timer = (units / "dsinfra-cost-check.timer").read_text()
    service = (units / "dsinfra-cost-check.service").read_text()
    assert "OnCalendar=*:0/15" in timer and "Persistent=true" in timer
    assert "cost check --all --json --enforce" in service
    assert f"EnvironmentFile={tmp_path / 'env'}" in service
    assert "TimeoutStartSec=450" in service
    env = (tmp_path / "env").read_text()
    assert f"DSINFRA_STATE_DIR='{state_dir}'" in env and "DSINFRA_REGIONS='us-east-1'" in env
    assert "DSINFRA_CHECK_INTERVAL_S='900'" in env and "AWS_ENDPOINT_URL=" in env
    assert oct((tmp_path / "env").stat().st_mode & 0o777) == "0o600"
    shown = json.loads(runner.invoke(app, ["schedule", "show", "--json"]).stdout)
    assert shown["systemd"][str(units / "dsinfra-cost-check.timer")] == timer
    runner.invoke(app, ["schedule", "remove"])
    assert not list(units.iterdir())


def test_schedule_cron_adds_one_entry_and_keeps_other_jobs(schedule_dirs):
    _, crontab = schedule_dirs
    for _ in range(2):  # installing twice replaces, never duplicates
        out = runner.invoke(app, ["schedule", "install", "--cron", "--every", "2h"])
        assert out.exit_code == 0, out.output
    lines = crontab.read_text().splitlines()
    ours = [l for l in lines if "dsinfra-cost-check" in l]
    assert len(ours) == 1 and ours[0].startswith("0 */2 * * * ")
    assert "cost-check.log 2>&1" in ours[0] and "/dev/null" not in ours[0]
    assert "--enforce" not in ours[0]  # dry run unless asked
    assert "someone else's job" in lines[0]
    assert json.loads(runner.invoke(app, ["schedule", "show", "--json"]).stdout)["cron"] == ours[0]
    runner.invoke(app, ["schedule", "remove"])
    assert crontab.read_text().splitlines() == [lines[0]]


def test_schedule_install_fails_loudly_when_the_first_run_fails(schedule_dirs, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    out = runner.invoke(app, ["schedule", "install", "--cron"])
    assert out.exit_code == 3
    assert "first run failed" in out.output and "cost-check.log" in out.output


def test_a_percent_in_the_state_dir_is_escaped_for_cron_and_still_runs(schedule_dirs,
                                                                      monkeypatch, tmp_path):
    _, crontab = schedule_dirs
    odd = tmp_path / "50%_off"
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(odd))
    out = runner.invoke(app, ["schedule", "install", "--cron"])
    assert out.exit_code == 0, out.output
    line = [l for l in crontab.read_text().splitlines() if "dsinfra-cost-check" in l][0]
    assert "50\\%_off/cost-check.log" in line and "50%_off" not in line.replace("\\%", "")
    assert json.loads((odd / "cost-check.log").read_text())["ok"] is True  # the first run


def test_systemd_specifiers_and_variables_are_escaped():
    from dsinfra.schedule import systemd_exec

    assert systemd_exec(["/opt/50%/python", "$HOME"]) == "/opt/50%%/python '$$HOME'"


def test_a_bad_webhook_url_is_refused_before_anything_is_installed(schedule_dirs, monkeypatch):
    units, _ = schedule_dirs
    monkeypatch.setenv("DSINFRA_WEBHOOK_URL", "hooks.example.com/SECRET")
    out = runner.invoke(app, ["schedule", "install"])
    assert out.exit_code == 2 and "SECRET" not in out.output
    assert not units.exists()


def _price_item(instance_type: str, usd: str) -> str:
    return json.dumps({
        "product": {"attributes": {"instanceType": instance_type, "regionCode": "us-east-1"}},
        "terms": {"OnDemand": {"SKU.JRTCKXETXF": {"priceDimensions": {"SKU.JRTCKXETXF.6YS6EN2CT7": {
            "unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}}})


def test_catalog_refresh_caches_dated_prices_that_the_check_then_uses(tmp_path):
    import boto3
    from botocore.stub import Stubber

    from dsinfra import spend as S
    from dsinfra.catalog import INSTANCE_SPECS
    from dsinfra.cloud.catalog_cache import load_cached_prices, on_demand_filters, refresh

    now = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    with Stubber(pricing) as p, Stubber(ec2) as e:
        for itype in sorted(INSTANCE_SPECS):
            usd = "50.0000000000" if itype == "p5.48xlarge" else "1.0000000000"
            p.add_response("get_products", {"PriceList": [_price_item(itype, usd)],
                                            "FormatVersion": "aws_v1"},
                           {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1",
                            "Filters": on_demand_filters("us-east-1", itype)})
        e.add_response("describe_spot_price_history", {"SpotPriceHistory": [
            {"InstanceType": "p5.48xlarge", "SpotPrice": "18.5", "AvailabilityZone": "us-east-1a",
             "ProductDescription": "Linux/UNIX", "Timestamp": now},
            {"InstanceType": "p5.48xlarge", "SpotPrice": "21.0", "AvailabilityZone": "us-east-1b",
             "ProductDescription": "Linux/UNIX", "Timestamp": now}]})
        refresh(["us-east-1"], tmp_path, now=now, pricing=pricing, ec2_for=lambda r: ec2)
    prices, spot = load_cached_prices(tmp_path)
    on_demand = prices["us-east-1"].on_demand_hourly["p5.48xlarge"]
    assert (on_demand.usd, on_demand.as_of.isoformat()) == (50.0, "2026-11-28")
    assert "Pricing API" in on_demand.source
    assert spot[("us-east-1", "p5.48xlarge")].usd == 21.0  # the highest AZ
    node = S.Resource("instance", "i-1", "us-east-1", "s", {}, "running", now,
                      {"instance_type": "p5.48xlarge", "lifecycle": "spot"})
    assert S.resource_hourly_price(node, prices, spot).usd == 21.0


def test_a_torn_audit_record_is_never_read_as_valid(tmp_path):
    from dsinfra.cloud.audit import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("intent", stack="s", action="destroy", intent_id="1")
    whole = (tmp_path / "audit.jsonl").read_bytes()
    log.append("result", stack="s", action="destroy", intent_id="1", result="done")
    full = (tmp_path / "audit.jsonl").read_bytes()
    second = full[len(whole):]
    for cut in range(1, len(second)):  # a crash after any byte of the second record
        (tmp_path / "audit.jsonl").write_bytes(whole + second[:cut])
        records, torn = log.records()
        assert [r["kind"] for r in records] == ["intent"] and torn == 1
    (tmp_path / "audit.jsonl").write_bytes(whole + second[:len(second) // 2])
    log.append("result", stack="s", action="destroy", intent_id="1", result="done")
    records, torn = log.records()  # the next append fences the torn tail off, never merges
    assert [r["kind"] for r in records] == ["intent", "result"] and torn == 1
    # A line that parses as JSON but was altered fails its checksum.
    tampered = second.replace(b'"done"', b'"fail"')
    (tmp_path / "audit.jsonl").write_bytes(whole + tampered)
    assert [r["kind"] for r in log.records()[0]] == ["intent"]
    assert oct(os.stat(tmp_path / "audit.jsonl").st_mode & 0o777) == "0o600"


def test_cost_explorer_reconciliation_groups_billed_cost_by_stack_tag():
    """Cost Explorer answers are stubbed (botocore Stubber): moto's CE returns fixed data."""
    import boto3
    from botocore.stub import Stubber

    from dsinfra.cloud.billing import reconcile

    ce = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x")
    now = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
    group = lambda key, usd: {"Keys": [key], "Metrics": {"UnblendedCost": {"Amount": usd,
                                                                          "Unit": "USD"}}}
    with Stubber(ce) as stub:
        stub.add_response("get_cost_and_usage", {"ResultsByTime": [{
            "TimePeriod": {"Start": "2026-11-01", "End": "2026-11-29"}, "Estimated": True,
            "Groups": [group("dsinfra:stack$dev", "41.5"), group("dsinfra:stack$", "9.0")]}],
            "NextPageToken": "p2"},
            {"TimePeriod": {"Start": "2026-11-01", "End": "2026-11-29"},
             "Granularity": "MONTHLY", "Metrics": ["UnblendedCost"],
             "GroupBy": [{"Type": "TAG", "Key": "dsinfra:stack"}]})
        stub.add_response("get_cost_and_usage", {"ResultsByTime": [{
            "TimePeriod": {"Start": "2026-11-01", "End": "2026-11-29"}, "Estimated": True,
            "Groups": [group("dsinfra:stack$dev", "0.5")]}]})
        stacks = [{"stack": "dev"}, {"stack": "prod"}]
        reconcile(stacks, now, ce)
    assert stacks == [{"stack": "dev", "billed_usd": 42.0}, {"stack": "prod", "billed_usd": 0.0}]


@pytest.fixture
def few_attempts(aws, monkeypatch):
    """The Pricing API answers HTTP 500 with Werkzeug's HTML error page (a real HTTP proxy in
    front of moto: tests/cost/proxy.py), with four attempts (three retries) instead of
    dsinfra's nine: each failed GetProducts is still retried and shown, without ~6 s of
    botocore's backoff per test."""
    from motoserver import point_boto3_at

    from .proxy import SERVER_ERROR_PAGE, FaultProxy

    front = FaultProxy(aws)
    front.html = {("us-east-1", "pricing")}
    front.page, front.page_type, front.page_status = SERVER_ERROR_PAGE, \
        "text/html; charset=utf-8", 500
    point_boto3_at(front.url, monkeypatch)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    yield front
    front.close()


def test_catalog_refresh_failure_is_one_line_without_the_html_page(aws, state_dir, few_attempts):
    """GetProducts answered with HTTP 500 and Werkzeug's HTML error page (what moto's server
    sent for it), which botocore put into the error message."""
    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["catalog", "refresh", "--region", "us-east-1"])
    assert result.exit_code == 3
    retrying, first, *rest = result.stderr.splitlines()
    attempts = re.search(r"\((\d+) attempts\)", first).group(1)  # botocore's own count
    assert retrying == f"GetProducts failed; retrying (up to {attempts} attempts)"
    assert first.startswith("error: price refresh failed: GetProducts failed, HTTP 500")
    assert "HTML page" in first and "<" not in first
    assert rest == ["The bundled snapshot stays in use; check credentials (pricing:GetProducts) "
                    "and retry."]


def test_catalog_refresh_retries_are_quiet_under_json(aws, state_dir, few_attempts):
    import json

    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["catalog", "refresh", "--region", "us-east-1", "--json"])
    assert result.exit_code == 3
    assert "retry" not in result.stderr.splitlines()[0]
    assert json.loads(result.stdout)["exit_status"] == 3


def test_catalog_refresh_shows_its_retries_on_a_terminal(aws, state_dir, few_attempts):
    """A real pseudo-terminal: rich's spinner on stderr names the failing call and the retry
    count while botocore backs off, instead of ~9 s of silence."""
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    main, child = pty.openpty()
    dsinfra = str(Path(sys.executable).with_name("dsinfra"))
    process = subprocess.Popen([dsinfra, "catalog", "refresh", "--region", "us-east-1"],
                               stdin=child, stdout=child, stderr=child, close_fds=True,
                               env={**os.environ, "TERM": "xterm", "COLUMNS": "80"})
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=60) == 3
    os.close(main)
    text = seen.decode(errors="replace")
    assert "reading prices for us-east-1 from the AWS Pricing API" in text
    retries = int(re.search(r"\((\d+) attempts\)", text).group(1)) - 1
    # The spinner redraws ~12 times a second: a retry that follows the one before within a
    # frame is not drawn (retry 1 often is not), so the test asks for retries counted against
    # botocore's own maximum, and for the last one, which stays on screen until the error.
    shown = {int(n) for n in re.findall(rf"GetProducts failed; retry (\d+) of {retries}", text)}
    assert shown and shown <= set(range(1, retries + 1)), text[-500:]
    assert f"retry {retries} of {retries}" in text
    assert "error: price refresh failed: GetProducts failed, HTTP 500" in text


def test_append_once_sees_records_other_writers_appended_since_and_skips_torn_ones(tmp_path):
    """append_once reads only what was appended since its last call (a large check wrote 300
    records and re-read the whole log for each), yet still sees every other writer's record."""
    from dsinfra.cloud.audit import AuditLog

    path = tmp_path / "audit.jsonl"
    mine, theirs = AuditLog(path), AuditLog(path)
    assert mine.append_once("result", intent_id="a") is not None
    assert mine.append_once("result", intent_id="a") is None
    theirs.append("result", intent_id="b")
    with open(path, "ab") as handle:
        handle.write(b'{"kind": "result", "intent_id": "c"')  # torn: no newline, no digest
    assert mine.append_once("result", intent_id="b") is None
    assert mine.append_once("result", intent_id="c") is not None  # the torn one never counts
    assert [r["intent_id"] for r in AuditLog(path).records()[0]] == ["a", "b", "c"]
    path.write_bytes(b"")  # moved aside and rebuilt (cost repair)
    assert mine.append_once("result", intent_id="a") is not None
