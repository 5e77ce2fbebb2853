"""`dsinfra stacks` lists the valid stacks and reports each invalid one on its own line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dsinfra.cli.main import app

from .conftest import VALID_STACK, write_stack

runner = CliRunner()


def test_invalid_stacks_are_reported_one_per_line_and_valid_ones_still_listed(project):
    write_stack(project, "good", VALID_STACK)
    write_stack(project, "badowner", VALID_STACK + "  dsinfra:owner: \"a\\nb\"\n")
    write_stack(project, "binary", b"\x00\xff\xfe")
    result = runner.invoke(app, ["stacks"])
    assert result.exit_code == 2
    assert "good" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "'badowner' is invalid" in errors[0] and "dsinfra:owner" in errors[0]
    assert "'binary' is invalid" in errors[1] and "not UTF-8" in errors[1]


def test_stacks_json_carries_the_invalid_ones(project):
    write_stack(project, "good", VALID_STACK)
    write_stack(project, "dup", VALID_STACK + "  dsinfra:tier: prod\n")
    result = runner.invoke(app, ["stacks", "--json"])
    body = json.loads(result.stdout)
    assert result.exit_code == 2
    assert [s["stack"] for s in body["stacks"]] == ["good"]
    assert body["invalid"][0]["stack"] == "dup" and "appears twice" in body["invalid"][0]["error"]


def test_all_valid_stacks_exit_0(project):
    write_stack(project, "good", VALID_STACK)
    assert runner.invoke(app, ["stacks"]).exit_code == 0
