"""Issue 23 item 5: `dsinfra plan` says per stack what a stop does to its nodes, derived from
the program's launch template (the spot request it makes), the rule of what AWS stops
(dsinfra/stoppable.py) and the stop row of the action table: a stack whose settings keep
one-time spot (spotInterruption: terminate) is told that a stop terminates its spot nodes,
what that loses and what still bills; a persistent spot stack is told nothing new."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from dsinfra.cli.main import app
from offline_stacks import PROJECT_DIR, stack_values

runner = CliRunner()


def _project(tmp_path, overrides: dict):
    tmp_path.mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    values = stack_values("dev", overrides)
    document = {"config": {f"dsinfra:{k}": v for k, v in values.items()}}
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


@pytest.fixture
def plan_of(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(state))

    def run(overrides: dict, *args: str):
        project = _project(tmp_path / f"p{len(list(tmp_path.iterdir()))}", overrides)
        monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(project))
        return runner.invoke(app, ["plan", "dev", *args])
    return run


ONE_TIME = {"spot": True, "spotInterruption": "terminate",
            "budget": {"amountUsd": 500, "period": "month", "onExceed": "stop"}}


def test_plan_says_a_stop_terminates_one_time_spot_and_what_is_lost(plan_of):
    out = plan_of(ONE_TIME, "--json")
    assert out.exit_code == 0, out.output
    means = json.loads(out.stdout)["stop_means"]
    (node,) = means["terminates"]
    assert "one-time spot request" in node["why"] and means["stops"] == []
    assert means["by"] == ["onExceed stop", "idle autostop", "`dsinfra stop --terminate-spot`"]
    assert f"the root volume of {node['node']} (deleted on termination)" in means["lost"]
    assert "instance store" in means["lost"]
    # The root volume goes with the node, so it no longer bills after such a stop.
    assert not any(name.startswith(node["node"]) for name in means["still_bills"])
    text = plan_of(ONE_TIME)
    assert text.exit_code == 0, text.output
    flat = " ".join(text.stdout.split())
    assert f"Stop terminates {node['node']}: AWS cannot stop it" in flat
    assert "notifies, then terminates" in flat and "dsinfra:spotInterruption stop" in flat


def test_a_protected_stack_names_no_budget_stop_and_persistent_spot_says_nothing_new(plan_of):
    protected = json.loads(plan_of({**ONE_TIME, "protect": True, "idleMinutes": 0},
                                   "--json").stdout)["stop_means"]
    assert protected["by"] == ["`dsinfra stop --terminate-spot`"]  # the guard only notifies
    out = plan_of({"spot": True}, "--json")
    means = json.loads(out.stdout)["stop_means"]
    assert means["terminates"] == [] and len(means["stops"]) == 1
    assert any(name.endswith("root volume") for name in means["still_bills"])
    assert "Stop terminates" not in plan_of({"spot": True}).stdout
