"""The autoscaler's rule (dsinfra/autoscale.py): out on waiting above the target, in by one
only on complete idle counts, never within the cool-down or past the bounds, never in on
missing counts, and never out to a count whose projected spend breaks the budget (the check's
own forecast: spend so far + the burn at that count to the period's end, with the upfront
fee)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dsinfra import autoscale as A
from dsinfra.budget import committed_usd
from dsinfra.replicas import ReplicaBounds
from dsinfra.spend import forecast_usd

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
END = NOW + timedelta(hours=100)
BOUNDS = ReplicaBounds(1, 4, cool_down_s=300, target_waiting=2.0)


def budget(amount: float = 1e9, spend: float = 0.0, hourly: float = 1.0, replica: float = 1.0,
           billing: int = 1, upfront: float = 0.0) -> A.ScaleBudget:
    return A.ScaleBudget(amount, spend, hourly, replica, billing, NOW, END, upfront)


def decide(loads, desired=1, bounds=BOUNDS, money=None, last=None, starting=0):
    return A.decide_scale(loads, desired=desired, bounds=bounds, budget=money or budget(),
                          now_s=NOW.timestamp(), last_scaled_s=last, starting=starting)


def test_waiting_above_the_target_scales_out_proportionally():
    d = decide({"i-1": A.Load(3, 6)})
    assert (d.action, d.target, d.blocked_by_budget) == (A.OUT, 3, False)  # ceil(6 / 2)


def test_a_small_excess_still_adds_one():
    d = decide({"i-1": A.Load(1, 2.5), "i-2": A.Load(1, 2.5)}, desired=2)
    assert d.target == 3


def test_at_the_target_nothing_changes():
    d = decide({"i-1": A.Load(5, 2)})
    assert (d.action, d.target) == (A.HOLD, 1)


def test_never_past_max():
    assert decide({"i-1": A.Load(0, 400)}).target == BOUNDS.max
    d = decide({f"i-{n}": A.Load(0, 400) for n in range(4)}, desired=4)
    assert (d.action, d.target) == (A.HOLD, 4) and "already at max" in d.reason


@pytest.mark.parametrize("ago", [0, 120, 299])
def test_nothing_scales_within_the_cool_down(ago):
    last = NOW.timestamp() - ago
    out = decide({"i-1": A.Load(0, 100)}, last=last)
    idle = decide({"i-1": A.Load(0, 0), "i-2": A.Load(0, 0)}, desired=2, last=last)
    assert (out.target, idle.target) == (1, 2)
    assert "cool-down" in out.reason


def test_after_the_cool_down_it_scales_again():
    assert decide({"i-1": A.Load(0, 100)}, last=NOW.timestamp() - 300).target == 4


def test_no_scale_out_while_a_replica_is_still_starting():
    d = decide({"i-1": A.Load(0, 100)}, desired=2, starting=1)
    assert d.target == 2 and "still starting" in d.reason


def test_scale_in_by_one_when_every_replica_reads_idle():
    d = decide({"i-1": A.Load(0, 0), "i-2": A.Load(1, 0), "i-3": A.Load(0, 0)}, desired=3)
    assert (d.action, d.target) == (A.IN, 2)


def test_never_below_min():
    d = decide({"i-1": A.Load(0, 0)}, desired=1)
    assert (d.action, d.target) == (A.HOLD, 1)


def test_no_scale_in_while_anything_waits_or_every_replica_runs():
    assert decide({"i-1": A.Load(0, 1), "i-2": A.Load(0, 0)}, desired=2).target == 2
    assert decide({"i-1": A.Load(1, 0), "i-2": A.Load(1, 0)}, desired=2).target == 2


def test_missing_counts_never_scale_in_and_are_reported():
    d = decide({"i-1": A.Load(0, 0), "i-2": None}, desired=2)
    assert (d.action, d.target, d.unreadable) == (A.HOLD, 2, ("i-2",))
    assert "i-2" in d.reason


def test_a_replica_that_is_not_serving_blocks_scale_in():
    d = decide({"i-1": A.Load(0, 0)}, desired=2)
    assert d.target == 2


def test_no_counts_at_all_hold():
    d = decide({"i-1": None, "i-2": None}, desired=2)
    assert (d.action, d.target, d.unreadable) == (A.HOLD, 2, ("i-1", "i-2"))


def test_missing_counts_do_not_stop_a_scale_out_the_others_ask_for():
    d = decide({"i-1": A.Load(0, 10), "i-2": None}, desired=2)
    assert d.action == A.OUT and d.unreadable == ("i-2",)


def test_the_projection_is_the_checks_forecast_with_the_upfront_fee():
    money = budget(amount=500, spend=100, hourly=3.0, replica=2.0, billing=1, upfront=50)
    assert money.projected_usd(3) == committed_usd(forecast_usd(100, 3.0 + 2 * 2.0, NOW, END),
                                                   50)
    assert money.projected_usd(3) == 100 + 7.0 * 100 + 50


def test_a_scale_out_that_breaks_the_budget_is_not_made():
    # one replica: 100 + 1 * 100 h = 200; two: 300; the budget is 250
    d = decide({"i-1": A.Load(0, 10)}, money=budget(amount=250, spend=100))
    assert (d.action, d.target, d.blocked_by_budget) == (A.HOLD, 1, True)
    assert d.wanted == 4 and d.projected_usd == 100 + 4 * 100


def test_a_scale_out_is_capped_at_the_largest_count_that_fits():
    d = decide({"i-1": A.Load(0, 10)}, money=budget(amount=350, spend=100))
    assert (d.action, d.target, d.blocked_by_budget, d.wanted) == (A.OUT, 2, True, 4)


def test_exactly_at_the_budget_fits_as_the_budget_fit_rule_says():
    d = decide({"i-1": A.Load(0, 10)}, money=budget(amount=500, spend=100))
    assert (d.target, d.blocked_by_budget) == (4, False)


def test_a_replica_that_cannot_be_priced_never_scales_out():
    d = decide({"i-1": A.Load(0, 10)}, money=budget(replica=float("inf")))
    assert d.target == 1 and d.blocked_by_budget and d.projected_usd is None


def test_scale_in_is_never_held_back_by_the_budget():
    d = decide({"i-1": A.Load(0, 0), "i-2": A.Load(0, 0)}, desired=2,
               money=budget(amount=0, spend=10))
    assert d.target == 1
