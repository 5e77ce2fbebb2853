"""Issue 17 item 3: `dsinfra plan` shows a spot stack's spot price beside the on-demand one.
Live, from EC2 DescribeSpotPriceHistory on the moto server (moto serves it: its history is its
own, and the test compares with what the same server answers); offline from the cache
`dsinfra catalog refresh` writes, else "spot price unknown offline", never a made-up number."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.infra.automation import PreviewResult
from dsinfra.ops.plan import build_plan
from offline_stacks import PROJECT_DIR, stack_values

runner = CliRunner()


def _spot_project(tmp_path, spot: bool = True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    values = stack_values("dev", {"spot": spot})
    document = {"config": {f"dsinfra:{k}": v for k, v in values.items()}}
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


class PreviewFromOfflineRun:
    def __init__(self, project):
        self.project = project

    def preview(self, stack, on_event=None):
        from dsinfra.infra.offline import run_offline
        from dsinfra.stackfiles import read_stack_values, stack_file

        run = run_offline(stack, read_stack_values(stack_file(stack, self.project)))
        return PreviewResult(change_summary={"create": len(run.resources)},
                             resources=[{**r.as_dict(), "parent": r.parent}
                                        for r in run.resources])


@pytest.fixture
def empty_state(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(state))
    return state


def test_offline_spot_plan_says_the_spot_price_is_unknown(tmp_path, monkeypatch, empty_state):
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_spot_project(tmp_path / "p")))
    plan = json.loads(runner.invoke(app, ["plan", "dev", "--json"]).stdout)
    assert plan["spot"]["spot_hourly_usd"] is None
    assert plan["spot"]["on_demand_hourly_usd"] == 1.212
    assert plan["spot"]["note"].startswith("spot price unknown offline")
    shown = runner.invoke(app, ["plan", "dev"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "spot: spot price unknown offline" in shown.stdout


def test_on_demand_plan_has_no_spot_line(tmp_path, monkeypatch, empty_state):
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_spot_project(tmp_path / "p", spot=False)))
    plan = json.loads(runner.invoke(app, ["plan", "dev", "--json"]).stdout)
    assert plan["spot"] is None


def test_live_spot_plan_shows_the_highest_zone_spot_price_from_ec2(aws, tmp_path,
                                                                   empty_state):
    from dsinfra.cloud.aws import client

    project = _spot_project(tmp_path / "p")
    plan = build_plan("dev", live=True, project_dir=project,
                      engine=PreviewFromOfflineRun(project))
    answer = client("ec2", "us-east-1").describe_spot_price_history(
        InstanceTypes=["g5.2xlarge"], ProductDescriptions=["Linux/UNIX"])
    highest = max(float(p["SpotPrice"]) for p in answer["SpotPriceHistory"])
    spot = plan.to_json()["spot"]
    assert spot["spot_hourly_usd"] == pytest.approx(highest)
    assert spot["source"].startswith("EC2 DescribeSpotPriceHistory")
    assert spot["saving_pct"] == pytest.approx(100 * (1 - highest / 1.212), abs=0.1)
    # The cost still counts the on-demand price: the ceiling a spot price can rise to.
    node = next(i for i in plan.items if i.name == "dev-gpu-0")
    assert node.hourly_usd == 1.212


def test_live_spot_plan_without_an_answer_says_unknown_not_a_number(tmp_path, empty_state):
    from botocore.exceptions import NoCredentialsError

    class NoAnswer:
        def get_paginator(self, name):
            raise NoCredentialsError()

    project = _spot_project(tmp_path / "p")
    plan = build_plan("dev", live=True, project_dir=project,
                      engine=PreviewFromOfflineRun(project), ec2_for=lambda region: NoAnswer())
    assert plan.spot.spot_hourly_usd is None
    assert plan.spot.note.startswith("spot price unknown: EC2 did not answer")


def test_offline_plan_uses_the_cached_spot_price_with_its_date(aws, tmp_path, monkeypatch,
                                                                empty_state):
    from dsinfra.cloud.aws import client
    from dsinfra.cloud.catalog_cache import CACHE_NAME, fetch_spot

    # The cache as `dsinfra catalog refresh` writes it, its spot prices read from moto.
    from datetime import datetime, timezone

    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    found = fetch_spot(client("ec2", "us-east-1"), ["g5.2xlarge"], now)
    (empty_state / CACHE_NAME).write_text(json.dumps({
        "fetched_at": now.isoformat(),
        "regions": {"us-east-1": {"on_demand": {}, "spot": found}}}))
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_spot_project(tmp_path / "p")))
    plan = json.loads(runner.invoke(app, ["plan", "dev", "--json"]).stdout)
    assert plan["spot"]["spot_hourly_usd"] == found["g5.2xlarge"]
    assert plan["spot"]["as_of"] == "2026-11-30"
    assert "cached by dsinfra catalog refresh" in plan["spot"]["source"]
