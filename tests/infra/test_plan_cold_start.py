"""`plan --json` carries each shipped stack's predicted cold start (dsinfra/cold_start.py): the
same stages the predictor returns for the stack's replica, so users see it where they decide."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.cold_start import predict_for_config
from dsinfra.stackfiles import load_stack
from offline_stacks import PROJECT_DIR, SHIPPED

runner = CliRunner()


@pytest.mark.parametrize("stack", SHIPPED)
def test_plan_json_has_the_predictors_cold_start(stack):
    result = runner.invoke(app, ["plan", stack, "--json"],
                           env={"DSINFRA_PROJECT_DIR": str(PROJECT_DIR)})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["cold_start"]
    expected = predict_for_config(load_stack(stack, PROJECT_DIR)).to_dict()
    assert shown == expected
    assert [s["name"] for s in shown["stages"]] == ["launch", "weights", "engine_load",
                                                    "health_gate"]
    assert all(s["source"] for s in shown["stages"])
