"""``dsinfra plan`` through typer's CliRunner: JSON shape, cost arithmetic, budget, --live."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from dsinfra.catalog import PRICES_AS_OF
from dsinfra.cli.main import app
from dsinfra.infra.automation import PreviewResult
from dsinfra.ops.plan import build_plan
from offline_stacks import PROJECT_DIR, SHIPPED, stack_values

runner = CliRunner()


@pytest.fixture(scope="module")
def plans() -> dict[str, dict]:
    out = {}
    for stack in SHIPPED:
        result = runner.invoke(app, ["plan", stack, "--json"],
                               env={"DSINFRA_PROJECT_DIR": str(PROJECT_DIR)})
        assert result.exit_code == 0, result.output
        out[stack] = json.loads(result.stdout)
    return out


@pytest.mark.parametrize("stack", SHIPPED)
def test_plan_json_has_the_documented_shape(plans, stack):
    plan = plans[stack]
    assert (plan["stack"], plan["tier"], plan["region"], plan["offline"]) == \
        (stack, stack, "us-east-1", True)
    assert {"type", "name", "inputs"} <= set(plan["resources"][0])
    assert "aws:ec2/instance:Instance" in {r["type"] for r in plan["resources"]}
    assert set(plan["budget"]) >= {"amount_usd", "period", "fits"}
    assert set(plan["cost"]) >= {"hourly_usd", "monthly_usd", "items", "prices_as_of"}


@pytest.mark.parametrize("stack", SHIPPED)
def test_cost_items_add_up_to_the_totals_and_carry_their_date(plans, stack):
    cost = plans[stack]["cost"]
    assert cost["hourly_usd"] == pytest.approx(sum(i["hourly_usd"] for i in cost["items"]),
                                               abs=1e-6)
    assert cost["monthly_usd"] == pytest.approx(sum(i["monthly_usd"] for i in cost["items"]),
                                                abs=1e-6)
    assert cost["monthly_usd"] == pytest.approx(cost["hourly_usd"] * 730, abs=1e-3)
    assert cost["prices_as_of"] == PRICES_AS_OF.isoformat()
    assert all(i["price_as_of"] == PRICES_AS_OF.isoformat() for i in cost["items"])
    assert all({"name", "type", "hourly_usd", "monthly_usd"} <= set(i) for i in cost["items"])


def test_dev_prices_the_node_its_root_volume_and_its_public_address(plans):
    items = {i["name"]: i for i in plans["dev"]["cost"]["items"]}
    assert items["dev-gpu-0"]["hourly_usd"] == 1.212
    assert items["dev-gpu-0 root volume"]["hourly_usd"] == pytest.approx(200 * 0.08 / 730,
                                                                         abs=1e-6)
    assert items["dev-gpu-0 public IPv4"]["hourly_usd"] == 0.005
    assert len(items) == 3


def test_prod_prices_nat_and_load_balancer_and_no_bastion_by_default(plans):
    types = [i["type"] for i in plans["prod"]["cost"]["items"]]
    assert types.count("aws:ec2/natGateway:NatGateway") == 1
    assert types.count("aws:ec2/eip:Eip") == 1  # the NAT gateway's address
    assert types.count("aws:lb/loadBalancer:LoadBalancer") == 1  # internal: no public IPv4
    for shipped in SHIPPED:  # nodes are reached through the free Instance Connect Endpoint
        names = {i["name"] for i in plans[shipped]["cost"]["items"]}
        assert not {n for n in names if "bastion" in n}, shipped


def test_a_bastion_asked_for_is_priced_with_its_address():
    from dsinfra.config import parse_stack_config
    from dsinfra.ops.plan import plan_for_config

    values = stack_values("prod", {"bastion": True, "sshAllowedCidrs": ["203.0.113.0/24"]})
    names = {i.name for i in plan_for_config(parse_stack_config("prod", values)).estimate.items}
    assert {"prod-bastion", "prod-bastion root volume", "prod-bastion public IPv4"} <= names


def test_distributed_total_budget_is_compared_over_the_ttl(plans):
    plan = plans["distributed"]
    assert plan["budget"]["period"] == "total" and plan["budget"]["compared_hours"] == 48
    expected = plan["cost"]["hourly_usd"] * 48
    assert plan["budget"]["compared_usd"] == pytest.approx(expected, abs=0.01)
    assert plan["budget"]["fits"] is (expected <= plan["budget"]["amount_usd"])


def _project_with(tmp_path, stack: str, values: dict):
    import yaml

    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    document = {"config": {f"dsinfra:{k}": v for k, v in values.items()}}
    (tmp_path / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def test_over_budget_plan_is_flagged_loudly_but_exits_zero(monkeypatch, tmp_path):
    values = {**stack_values("dev"), "budget": {"amountUsd": 100, "period": "month"}}
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project_with(tmp_path, "tight", values)))
    result = runner.invoke(app, ["plan", "tight"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "OVER BUDGET" in result.stdout  # ~$904/month against $100/month
    assert "dsinfra up` will refuse" in result.stdout
    assert PRICES_AS_OF.isoformat() in result.stdout
    assert "tight-gpu-0 root volume" in result.stdout and "imds tokens=required" in result.stdout
    json_result = runner.invoke(app, ["plan", "tight", "--json"])
    assert json.loads(json_result.stdout)["budget"]["fits"] is False


def test_plan_within_budget_says_it_fits(monkeypatch, tmp_path):
    values = {**stack_values("dev"), "budget": {"amountUsd": 5000, "period": "month"}}
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project_with(tmp_path, "roomy", values)))
    result = runner.invoke(app, ["plan", "roomy"])
    assert result.exit_code == 0 and "fits:" in result.stdout
    assert "OVER BUDGET" not in result.stdout


def test_plan_shows_idle_autostop_from_the_tier_and_the_stack_file(plans, monkeypatch,
                                                                   tmp_path):
    assert plans["dev"]["idle_autostop"] == {"minutes": 60, "on_idle": "stop",
                                             "source": "tier default", "notify_topic_arn": None}
    assert plans["prod"]["idle_autostop"]["minutes"] is None
    values = {**stack_values("dev"), "idleMinutes": 90, "protect": True}
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project_with(tmp_path, "guarded", values)))
    result = runner.invoke(app, ["plan", "guarded"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Idle autostop: after 90 min without a request, notify only (protected stack)" \
        in " ".join(result.stdout.split())
    result = runner.invoke(app, ["plan", "guarded", "--json"])
    assert json.loads(result.stdout)["idle_autostop"]["on_idle"] == "notify"


def test_plan_text_of_dev_says_the_default_and_how_to_turn_it_off(monkeypatch):
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(PROJECT_DIR))
    result = runner.invoke(app, ["plan", "dev"], env={"COLUMNS": "200"})
    text = " ".join(result.stdout.split())
    assert "Idle autostop: after 60 min without a request, stop the stack, volumes kept " \
           "(tier default; dsinfra:idleMinutes 0 turns it off)." in text


def test_plan_of_an_unknown_stack_exits_2_naming_it(monkeypatch):
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(PROJECT_DIR))
    result = runner.invoke(app, ["plan", "staging", "--json"])
    assert result.exit_code == 2
    assert "unknown stack 'staging'" in result.output and "Traceback" not in result.output


def test_live_plan_without_the_pulumi_cli_exits_2_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(PROJECT_DIR))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `pulumi` anywhere on PATH
    result = runner.invoke(app, ["plan", "dev", "--live", "--json"])
    assert result.exit_code == 2, result.output
    assert "the Pulumi CLI is not on PATH" in result.output
    assert json.loads(result.stdout)["exit_status"] == 2  # the error, as JSON (no plan)


class PreviewFromOfflineRun:
    """Engine double whose preview answers with what `pulumi preview` lists: the resources of
    the same program, with their types, names, inputs and parents."""

    def preview(self, stack, on_event=None):
        from dsinfra.infra.offline import run_offline
        from dsinfra.stackfiles import read_stack_values, stack_file

        run = run_offline(stack, read_stack_values(stack_file(stack, PROJECT_DIR)))
        return PreviewResult(change_summary={"create": len(run.resources)},
                             resources=[{**r.as_dict(), "parent": r.parent}
                                        for r in run.resources])


def test_live_plan_prices_the_preview_like_the_offline_plan(plans):
    live = build_plan("prod", live=True, project_dir=PROJECT_DIR, engine=PreviewFromOfflineRun())
    assert live.to_json()["offline"] is False
    assert live.hourly_usd == plans["prod"]["cost"]["hourly_usd"]


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="the Pulumi CLI is installed")
def test_plan_needs_neither_credentials_nor_the_cli(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    plan = build_plan("distributed", project_dir=PROJECT_DIR)
    assert plan.offline and len(plan.outputs["nodes"]) == 2


def test_plan_refuses_a_model_that_does_not_fit_and_names_the_smallest_fit(monkeypatch,
                                                                            tmp_path):
    values = {**stack_values("dev"), "model": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"}
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project_with(tmp_path, "toosmall", values)))
    result = runner.invoke(app, ["plan", "toosmall", "--json"])
    assert result.exit_code == 2, result.output
    assert "dsinfra:instanceType" in result.output
    assert "g5.2xlarge" in result.output and "Traceback" not in result.output
    # nothing planned: stdout holds only the error, as JSON
    assert set(json.loads(result.stdout)) <= {"error", "exit_status", "hint"}
