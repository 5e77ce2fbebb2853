"""Issue 27 items 1-2, plan's side: `dsinfra plan` prices min and max replicas (what is shared
counted once, a replica's nodes with their volumes and addresses counted per replica), holds
max to the one budget rule, and where max does not fit says so and names the cap the
autoscaler never scales past. A budget that cannot hold min is refused at the door.

The price at N replicas is checked against the program itself: the same stack without
dsinfra:replicas and with N x nodes_per_replica nodes, run offline and priced by the one pricer
(ops/plan.py price_resources), on every tier."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError
from dsinfra.ops.plan import (AUTOSCALING_GROUP, plan_for_config, price_resources,
                              refuse_replicas_over_budget)
from dsinfra.replicas import ReplicaBounds, nodes_per_replica, replicas_within_budget
from dsinfra.tiers import TIERS
from offline_stacks import PROJECT_DIR, stack_values

runner = CliRunner()
# A budget nothing here reaches: the price property is about prices, not the verdict.
ROOMY = {"amountUsd": 10_000_000, "period": "month", "onExceed": "stop"}


def _config(tier: str, **overrides):
    return parse_stack_config(tier, stack_values(tier, overrides))


def _program_total(config, count: int) -> tuple[float, float]:
    """$/h and $/month the pricer gives for the replicas program's own resources with its
    node pool at ``count`` replicas: the Auto Scaling group (dev, prod) launched at ``count``,
    or, on EFA (a fixed count of node groups), the program built for ``count`` replicas."""
    if config.tier_spec.efa:
        plan = plan_for_config(config.model_copy(update={"replicas": ReplicaBounds(count,
                                                                                     count)}))
        resources = plan.resources
    else:
        resources = [{**r, "inputs": {**r["inputs"], "desiredCapacity": count}}
                     if r["type"] == AUTOSCALING_GROUP else r
                     for r in plan_for_config(config).resources]
    items = price_resources(resources, config.region)
    return sum(i.hourly_usd for i in items), sum(i.monthly_usd for i in items)


# An EFA tier takes a fixed count only (min < max is refused at the door there:
# tests/infra/test_infra_replicas.py), so it is priced at fixed counts.
@pytest.mark.parametrize("tier, replicas", [
    (tier, pair) for tier in sorted(TIERS)
    for pair in ([(1, 1), (2, 2), (3, 3)] if TIERS[tier].efa else [(1, 1), (1, 3), (2, 5)])])
def test_price_at_min_and_max_is_the_pricers_sum_for_the_resources_at_that_count(
        tier, replicas):
    low, high = replicas
    config = _config(tier, replicas={"min": low, "max": high}, budget=ROOMY)
    per = nodes_per_replica(config)
    view = plan_for_config(config).replicas
    assert (view["min"], view["max"], view["nodes_per_replica"]) == (low, high, per)
    for key, count in (("at_min", low), ("at_max", high)):
        hourly, monthly = _program_total(config, count)
        assert view[key]["nodes"] == count * per
        assert view[key]["hourly_usd"] == pytest.approx(hourly, abs=1e-6), (key, count)
        assert view[key]["monthly_usd"] == pytest.approx(monthly, abs=1e-3), (key, count)
    assert view["fits_at_max"] and view["capped_at"] is None
    assert view["verdict"] == "fits at max"


def test_shared_resources_count_once_and_a_replica_is_its_nodes_volumes_and_addresses():
    view = plan_for_config(_config("prod", replicas={"min": 1, "max": 3},
                                   budget=ROOMY)).replicas
    assert view["scales"] == ["prod-gpu", "prod-gpu root volume"]
    assert sorted(view["shared"]) == ["prod-api", "prod-nat", "prod-nat"]  # NLB, NAT, its EIP
    step = view["at_max"]["hourly_usd"] - view["at_min"]["hourly_usd"]
    assert step == pytest.approx(2 * view["replica_hourly_usd"], abs=1e-6)
    assert view["at_min"]["hourly_usd"] == pytest.approx(
        view["shared_hourly_usd"] + view["replica_hourly_usd"], abs=1e-6)
    dev = plan_for_config(_config("dev", replicas=2, budget=ROOMY)).replicas
    assert dev["scales"] == ["dev-gpu", "dev-gpu public IPv4", "dev-gpu root volume"]


def test_a_max_that_does_not_fit_reports_the_largest_count_that_does():
    # dev g5.2xlarge: $1.2389/h a replica, $904.41 a month; $2,000 a month holds 2 of them.
    budget = {"amountUsd": 2000, "period": "month", "onExceed": "stop"}
    plan = plan_for_config(_config("dev", replicas={"min": 1, "max": 4}, budget=budget,
                                   ttlHours=None))
    view = plan.replicas
    assert (view["fits_at_min"], view["fits_at_max"]) == (True, False)
    assert view["capped_at"] == 2 and view["verdict"] == "capped"
    assert view["at_cap"]["replicas"] == 2 and view["at_cap"]["compared_usd"] <= 2000
    # The cap is the largest count that fits under the one rule: one more does not.
    assert plan.replica_fit(2).fits and not plan.replica_fit(3).fits
    refuse_replicas_over_budget(plan)  # a max over budget is capped, not refused


def test_a_stack_without_replicas_reports_its_fixed_count_as_planned():
    plan = plan_for_config(_config("prod", nodeCount=3))
    view = plan.replicas
    assert (view["configured"], view["min"], view["max"]) == (False, 3, 3)
    assert view["at_max"]["hourly_usd"] == pytest.approx(plan.hourly_usd, abs=1e-6)
    assert plan.estimate.hourly_usd == pytest.approx(plan.hourly_usd, abs=1e-6)


def test_doctor_and_up_hold_a_replicas_stack_to_its_min():
    plan = plan_for_config(_config("dev", replicas={"min": 2, "max": 4}, budget=ROOMY))
    assert plan.estimate.hourly_usd == pytest.approx(plan.replicas["at_min"]["hourly_usd"])
    assert plan.budget_fit.compared_usd == pytest.approx(plan.replicas["at_min"]
                                                         ["compared_usd"], abs=0.01)


@settings(max_examples=200, deadline=None)
@given(low=st.integers(1, 64), span=st.integers(0, 63), shared=st.floats(0, 100),
       per=st.floats(0.01, 100), budget=st.floats(0, 10_000))
def test_replicas_within_budget_is_the_largest_count_that_fits(low, span, shared, per,
                                                               budget):
    high = min(64, low + span)
    fits = lambda n: shared + n * per <= budget  # noqa: E731 - a budget rule stand-in
    got = replicas_within_budget(ReplicaBounds(low, high), fits)
    fitting = [n for n in range(low, high + 1) if fits(n)]
    assert got == (max(fitting) if fitting else None)


# --- the CLI: text, --json and the door ---------------------------------------------------


@pytest.fixture
def plan_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))

    def run(tier: str, overrides: dict, *args: str, columns: int = 80):
        project = tmp_path / f"p{len(list(tmp_path.glob('p*')))}"
        (project / "stacks").mkdir(parents=True)
        shutil.copy(PROJECT_DIR / "Pulumi.yaml", project / "Pulumi.yaml")
        values = stack_values(tier, overrides)
        document = {"config": {f"dsinfra:{k}": v for k, v in values.items()}}
        (project / "stacks" / f"Pulumi.{tier}.yaml").write_text(yaml.safe_dump(document))
        monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(project))
        return runner.invoke(app, ["plan", tier, *args], env={"COLUMNS": str(columns)})
    return run


CAPPED = {"replicas": {"min": 1, "max": 4}, "ttlHours": None,
          "budget": {"amountUsd": 2000, "period": "month", "onExceed": "stop"}}


def test_plan_json_carries_the_replicas_view(plan_cli):
    result = plan_cli("dev", CAPPED, "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)["replicas"]
    assert {"configured", "min", "max", "nodes_per_replica", "fits_at_min", "fits_at_max",
            "capped_at", "verdict", "at_min", "at_max", "at_cap", "scales", "shared",
            "budget_basis"} <= set(view)
    assert (view["min"], view["max"], view["capped_at"], view["fits_at_max"]) == \
        (1, 4, 2, False)
    assert {"replicas", "nodes", "hourly_usd", "monthly_usd", "compared_usd", "fits"} == \
        set(view["at_max"])


@pytest.mark.parametrize("columns", [80, 200])
def test_plan_text_says_max_does_not_fit_and_the_cap_and_cuts_no_number(plan_cli, columns):
    from table_check import assert_whole_and_within

    body = json.loads(plan_cli("dev", CAPPED, "--json").stdout)["replicas"]
    result = plan_cli("dev", CAPPED, columns=columns)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "max 4 does NOT fit" in text and "capped at 2 replica(s)" in text
    values = []
    for key in ("at_min", "at_max", "at_cap"):
        at = body[key]
        values += [f"{at['hourly_usd']:,.4f}", f"{at['monthly_usd']:,.2f}",
                   f"${at['compared_usd']:,.2f}"]
    assert_whole_and_within(result.output, values, columns)


def test_plan_text_says_when_max_fits(plan_cli):
    result = plan_cli("dev", {**CAPPED, "replicas": {"min": 1, "max": 2}})
    assert result.exit_code == 0, result.output
    assert "max 2 fits" in " ".join(result.output.split())


@pytest.mark.parametrize("args", [(), ("--json",)])
def test_a_min_the_budget_cannot_hold_is_refused_in_one_line(plan_cli, args):
    result = plan_cli("dev", {**CAPPED, "replicas": {"min": 3, "max": 4}}, *args)
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error) == 1 and "Traceback" not in result.output, result.output
    assert error[0].startswith("error: invalid value for dsinfra:replicas: ")
    assert "{'min': 3, 'max': 4}" in error[0] and "at most 2 replica(s)" in error[0]
    assert "$2,000.00 per month" in error[0]


def test_a_budget_that_holds_no_replica_says_none_fits():
    config = _config("dev", replicas=1, ttlHours=None,
                     budget={"amountUsd": 100, "period": "month", "onExceed": "stop"})
    with pytest.raises(ConfigError, match=r"dsinfra:replicas: 1; allowed: none: the budget "):
        refuse_replicas_over_budget(plan_for_config(config))


def test_a_replica_that_cannot_be_priced_is_a_loud_bug_never_a_fit():
    """If the program stops declaring the pool's nodes (say an Auto Scaling group replaces
    them) and nothing here learns to price that, plan must fail, not pass the budget."""
    from dsinfra.errors import EXIT_BUG, DsinfraError
    from dsinfra.ops.plan import Plan

    plan = plan_for_config(_config("dev", replicas={"min": 1, "max": 2}, budget=ROOMY))
    orphaned = [{**r, "parent": ""} for r in plan.resources]
    blind = Plan(config=plan.config, offline=True, resources=orphaned,
                 items=price_resources(orphaned, plan.config.region))
    assert blind.replicas is None
    with pytest.raises(DsinfraError, match="cannot price a replica") as caught:
        refuse_replicas_over_budget(blind)
    assert caught.value.exit_code == EXIT_BUG
