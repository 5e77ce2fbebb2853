"""Issue 23 item 3: `cost repair` refuses audit values AWS could not have produced (negative,
non-finite, future) with one line and exit 2, the ledger untouched; a stack the log never
decided on is metered from AWS's launch times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

from .conftest import make_stack
from .helpers import check

runner = CliRunner()
NOW = datetime.now(timezone.utc)


@pytest.mark.parametrize("spend,at,named", [
    (-5.0, NOW - timedelta(hours=1), "spend_usd=-5.0"),
    ("nan", NOW - timedelta(hours=1), "spend_usd='nan'"),
    ("inf", NOW - timedelta(hours=1), "spend_usd='inf'"),
    (1.0, NOW + timedelta(days=365), "checked_at="),
], ids=["negative", "nan", "inf", "future"])
def test_repair_refuses_values_aws_could_not_have_produced(aws, state_dir, monkeypatch,
                                                           tmp_path, spend, at, named):
    from dsinfra.ops.local import audit_log

    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    make_stack("five", budget_usd=5, period="total")
    check(NOW)
    ledger = state_dir / "ledger.sqlite3"
    before = ledger.read_bytes()
    audit_log().append("decision", stack="five", spend_usd=spend, checked_at=at.isoformat())
    out = runner.invoke(app, ["cost", "repair"])
    assert out.exit_code == 2, out.output
    assert named in out.output and len(out.output.strip().splitlines()) <= 2, out.output
    assert "Traceback" not in out.output
    assert ledger.read_bytes() == before


def test_a_stack_without_decisions_is_metered_from_its_launch_time(aws, state_dir,
                                                                    monkeypatch):
    from dsinfra.cloud.ledger import SqliteLedger

    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    made = make_stack("fresh", budget_usd=5, period="total")
    out = runner.invoke(app, ["cost", "repair", "--json"])
    assert out.exit_code == 0, out.output
    ledger = SqliteLedger(state_dir / "ledger.sqlite3")
    try:
        until = ledger.metered_until("fresh")
    finally:
        ledger.close()
    assert made["instances"][0] in until
    assert until[made["instances"][0]] <= datetime.now(timezone.utc)
