"""Issue 16 item 4 in a real terminal: `plan`, `status` and `cost report` run in tmux at 80x24
and 200x50, and the screens (capture-pane) match the snapshots in tests/fixtures/terminal/.
DSINFRA_UPDATE_SNAPSHOTS=1 rewrites them after a deliberate change of layout.

Normalised, because they vary per run and nothing else does: the report's generation time in
its title, and the security group ids Pulumi's mocks number per program run in the plan. The
stacks are made in a moto whose clock stands still at LAUNCHED (tests/motoserver.py), so both
stacks launch at that same instant however long the machine takes between them (a few seconds
apart on a loaded machine was a cent more of the dev stack's spend); they are read with
--now = LAUNCHED + 300 h and expire 400 h after launch (the forecast's horizon; without an
expiry it would be the end of the calendar month), so spend, uptime, forecast and time left
are the same on every run."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from terminal_screen import DSINFRA, matches_snapshot, normalise, screen

from .conftest import make_stack

PROJECT_DIR = Path(__file__).resolve().parents[2]
SIZES = [(80, 24), (200, 50)]
MOCK_IDS = [(r"sg-[0-9a-f]{17}", "sg-<mock id>")]
TIMES = [(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>")]


def _env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION", "DSINFRA_STATE_DIR", "DSINFRA_REGIONS")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "TERM": "xterm-256color",
            **extra}


@pytest.mark.parametrize("width, height", SIZES)
def test_plan_in_a_real_terminal(width, height, tmp_path):
    text, status = screen([DSINFRA, "plan", "prod"], width=width, height=height,
                          env=_env(DSINFRA_PROJECT_DIR=str(PROJECT_DIR),
                                   DSINFRA_STATE_DIR=str(tmp_path / "state")))
    assert status == 0, text
    matches_snapshot(f"plan-prod-{width}x{height}.txt", normalise(text, MOCK_IDS))


LAUNCHED = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def frozen_moto_url():
    from motoserver import moto_server

    yield from moto_server("127.0.0.1", frozen_at=LAUNCHED.isoformat())


@pytest.fixture
def two_stacks(frozen_moto_url, state_dir, monkeypatch, tmp_path):
    from motoserver import point_boto3_at, reset

    from dsinfra import tags as T
    from dsinfra.cloud.aws import client

    point_boto3_at(frozen_moto_url, monkeypatch)
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    monkeypatch.chdir(tmp_path)
    ec2 = client("ec2", "us-east-1")
    ids = make_stack("deepseek-r1-distill-dev", budget_usd=1000, period="total",
                     on_exceed="stop")["instances"]
    ids += make_stack("deepseek-r1-production", nodes=2, budget_usd=20000, period="total",
                      on_exceed="notify", instance_type="p4d.24xlarge")["instances"]
    launched = {i["LaunchTime"] for r in ec2.describe_instances(InstanceIds=ids)[
        "Reservations"] for i in r["Instances"]}
    assert launched == {LAUNCHED}, launched  # the frozen clock, or the screen would vary
    # `up` re-tags the instances and their volumes alike (the record and what must match it)
    volumes = [v["VolumeId"] for v in ec2.describe_volumes(Filters=[
        {"Name": "attachment.instance-id", "Values": ids}])["Volumes"]]
    ec2.create_tags(Resources=ids + volumes, Tags=[{"Key": T.EXPIRES_AT, "Value": T.format_expiry(
        LAUNCHED + timedelta(hours=400))}])
    yield (LAUNCHED + timedelta(hours=300)).isoformat()
    reset(frozen_moto_url)


@pytest.mark.parametrize("width, height", SIZES)
@pytest.mark.parametrize("argv", [["status", "--no-health"], ["cost", "report"]],
                         ids=["status", "cost-report"])
def test_status_and_cost_report_in_a_real_terminal(argv, width, height, two_stacks, tmp_path):
    text, status = screen([DSINFRA, *argv, "--now", two_stacks], width=width, height=height,
                          env=_env())
    assert status == 0, text
    matches_snapshot(f"{'-'.join(argv[:2]).replace('--no-health', '').strip('-')}"
                     f"-{width}x{height}.txt", normalise(text, TIMES))
