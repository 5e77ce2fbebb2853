"""One action table (dsinfra/budget_actions.py): a row added there alone is accepted by the
config and the tag parser, priced by budget_fit, granted by the guard's policy, listed in the
docs and carried out by the cost check on moto; a row whose effect has no implementation
cannot exist (issue 23 item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsinfra import budget_actions as A
from dsinfra.budget import budget_fit, budget_from_tags

from .conftest import hours_later, make_stack, stack_tags
from .helpers import check, instance_states

ROOT = Path(__file__).resolve().parents[2]

# A test-only action: EC2 hibernation (StopInstances with Hibernate=true; RAM is saved to the
# root volume, which keeps billing like a stopped instance's volumes). SOURCE for the call and
# its IAM action: the EC2 API reference, StopInstances ("Hibernate" parameter), and the service
# authorization reference (ec2:StopInstances covers hibernation). Moto accepts the parameter
# and stops the instance; it does not model the hibernation prerequisites (an instance launched
# with HibernationOptions.Configured and an encrypted root volume), which this test does not
# rely on.
# A stop_instances row reads the spot requests first (dsinfra/stoppable.py: AWS refuses to stop
# some spot instances), so it declares that read; its default ``unable`` is ``fail``.
HIBERNATE = A.ActionSpec(
    "hibernate", "hibernates the instances (RAM saved to the root volume)", ends_spend=True,
    still_bills="stopped", permissions=A.reads("ec2:DescribeSpotInstanceRequests") +
    A.scoped("ec2:StopInstances"), effect="instances", severity=10, call="stop_instances",
    call_args=(("Hibernate", True),))


@pytest.fixture
def hibernate():
    A.register(HIBERNATE)
    yield HIBERNATE
    A.unregister("hibernate")


def test_a_row_added_to_the_table_runs_end_to_end_on_moto(aws, state_dir, hibernate):
    from dsinfra.config import parse_stack_config

    config = parse_stack_config("sleepy", {"tier": "dev", "region": "us-east-1",
                                           "budget": {"amountUsd": 5, "onExceed": "hibernate"}})
    assert config.budget.on_exceed == "hibernate"
    made = make_stack("sleepy", budget_usd=5, period="total", on_exceed="hibernate")
    dry = check(hours_later(10))["sleepy"]
    assert (dry["status"], dry["action"], dry["action_result"]) == \
        ("exceeded", "hibernate", "dry-run")
    assert set(instance_states(made["instances"]).values()) == {"running"}
    result = check(hours_later(10), enforce=True)["sleepy"]
    assert (result["status"], result["action"], result["action_result"]) == \
        ("exceeded", "hibernate", "done"), result
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    again = check(hours_later(10.5), enforce=True)["sleepy"]
    assert again["action_result"] == "skipped"  # idempotent: nothing running is left


def test_the_row_sets_severity_budget_fit_and_the_guard_policy(hibernate):
    from dsinfra.ops.guard import guard_args

    mixed = budget_from_tags("s", [stack_tags("s", on_exceed="hibernate"),
                                   stack_tags("s", on_exceed="notify")])
    assert mixed.on_exceed == "hibernate"
    stronger = budget_from_tags("s", [stack_tags("s", on_exceed="hibernate"),
                                      stack_tags("s", on_exceed="stop")])
    assert stronger.on_exceed == "stop"
    fit = budget_fit(hourly_usd=2.0, hourly_stopped_usd=0.1, amount_usd=100, period="month",
                     ttl_hours=10, on_exceed="hibernate", protect=False)
    assert fit.ttl_enforced and fit.compared_usd == pytest.approx(2.0 * 10 + 0.1 * 720)
    args = guard_args(["us-east-1"])
    assert "hibernate" in args.allowed_actions
    scoped = next(s for s in args.policy(table_arn="arn:t")["Statement"]
                  if "Condition" in s)["Action"]
    assert "ec2:StopInstances" in scoped


def test_an_unknown_action_is_refused_by_the_config_and_the_tags():
    from dsinfra.budget import BudgetTagError
    from dsinfra.config import parse_stack_config
    from dsinfra.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_stack_config("s", {"tier": "dev", "region": "us-east-1",
                                 "budget": {"amountUsd": 5, "onExceed": "hibernate"}})
    assert "dsinfra:budget.onExceed" in str(err.value) and "'destroy'" in str(err.value)
    with pytest.raises(BudgetTagError, match="hibernate"):
        budget_from_tags("s", [stack_tags("s", on_exceed="hibernate")])
    with pytest.raises(ValueError, match="hibernate"):
        from dsinfra.ops.guard import guard_args

        guard_args(["us-east-1"], allowed_actions=("notify", "hibernate"))


@pytest.mark.parametrize("change, message", [
    (dict(effect="teleport"), "has no implementation"),
    (dict(call="hibernate_instances"), "call 'hibernate_instances'"),
    (dict(permissions=A.reads("ec2:DescribeInstances")), "needs ec2:StopInstances"),
    (dict(severity=20), "severity 20 is taken"),
    (dict(still_bills="everything"), "disagree"),
    (dict(unable="shrug"), "unable 'shrug'"),
    (dict(unable="terminate"), "needs ec2:TerminateInstances, ec2:CancelSpotInstanceRequests"),
    (dict(permissions=A.scoped("ec2:StopInstances")), "needs ec2:DescribeSpotInstanceRequests"),
])
def test_a_row_that_could_not_run_is_refused_at_registration(change, message):
    from dataclasses import replace

    with pytest.raises(A.ActionTableError, match=message):
        A.register(replace(HIBERNATE, **change))
    assert "hibernate" not in A.TABLE


def test_an_effect_without_a_runner_fails_at_import():
    """The import-time check: a table that names an effect cloud/actions.py cannot carry out
    stops the program at import, before any check could accept and then ignore it."""
    code = ("import dsinfra.budget_actions as A; A.EFFECTS = (*A.EFFECTS, 'hibernate-ram'); "
            "import dsinfra.cloud.actions")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "ImportError" in out.stderr
    assert "hibernate-ram" in out.stderr


def test_the_docs_table_is_the_action_table():
    text = (ROOT / "docs" / "budgets.md").read_text()
    assert A.markdown_table() in text


def test_permissions_json_lists_every_row():
    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    out = CliRunner().invoke(app, ["guard", "permissions", "--json", "--sns-topic-arn",
                                   "arn:aws:sns:us-east-1:123456789012:alerts"])
    actions = {a for s in json.loads(out.stdout)["Statement"] for a in s["Action"]}
    for spec in A.TABLE.values():
        assert {p.action for p in spec.permissions} <= actions
