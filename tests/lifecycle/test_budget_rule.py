"""The one budget-fit rule (``dsinfra.budget.budget_fit``): ``plan``, ``doctor`` and ``up``
give the same answer for every period, TTL, on-exceed action and protect flag, and the rule
counts a TTL only where the guard's own decision stops or destroys the stack at expiry.

The estimate is the real program's (dev and distributed tiers, run offline under mocks once);
hypothesis varies the budget settings around it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsinfra.budget import ON_EXCEED, PERIODS, StackBudget, budget_fit, decide
from dsinfra.ops.doctor import DoctorReport, Preflight, budget_verdict, check_budget
from dsinfra.config import parse_stack_config
from dsinfra.errors import UserError
from dsinfra.ops.up import _budget_gate
from dsinfra.ops.plan import Plan, plan_for_config

BASE = {"dev": {"tier": "dev", "instanceType": "g5.2xlarge"},
        "distributed": {"tier": "distributed", "instanceType": "p5.48xlarge", "nodeCount": 2}}


@pytest.fixture(scope="module")
def base_plans():
    return {tier: plan_for_config(parse_stack_config(tier, {**values,
                                                            "budget": {"amountUsd": 1}}))
            for tier, values in BASE.items()}


def _config(tier, period, ttl_hours, on_exceed, protect, amount_usd):
    values = {**BASE[tier], "protect": protect,
              "budget": {"amountUsd": amount_usd, "period": period, "onExceed": on_exceed}}
    if ttl_hours is not None:
        values["ttlHours"] = ttl_hours
    return parse_stack_config(tier, values)


settings_ = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings_
@given(tier=st.sampled_from(sorted(BASE)), period=st.sampled_from(PERIODS),
       ttl_hours=st.none() | st.floats(0.5, 2000), on_exceed=st.sampled_from(ON_EXCEED),
       protect=st.booleans(), boundary=st.integers(0, 3), nudge=st.sampled_from([0.99, 1.01]))
def test_plan_doctor_and_up_agree_on_every_budget_setting(base_plans, tier, period, ttl_hours,
                                                          on_exceed, protect, boundary, nudge):
    base = base_plans[tier]
    # Budgets just under and over each spend a rule could compare with (running for the TTL
    # or a month, then nothing or a stopped stack's bill), so a rule that differs shows.
    hours = ttl_hours or 730
    stopped = base.estimate.hourly_stopped_usd * max(0, 730 - hours)
    spends = [base.hourly_usd * hours, base.hourly_usd * 730, base.hourly_usd * hours + stopped,
              base.hourly_usd * min(hours, 730) + stopped]
    amount_usd = round(spends[boundary] * nudge, 2)
    config = _config(tier, period, ttl_hours, on_exceed, protect, amount_usd)
    plan = Plan(config=config, offline=True, resources=base.resources, items=base.items)
    check = check_budget(config, plan.estimate)
    assert plan.to_json()["budget"]["fits"] is plan.fits_budget
    assert (check.status == "pass") is plan.fits_budget, (plan.to_json()["budget"], check)
    verdict = budget_verdict(config, plan.estimate)
    preflight = Preflight(DoctorReport(config.stack, [verdict.check()]), config=config,
                          budget=verdict)
    if plan.fits_budget:
        _budget_gate(preflight, force=False)
    else:
        with pytest.raises(UserError, match="over the budget"):
            _budget_gate(preflight, force=False)


@settings_
@given(period=st.sampled_from(PERIODS), ttl_hours=st.floats(0.5, 2000),
       on_exceed=st.sampled_from(ON_EXCEED), protect=st.booleans())
def test_a_ttl_counts_exactly_when_the_guard_ends_spend_at_expiry(period, ttl_hours, on_exceed,
                                                                  protect):
    now = datetime(2026, 11, 29, tzinfo=timezone.utc)
    budget = StackBudget("s", "dev", 1e9, period, on_exceed, 0.8, protect,
                         expires_at=now - timedelta(seconds=1))
    at_expiry = decide(budget, spend_usd=0.0, now=now).action
    fit = budget_fit(hourly_usd=1.0, hourly_stopped_usd=0.1, amount_usd=1e9, period=period,
                     ttl_hours=ttl_hours, on_exceed=on_exceed, protect=protect)
    assert fit.ttl_enforced is (at_expiry in ("stop", "destroy"))


def test_total_budget_with_a_notify_ttl_is_compared_over_a_month(base_plans):
    """Issue 14's first case: the TTL only notifies, so the stack keeps running and billing."""
    base = base_plans["dev"]
    amount = round(base.hourly_usd * 10 * 2, 2)  # ample for 10 h, far short of a month
    config = _config("dev", "total", 10, "notify", False, amount)
    plan = Plan(config=config, offline=True, resources=base.resources, items=base.items)
    assert plan.budget_fit.window_hours == 730 and not plan.fits_budget
    assert check_budget(config, plan.estimate).status == "fail"


def test_month_budget_with_a_stopping_ttl_counts_the_ttl_and_what_stays_billed(base_plans):
    """Issue 14's second case: stop at 10 h bounds compute; volumes and the rest bill on."""
    base = base_plans["distributed"]
    config = _config("distributed", "month", 10, "stop", False, 1)
    fit = Plan(config=config, offline=True, resources=base.resources,
               items=base.items).budget_fit
    stopped = base.estimate.hourly_stopped_usd
    assert 0 < stopped < base.hourly_usd / 100  # NAT, load balancer, volumes, addresses
    assert fit.compared_usd == pytest.approx(base.hourly_usd * 10 + stopped * 720, rel=1e-6)
    within = _config("distributed", "month", 10, "stop", False, round(fit.compared_usd + 1))
    assert check_budget(within, base.estimate).status == "pass"
    protected = _config("distributed", "month", 10, "stop", True, round(fit.compared_usd + 1))
    assert check_budget(protected, base.estimate).status == "fail"  # the guard only notifies


def test_total_budget_destroyed_at_the_ttl_is_compared_over_the_ttl_alone():
    fit = budget_fit(hourly_usd=2.0, hourly_stopped_usd=0.5, amount_usd=100, period="total",
                     ttl_hours=48, on_exceed="destroy", protect=False)
    assert (fit.window_hours, fit.compared_usd, fit.fits) == (48, 96.0, True)
    stop = budget_fit(hourly_usd=2.0, hourly_stopped_usd=0.5, amount_usd=100, period="total",
                      ttl_hours=48, on_exceed="stop", protect=False)
    assert (stop.window_hours, stop.compared_usd, stop.fits) == (730, 96.0 + 0.5 * 682, False)
