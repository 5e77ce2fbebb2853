"""Issue 27: a stack whose budget cannot hold its min replicas stops at the door of `doctor`
and `up` (one line, exit 2, nothing created), as `plan` refuses it (tests/infra/
test_plan_replicas.py). `up` is the real CLI against moto with a fake Engine, as in
test_cli_up.py; the refusal comes before preflight, so no AWS call is needed for it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError
from dsinfra.ops.doctor import run_doctor

from .fakes import StubbedFactory
from .test_cli_up import edges, project  # noqa: F401 - fixtures: moto, fake engine, stack

# dev g5.2xlarge: $904.41 a month a replica; $2,000 a month holds two.
REPLICAS_YAML = """config:
  dsinfra:tier: dev
  dsinfra:instanceType: g5.2xlarge
  dsinfra:model: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
  dsinfra:replicas:
    min: {low}
    max: 4
  dsinfra:budget:
    amountUsd: 2000
    onExceed: stop
"""


def _stack(project, low: int) -> None:  # noqa: F811 - the fixture's value
    (project / "stacks/Pulumi.t.yaml").write_text(REPLICAS_YAML.format(low=low))


def _one_error_line(result) -> str:
    """The refusal: one ``error:`` line, the last thing said (``up`` says its phase first)."""
    said = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in said if line.startswith("error:")]
    assert len(errors) == 1 and said[-1] == errors[0], result.stderr
    return errors[0]


def test_up_refuses_a_min_the_budget_cannot_hold_and_creates_nothing(edges, project):  # noqa: F811
    engine, boot = edges
    _stack(project, 3)
    result = CliRunner().invoke(app, ["up", "t", "--yes", "--force"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert line.startswith("error: invalid value for dsinfra:replicas: {'min': 3, 'max': 4}")
    assert "at most 2 replica(s)" in line and "Traceback" not in result.output
    assert engine.calls == [] and not engine.deployed and boot.calls == []
    assert engine.guard.calls == []  # not even the enforcer was deployed


def test_up_goes_on_where_min_fits_and_max_is_capped(edges, project):  # noqa: F811
    engine, _ = edges
    _stack(project, 1)
    result = CliRunner().invoke(app, ["up", "t", "--yes"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert any(call[0] == "up" for call in engine.calls)


def test_doctor_refuses_a_min_the_budget_cannot_hold(edges, project):  # noqa: F811
    _stack(project, 3)
    result = CliRunner().invoke(app, ["doctor", "t"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert _one_error_line(result).startswith(
        "error: invalid value for dsinfra:replicas: {'min': 3, 'max': 4}")


def test_doctor_given_an_estimate_still_applies_the_door(aws):
    config = parse_stack_config("t", {"tier": "dev", "replicas": {"min": 3, "max": 4},
                                      "budget": {"amountUsd": 2000, "onExceed": "stop"}})
    from dsinfra.ops.plan import plan_for_config

    with pytest.raises(ConfigError, match="at most 2 replica"):
        run_doctor(config, client_factory=StubbedFactory(), pulumi_version=lambda: "v3",
                   estimate=plan_for_config(parse_stack_config(
                       "t", {"tier": "dev", "budget": {"amountUsd": 2000}})).estimate)


def test_up_refuses_before_preflight_reads_anything():
    from dsinfra.ops.up import UpPorts, bring_up

    from .fakes import FakeEngine

    config = parse_stack_config("t", {"tier": "dev", "replicas": {"min": 3, "max": 4},
                                      "budget": {"amountUsd": 2000, "onExceed": "stop"}})
    engine = FakeEngine()

    def preflight(_config):
        raise AssertionError("preflight ran: the door must come first")

    with pytest.raises(ConfigError, match="at most 2 replica"):
        bring_up(config, engine, ports=UpPorts(preflight=preflight))
    assert engine.calls == []
