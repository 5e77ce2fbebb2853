"""The rent-or-buy advisor: the article's example and the factors it names."""

from __future__ import annotations

import pytest

from dsinfra.advisor import AdviceInputs, advise, break_even
from dsinfra.errors import UserError

ARTICLE = AdviceInputs(hardware_price=50_000, local_monthly=500, cloud_monthly=8_000,
                       horizon_months=24)


def test_article_example_breaks_even_in_month_seven():
    advice = advise(ARTICLE)
    assert break_even(50_000, 500, 8_000) == pytest.approx(50_000 / 7_500)
    assert advice.break_even_months == 6.67
    assert advice.break_even_month == 7
    assert advice.cloud_cumulative[6] < advice.local_cumulative[6]
    assert advice.cloud_cumulative[7] >= advice.local_cumulative[7]
    assert advice.recommendation == "self-host"


def test_cumulative_curves_start_at_upfront_and_grow_by_the_monthly_cost():
    advice = advise(ARTICLE)
    assert advice.cloud_cumulative[:3] == [0, 8_000, 16_000]
    assert advice.local_cumulative[:3] == [50_000, 50_500, 51_000]
    assert len(advice.cloud_cumulative) == 25
    assert advice.savings_at_horizon == 24 * 8_000 - (50_000 + 24 * 500)


def test_short_trial_with_no_ops_experience_favours_cloud():
    advice = advise(AdviceInputs(50_000, 500, 8_000, horizon_months=3, ops_experience="none"))
    assert advice.recommendation == "cloud"
    assert {r.favours for r in advice.reasons} == {"cloud"}


def test_private_data_tips_a_close_call_to_self_hosting():
    close = AdviceInputs(50_000, 500, 8_000, horizon_months=6)
    assert advise(close).recommendation == "cloud"
    private = AdviceInputs(50_000, 500, 8_000, horizon_months=6, private_data=True,
                           customization=True)
    assert advise(private).recommendation == "self-host"


def test_insufficient_local_vram_always_means_cloud():
    advice = advise(AdviceInputs(50_000, 500, 8_000, private_data=True,
                                 local_vram_sufficient=False))
    assert advice.recommendation == "cloud"


def test_no_break_even_when_upkeep_costs_as_much_as_the_cloud():
    advice = advise(AdviceInputs(50_000, 900, 800))
    assert advice.break_even_month is None and advice.recommendation == "cloud"


@pytest.mark.parametrize("inputs", [AdviceInputs(-1, 0, 0), AdviceInputs(1, 0, 0, horizon_months=0)])
def test_bad_advice_input_is_a_user_error(inputs):
    with pytest.raises(UserError):
        advise(inputs)
