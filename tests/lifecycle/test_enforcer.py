"""Issue 22 item 4: `plan`, `up` and `status` name the enforcer covering a stack and when it
last ran, read from what the enforcer itself writes on each run: the guard's heartbeat item
(written here by the guard's own Lambda handler against the moto server's DynamoDB) and the
scheduled check's row in the local ledger (written by the check `schedule install` runs).
The clock is injected (``dsinfra.ops.enforcer.utcnow``, ``status --now``), never slept on."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

from .test_cli_up import edges, project  # noqa: F401 - fixtures

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def _region(monkeypatch):
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    monkeypatch.delenv("DSINFRA_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("DSINFRA_SNS_TOPIC_ARN", raising=False)


def _later(monkeypatch, minutes: float) -> datetime:
    """Move the enforcer views' clock (not the runs': they record the real time)."""
    moment = datetime.now(timezone.utc) + timedelta(minutes=minutes)
    monkeypatch.setattr("dsinfra.ops.enforcer.utcnow", lambda: moment)
    return moment


def _guard_runs(monkeypatch) -> dict:
    """One run of the guard's own Lambda handler against its table: it writes its heartbeat."""
    from dsinfra.cloud.guard_store import DynamoLedger
    from dsinfra.ops import guard_lambda

    from .fakes import create_guard_table

    create_guard_table("dsinfra-guard", "us-east-1")
    for key, value in {"DSINFRA_GUARD_TABLE": "dsinfra-guard", "DSINFRA_REGIONS": "us-east-1",
                       "DSINFRA_GUARD_ENFORCE": "true", "DSINFRA_CHECK_INTERVAL_S": "900",
                       "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    assert guard_lambda.handler({}, None)["ok"] is True
    for key in ("DSINFRA_GUARD_TABLE", "DSINFRA_GUARD_ENFORCE", "DSINFRA_CHECK_INTERVAL_S"):
        monkeypatch.delenv(key)
    return DynamoLedger("dsinfra-guard", "us-east-1").last_beat()


def _install_schedule(tmp_path, monkeypatch, *extra: str):
    monkeypatch.setenv("DSINFRA_CRONTAB_FILE", str(tmp_path / "crontab"))
    monkeypatch.setenv("DSINFRA_ENV_FILE", str(tmp_path / "env"))
    out = runner.invoke(app, ["schedule", "install", "--cron", "--every", "15m", *extra])
    assert out.exit_code == 0, out.output
    assert "first run: ok" in out.output


def _tagged_instance(stack: str = "t") -> None:
    """The stack as `up` leaves it in the account: a tagged instance the status finds."""
    from tests.cost.conftest import make_stack

    make_stack(stack, budget_usd=300, on_exceed="stop")


# --- the rule -------------------------------------------------------------------------

def test_run_state_judges_the_last_good_run_against_two_intervals():
    from dsinfra.ops.enforcer import run_state

    now = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)

    def beat(run_min: float, good_min: float | None) -> dict:
        good = None if good_min is None else (now - timedelta(minutes=good_min)).isoformat()
        return {"last_run": (now - timedelta(minutes=run_min)).isoformat(), "last_good": good,
                "interval_s": 900.0}

    assert run_state(None, now, 900) == ("not yet", "")
    assert run_state(beat(5, 5), now, None)[0] == "ok"
    assert run_state(beat(30, 30), now, None)[0] == "ok"  # exactly two intervals: still ok
    stale = run_state(beat(31, 31), now, None)
    assert stale[0] == "stale" and "more than two intervals (30 min)" in stale[1]
    assert run_state(beat(5, 45), now, None)[0] == "failing"  # runs, but none good lately
    assert run_state(beat(5, None), now, None)[0] == "failing"
    # never ran, deployed more than two intervals ago: stale, not "not yet"
    assert run_state(None, now, 900, since=now - timedelta(minutes=31))[0] == "stale"
    assert run_state(None, now, 900, since=now - timedelta(minutes=10))[0] == "not yet"


def test_enforcer_flags_are_checked_before_anything(project):
    bad = runner.invoke(app, ["up", "t", "--yes", "--enforcer", "cron"])
    assert bad.exit_code == 2 and "invalid value for --enforcer: 'cron'" in bad.output
    assert "allowed: guard, schedule, none" in bad.output
    both = runner.invoke(app, ["plan", "t", "--no-enforcer", "--enforcer", "guard"])
    assert both.exit_code == 2 and "--no-enforcer with --enforcer guard" in both.output


# --- the guard (default) ----------------------------------------------------------------

def test_up_deploying_a_new_guard_says_it_has_not_run_yet(edges):
    result = runner.invoke(app, ["up", "t", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    enforcer = json.loads(result.stdout)["enforcer"]
    assert (enforcer["kind"], enforcer["state"], enforcer["last_run"]) == ("guard", "not yet",
                                                                         None)
    assert (enforcer["table"], enforcer["home_region"]) == ("dsinfra-guard", "us-east-1")
    assert enforcer["account"] == "123456789012"  # deployed with these credentials
    text = runner.invoke(app, ["up", "t", "--yes"], env=WIDE)
    assert "last run not yet (first check within one interval)" in text.output


def test_up_plan_and_status_show_when_the_guard_last_ran(edges, monkeypatch):
    engine, _ = edges
    engine.guard.existing = {"regions": ["us-east-1"], "every_minutes": 15}
    beat = _guard_runs(monkeypatch)
    _tagged_instance()
    up = runner.invoke(app, ["up", "t", "--yes", "--json"])
    assert up.exit_code == 0, up.output
    enforcer = json.loads(up.stdout)["enforcer"]
    ran = datetime.fromisoformat(beat["last_run"]).replace(microsecond=0)
    assert enforcer["state"] == "ok" and not enforcer["stale"]
    assert datetime.fromisoformat(enforcer["last_run"].replace("Z", "+00:00")) == ran
    assert enforcer["account"] == "123456789012" and enforcer["enforce"] is True

    plan = json.loads(runner.invoke(app, ["plan", "t", "--json"]).stdout)["enforcer"]
    assert (plan["kind"], plan["state"], plan["last_run"]) == ("guard", "ok",
                                                               enforcer["last_run"])
    shown = runner.invoke(app, ["plan", "t"], env=WIDE)
    assert f"enforcer: guard dsinfra-guard-fn in us-east-1, every 15 min" in shown.output
    assert f"last run {enforcer['last_run']}" in shown.output
    assert "warning:" not in shown.output

    status = json.loads(runner.invoke(app, ["status", "--json", "--no-health"]).stdout)
    row = next(s for s in status["stacks"] if s["stack"] == "t")
    assert (row["enforcer_kind"], row["enforcer_state"], row["enforcer_last_run"]) == (
        "guard", "ok", enforcer["last_run"])
    assert status["warnings"] == []


def test_a_stale_guard_is_a_loud_warning_in_up_plan_and_status(edges, monkeypatch):
    engine, _ = edges
    engine.guard.existing = {"regions": ["us-east-1"], "every_minutes": 15}
    _guard_runs(monkeypatch)
    _tagged_instance()
    sent = []
    monkeypatch.setattr("dsinfra.ops.enforcer._notify", lambda subject, text: sent.append(text))
    later = _later(monkeypatch, 45)  # three intervals after the guard's last run
    up = runner.invoke(app, ["up", "t", "--yes", "--json"])
    assert up.exit_code == 0, up.output  # the guard was redeployed; up goes ahead, loudly
    enforcer = json.loads(up.stdout)["enforcer"]
    assert enforcer["state"] == "stale" and enforcer["stale"] and enforcer["loud"]
    assert "warning: enforcer stale" in up.output
    assert "more than two intervals (30 min) ago" in enforcer["warning"]
    assert sent and "enforcer stale" in sent[0]
    from dsinfra.ops.local import audit_log

    assert [r for r in audit_log().records()[0] if r["kind"] == "enforcer.stale"]

    plan = runner.invoke(app, ["plan", "t"], env=WIDE)
    assert "warning: enforcer stale" in plan.output
    status = json.loads(runner.invoke(app, ["status", "--json", "--no-health", "--now",
                                            later.isoformat()]).stdout)
    row = next(s for s in status["stacks"] if s["stack"] == "t")
    assert row["enforcer_state"] == "stale"
    assert any(w.startswith("stack t: enforcer stale") for w in status["warnings"])


def test_plan_before_any_guard_says_up_deploys_it_without_a_warning(project):
    out = runner.invoke(app, ["plan", "t", "--json"])
    assert out.exit_code == 0, out.output
    enforcer = json.loads(out.stdout)["enforcer"]
    assert (enforcer["kind"], enforcer["state"], enforcer["loud"]) == ("guard", "not deployed",
                                                                     False)
    text = runner.invoke(app, ["plan", "t"], env=WIDE)
    assert "enforcer: guard not deployed yet (`dsinfra up` deploys it in us-east-1" in \
        text.output
    assert "warning:" not in text.output


# --- --no-enforcer ----------------------------------------------------------------------

def test_no_enforcer_is_warned_in_plan_and_read_back_by_status_and_plan(edges, monkeypatch):
    monkeypatch.setattr("dsinfra.ops.enforcer._notify", lambda subject, text: None)
    planned = runner.invoke(app, ["plan", "t", "--no-enforcer", "--json"])
    assert planned.exit_code == 0
    assert json.loads(planned.stdout)["enforcer"]["kind"] == "none"
    assert "no enforcer: --no-enforcer was given" in \
        runner.invoke(app, ["plan", "t", "--no-enforcer"], env=WIDE).output

    _tagged_instance()
    up = runner.invoke(app, ["up", "t", "--yes", "--no-enforcer"], env=WIDE)
    assert up.exit_code == 0, up.output
    status = runner.invoke(app, ["status", "--json", "--no-health"])
    row = next(s for s in json.loads(status.stdout)["stacks"] if s["stack"] == "t")
    assert row["enforcer_kind"] == "none" and row["enforcer"]["no_enforcer_since"]
    assert any("stack t: no enforcer: stack t was brought up with --no-enforcer" in w
               for w in json.loads(status.stdout)["warnings"])
    text = runner.invoke(app, ["status", "--no-health"], env=WIDE)
    assert "warning: stack t: no enforcer" in text.output
    # plan, without the flag, still says the running stack has none
    plan = json.loads(runner.invoke(app, ["plan", "t", "--json"]).stdout)["enforcer"]
    assert plan["no_enforcer_since"] == row["enforcer"]["no_enforcer_since"] and plan["loud"]

    # a guard deployed since covers it: no warning any more
    deployed = runner.invoke(app, ["up", "t", "--yes", "--json"])
    assert deployed.exit_code == 0, deployed.output
    after = json.loads(runner.invoke(app, ["status", "--json", "--no-health"]).stdout)
    row = next(s for s in after["stacks"] if s["stack"] == "t")
    assert row["enforcer_kind"] == "guard" and row["enforcer"]["no_enforcer_since"] is None
    assert after["warnings"] == []


# --- the installed schedule (--enforcer schedule) ---------------------------------------

def test_up_refuses_a_schedule_that_never_ran(edges):
    engine, _ = edges
    out = runner.invoke(app, ["up", "t", "--yes", "--enforcer", "schedule"])
    assert out.exit_code == 2, out.output
    assert "no run of an installed schedule is recorded" in out.output
    assert "schedule install --enforce" in out.output and "nothing was created" in out.output
    assert engine.calls == [] and engine.guard.calls == []


def test_up_accepts_a_schedule_that_ran_and_refuses_it_once_stale(edges, tmp_path,
                                                                   monkeypatch):
    engine, _ = edges
    _install_schedule(tmp_path, monkeypatch, "--enforce")  # its first run is recorded
    _tagged_instance()
    up = runner.invoke(app, ["up", "t", "--yes", "--enforcer", "schedule", "--json"])
    assert up.exit_code == 0, up.output
    enforcer = json.loads(up.stdout)["enforcer"]
    assert (enforcer["kind"], enforcer["state"], enforcer["every_minutes"]) == (
        "schedule", "ok", 15)
    assert enforcer["regions"] == ["us-east-1"] and enforcer["account"] == "123456789012"
    assert engine.guard.calls == []  # the user's choice: no guard deployed
    shown = json.loads(runner.invoke(app, ["schedule", "show", "--json"]).stdout)
    assert shown["last_run"]["facts"] == {"account": "123456789012", "enforce": True,
                                          "regions": ["us-east-1"]}
    assert shown["last_run"]["interval_s"] == 900

    status = json.loads(runner.invoke(app, ["status", "--json", "--no-health"]).stdout)
    row = next(s for s in status["stacks"] if s["stack"] == "t")
    assert (row["enforcer_kind"], row["enforcer_last_run"]) == ("schedule",
                                                                enforcer["last_run"])
    plan = json.loads(runner.invoke(app, ["plan", "t", "--enforcer", "schedule",
                                          "--json"]).stdout)["enforcer"]
    assert plan["state"] == "ok" and plan["last_run"] == enforcer["last_run"]

    engine.calls.clear()
    later = _later(monkeypatch, 31)  # past two 15-minute intervals
    refused = runner.invoke(app, ["up", "t", "--yes", "--enforcer", "schedule"])
    assert refused.exit_code == 2, refused.output
    assert "enforcer stale" in refused.output and "(30 min)" in refused.output
    assert "nothing was created" in refused.output and "Traceback" not in refused.output
    assert engine.calls == [] and engine.guard.calls == []
    status = json.loads(runner.invoke(app, ["status", "--json", "--no-health", "--now",
                                            later.isoformat()]).stdout)
    assert any(w.startswith("stack t: enforcer stale") for w in status["warnings"])
    # the default path is still open: the guard is deployed instead
    assert runner.invoke(app, ["up", "t", "--yes"]).exit_code == 0
    assert ("up", "guard") in engine.guard.calls


def test_up_refuses_a_dry_run_schedule(edges, tmp_path, monkeypatch):
    engine, _ = edges
    _install_schedule(tmp_path, monkeypatch)  # without --enforce: it only meters
    out = runner.invoke(app, ["up", "t", "--yes", "--enforcer", "schedule"])
    assert out.exit_code == 2, out.output
    assert "dry run (installed without --enforce)" in out.output
    assert engine.calls == []


def test_a_check_run_by_hand_does_not_vouch_for_a_schedule(edges, monkeypatch):
    """Only the schedule's own runs (its env file sets the interval) write its row."""
    engine, _ = edges
    monkeypatch.delenv("DSINFRA_CHECK_INTERVAL_S", raising=False)
    assert runner.invoke(app, ["cost", "check", "--enforce"]).exit_code == 0
    out = runner.invoke(app, ["up", "t", "--yes", "--enforcer", "schedule"])
    assert out.exit_code == 2 and "no run of an installed schedule" in out.output
    assert engine.calls == []
