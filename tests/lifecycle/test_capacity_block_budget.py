"""A Capacity Block's money: the budget counts its upfront fee by one rule (plan, doctor and
up through ``budget_fit``, the guard through ``decide``), its instances meter nothing per hour
(their compute is the fee), the guard tears the stack down before AWS terminates the block's
instances (30 minutes before its end: capacity-blocks-using.html), and ``plan`` shows the
window and the fee, or says the window is unknown offline."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dsinfra import tags as T
from dsinfra.budget import (ON_EXCEED, PERIODS, StackBudget, budget_fit, budget_from_tags,
                            decide)
from dsinfra.cli.main import app
from dsinfra.config import parse_stack_config
from dsinfra.ops.plan import plan_for_config
from dsinfra.spend import Resource, resource_hourly_price

END = datetime(2030, 1, 9, 11, 30, tzinfo=timezone.utc)
START = END - timedelta(days=2)
BLOCK = {"availabilityZone": "us-east-1c", "instanceType": "p5.48xlarge", "instanceCount": 2,
         "start": "2030-01-07T11:30:00Z", "end": "2030-01-09T11:30:00Z", "upfrontUsd": 3801.6}
STACK = {"tier": "distributed", "instanceType": "p5.48xlarge", "nodeCount": 2,
         "model": "deepseek-ai/DeepSeek-R1", "precision": "fp8",
         "capacityReservationId": "cr-0b10c0000000000a1", "capacityBlock": BLOCK,
         "budget": {"amountUsd": 20000, "period": "total", "onExceed": "destroy"}}

PROJECT_DIR = Path(__file__).resolve().parents[2]
money = st.integers(0, 10**8).map(lambda cents: cents / 100)  # whole cents, as AWS bills


@settings(max_examples=300, deadline=None)
@given(hourly=st.integers(0, 50_000).map(lambda cents: cents / 100), upfront=money,
       amount=money, period=st.sampled_from(PERIODS),
       ttl=st.none() | st.floats(0.5, 2000), on_exceed=st.sampled_from(ON_EXCEED),
       protect=st.booleans())
def test_budget_fit_counts_the_upfront_fee_once_and_in_full(hourly, upfront, amount, period,
                                                            ttl, on_exceed, protect):
    common = dict(hourly_usd=hourly, hourly_stopped_usd=hourly / 10, amount_usd=amount,
                  period=period, ttl_hours=ttl, on_exceed=on_exceed, protect=protect)
    without = budget_fit(**common)
    with_fee = budget_fit(**common, upfront_usd=upfront)
    assert with_fee.compared_usd == pytest.approx(without.compared_usd + upfront, rel=1e-9,
                                                  abs=1e-6)
    assume(abs(with_fee.compared_usd - amount) > 1e-3)  # float ulps decide the exact tie
    assert with_fee.fits == (with_fee.compared_usd <= amount)


def _budget(upfront: float, amount: float, **extra) -> StackBudget:
    return StackBudget(stack="s", tier="distributed", amount_usd=amount, period="total",
                       on_exceed="destroy", warn_at=0.8, protect=False, expires_at=None,
                       upfront_usd=upfront, **extra)


@settings(max_examples=300, deadline=None)
@given(spend=money, upfront=money, amount=st.floats(1, 1e6))
def test_the_guard_counts_the_upfront_fee_as_the_plan_does(spend, upfront, amount):
    decision = decide(_budget(upfront, amount), spend, START)
    assert (decision.status == "exceeded") == (spend + upfront >= amount)
    # The plan's rule over the same hours says the same: metered spend plus the fee.
    fit = budget_fit(hourly_usd=spend, hourly_stopped_usd=0, amount_usd=amount,
                     period="total", ttl_hours=1, on_exceed="destroy", protect=False,
                     upfront_usd=upfront)
    assert fit.fits == (decision.status != "exceeded" or spend + upfront == amount)


@pytest.mark.parametrize("on_exceed, protect, action", [
    ("notify", False, "destroy"), ("stop", False, "destroy"), ("destroy", True, "notify")])
def test_the_guard_tears_a_block_stack_down_an_hour_before_the_block_ends(on_exceed, protect,
                                                                           action):
    budget = StackBudget(stack="s", tier="distributed", amount_usd=1e6, period="total",
                         on_exceed=on_exceed, warn_at=0.8, protect=protect, expires_at=None,
                         block_ends_at=END)
    assert decide(budget, 0, END - timedelta(minutes=61)).status == "ok"
    ending = decide(budget, 0, END - timedelta(minutes=60))
    assert (ending.status, ending.action) == ("exceeded", action)
    assert "Capacity Block ends at 2030-01-09T11:30:00Z" in ending.reason


def test_block_tags_are_read_strictest_first():
    base = {T.BUDGET_USD: "20000.00", T.BUDGET_PERIOD: "total", T.ON_EXCEED: "destroy"}
    budget = budget_from_tags("s", [
        {**base, T.UPFRONT_USD: "3801.60", T.BLOCK_ENDS_AT: "2030-01-09T11:30:00Z"},
        {**base, T.UPFRONT_USD: "3000.00", T.BLOCK_ENDS_AT: "2030-01-10T11:30:00Z"}])
    assert (budget.upfront_usd, budget.block_ends_at) == (3801.60, END)


def test_block_instances_meter_no_compute_per_hour():
    block = Resource("instance", "i-0b10c", "us-east-1", "s", {}, "running",
                     attrs={"instance_type": "p5.48xlarge", "lifecycle": "capacity-block"})
    on_demand = Resource("instance", "i-0d0d0", "us-east-1", "s", {}, "running",
                         attrs={"instance_type": "p5.48xlarge"})
    assert resource_hourly_price(block).usd == 0.0
    assert resource_hourly_price(on_demand).usd > 50


def test_plan_prices_block_nodes_at_zero_and_adds_the_fee_to_the_budget():
    plan = plan_for_config(parse_stack_config("dist", STACK))
    nodes = [i for i in plan.items if i.name.startswith("dist-gpu-") and "volume" not in i.name]
    assert len(nodes) == 2 and all(i.hourly_usd == 0 for i in nodes)
    assert all("paid up front" in i.note for i in nodes)
    fit = plan.budget_fit
    # Destroyed 60 minutes before the block ends: 47 h of everything else, plus the fee.
    assert fit.running_hours == pytest.approx(47)
    assert fit.compared_usd == pytest.approx(plan.hourly_usd * 47 + 3801.6, abs=0.01)


def _project(tmp_path, values):
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    config = {f"dsinfra:{k}": v for k, v in values.items()}
    (tmp_path / "stacks" / "Pulumi.dist.yaml").write_text(yaml.safe_dump({"config": config}))
    return {"DSINFRA_PROJECT_DIR": str(tmp_path), "COLUMNS": "80"}


def test_plan_shows_the_blocks_window_and_upfront_price(tmp_path):
    env = _project(tmp_path, STACK)
    shown = CliRunner().invoke(app, ["plan", "dist", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    block = json.loads(shown.stdout)["capacity_block"]
    assert block["start"] == "2030-01-07T11:30:00Z" and block["end"] == "2030-01-09T11:30:00Z"
    assert block["teardown_at"] == "2030-01-09T10:30:00Z" and block["upfront_usd"] == 3801.6
    text = CliRunner().invoke(app, ["plan", "dist"], env=env)
    assert text.exit_code == 0, text.output
    flat = " ".join(text.output.split())
    assert "2030-01-07 11:30 to 2030-01-09 11:30 UTC" in flat
    assert "$3,801.60 paid up front" in flat


def test_offline_plan_without_the_block_says_its_window_is_unknown(tmp_path):
    values = {k: v for k, v in STACK.items() if k != "capacityBlock"}
    env = _project(tmp_path, values)
    shown = CliRunner().invoke(app, ["plan", "dist", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "block window unknown offline" in json.loads(shown.stdout)["capacity_block"]["note"]
    text = CliRunner().invoke(app, ["plan", "dist"], env=env)
    assert "block window unknown offline" in " ".join(text.output.split())


def test_plan_refuses_a_ttl_past_the_block_with_one_line(tmp_path):
    env = _project(tmp_path, {**STACK, "expiresAt": "2030-01-09T11:00:00Z"})
    result = CliRunner().invoke(app, ["plan", "dist"], env=env)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error: invalid value for dsinfra:expiresAt")
    assert "2030-01-09T10:30:00Z" in result.output
