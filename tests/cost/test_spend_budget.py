"""The pure core: spend arithmetic and the budget decision, no network."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dsinfra import spend as S
from dsinfra.budget import BudgetTagError, StackBudget, budget_from_tags, decide

from .conftest import stack_tags

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)


def _instance(state="running", launched=T0, **attrs):
    base = {"instance_type": "p5.48xlarge", "lifecycle": "on-demand"}
    return S.Resource("instance", "i-1", "us-east-1", "s", {}, state, launched, {**base, **attrs})


def _budget(**kw):
    values = dict(stack="s", tier="dev", amount_usd=100.0, period="month", on_exceed="destroy",
                  warn_at=0.8, protect=False, expires_at=None)
    values.update(kw)
    return StackBudget(**values)


def test_running_instance_meters_price_times_hours():
    price = S.resource_hourly_price(_instance())
    assert price.usd == pytest.approx(55.04) and price.price.as_of.isoformat() == "2026-07-20"
    iv = S.new_interval(_instance(), price.usd, None, T0 + timedelta(hours=2))
    assert iv.cost_within(T0, T0 + timedelta(days=1)) == pytest.approx(110.08)


def test_a_metered_interval_is_never_counted_twice():
    first = S.new_interval(_instance(), 10.0, None, T0 + timedelta(hours=1))
    second = S.new_interval(_instance(), 10.0, first.end, T0 + timedelta(hours=3))
    assert second.start == first.end
    assert S.spend_within([first, second], T0, T0 + timedelta(days=1)) == pytest.approx(30.0)
    assert S.new_interval(_instance(), 10.0, second.end, second.end) is None


def test_stopped_instance_meters_only_up_to_its_stop_time():
    stopped = _instance("stopped", stopped_at=T0 + timedelta(hours=4))
    iv = S.new_interval(stopped, 10.0, T0 + timedelta(hours=1), T0 + timedelta(hours=9))
    assert (iv.start, iv.end) == (T0 + timedelta(hours=1), T0 + timedelta(hours=4))
    assert not stopped.billing


def test_spot_instance_uses_spot_history_else_on_demand_with_a_note():
    from dsinfra.catalog import Price

    spot = {("us-east-1", "p5.48xlarge"): Price(20.0, "hour", T0.date(), "spot history")}
    assert S.resource_hourly_price(_instance(lifecycle="spot"), spot_prices=spot).usd == 20.0
    fallback = S.resource_hourly_price(_instance(lifecycle="spot"))
    assert fallback.usd == pytest.approx(55.04) and "catalog refresh" in fallback.note


def test_month_period_counts_only_the_calendar_month_to_date_in_utc():
    iv = S.Interval("i-1", datetime(2026, 10, 31, 12, tzinfo=timezone.utc),
                    datetime(2026, 11, 1, 12, tzinfo=timezone.utc), 10.0)
    now = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
    start, end = S.period_bounds("month", now, iv.start)
    assert (start, end) == (datetime(2026, 11, 1, tzinfo=timezone.utc),
                            datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert S.spend_within([iv], start, now) == pytest.approx(120.0)
    total_start, _ = S.period_bounds("total", now, iv.start)
    assert S.spend_within([iv], total_start, now) == pytest.approx(240.0)


def test_forecast_and_time_left_follow_the_burn_rate():
    end = T0 + timedelta(hours=10)
    assert S.forecast_usd(50.0, 5.0, T0, end) == pytest.approx(100.0)
    assert S.hours_until_budget(50.0, 5.0, 100.0) == pytest.approx(10.0)
    assert S.hours_until_budget(150.0, 5.0, 100.0) == 0.0
    assert S.hours_until_budget(50.0, 0.0, 100.0) is None


@pytest.mark.parametrize("spend, status, action", [
    (10.0, "ok", "none"), (80.0, "warn", "notify"), (100.0, "exceeded", "destroy"),
])
def test_decision_by_spend(spend, status, action):
    decision = decide(_budget(), spend, T0)
    assert (decision.status, decision.action) == (status, action)


def test_protected_stack_is_notify_only_whatever_on_exceed_says():
    decision = decide(_budget(protect=True), 500.0, T0)
    assert (decision.status, decision.action) == ("exceeded", "notify")
    assert "protected" in decision.reason


def test_expired_ttl_exceeds_a_stack_under_budget():
    decision = decide(_budget(expires_at=T0 - timedelta(minutes=1), on_exceed="stop"), 1.0, T0)
    assert (decision.status, decision.action) == ("exceeded", "stop")
    assert decide(_budget(expires_at=T0 + timedelta(hours=1)), 1.0, T0).status == "ok"


def test_budget_tags_take_the_strictest_value_when_resources_disagree():
    a = stack_tags("s", budget_usd=500, on_exceed="notify")
    b = stack_tags("s", budget_usd=200, on_exceed="destroy", protect=True,
                   expires_at=T0 + timedelta(hours=3))
    rule = budget_from_tags("s", [a, b])
    assert (rule.amount_usd, rule.on_exceed, rule.protect) == (200.0, "destroy", True)
    assert rule.expires_at == T0 + timedelta(hours=3)


@pytest.mark.parametrize("key, value", [("dsinfra:budget-usd", "lots"),
                                        ("dsinfra:on-exceed", "explode"),
                                        ("dsinfra:warn-at", "2"),
                                        ("dsinfra:expires-at", "tomorrow")])
def test_bad_budget_tag_names_the_tag_and_the_value(key, value):
    tags = {**stack_tags("s"), key: value}
    with pytest.raises(BudgetTagError) as err:
        budget_from_tags("s", [tags])
    assert key in str(err.value) and value in str(err.value)


def test_budget_path_does_not_need_pydantic():
    import subprocess
    import sys

    probe = ("import sys; import dsinfra.budget, dsinfra.spend, dsinfra.ops.check; "
             "print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
