"""Stack config validation: every bad value stops at the door with the key named."""

from __future__ import annotations

import pytest

from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError
from dsinfra.stackfiles import load_stack
from dsinfra.tiers import TIERS

BASE = {"tier": "dev", "budget": {"amountUsd": 100}}


@pytest.mark.parametrize("stack", TIERS)  # each tier ships a stack of its name
def test_shipped_stacks_are_valid(stack, project_dir):
    config = load_stack(stack, project_dir)
    assert config.tier == stack


def test_tier_defaults_fill_instance_type_and_count():
    assert parse_stack_config("s", {"tier": "dev", "budget": {"amountUsd": 1}}
                              ).resolved_instance_type == "g5.2xlarge"
    prod = parse_stack_config("s", {"tier": "prod", "budget": {"amountUsd": 1}})
    assert (prod.resolved_instance_type, prod.resolved_node_count) == ("p4d.24xlarge", 1)
    dist = parse_stack_config("s", {"tier": "distributed", "budget": {"amountUsd": 1}})
    assert (dist.resolved_instance_type, dist.resolved_node_count) == ("p5.48xlarge", 2)


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ({"tier": "staging"}, "dsinfra:tier", "staging"),
        ({"instanceType": "t3.micro"}, "dsinfra:instanceType", "t3.micro"),
        ({"instanceType": "x9.huge"}, "dsinfra:instanceType", "x9.huge"),
        ({"nodeCount": 0}, "dsinfra:nodeCount", 0),
        ({"sshAllowedCidrs": ["10.0.0.0/33"]}, "dsinfra:sshAllowedCidrs", "10.0.0.0/33"),
        ({"sshAllowedCidrs": ["0.0.0.0/0"]}, "dsinfra:sshAllowedCidrs", "0.0.0.0/0"),
        ({"sshAllowedCidrs": ["::/0"]}, "dsinfra:sshAllowedCidrs", "::/0"),
        ({"budget": {"amountUsd": -5}}, "dsinfra:budget.amountUsd", -5),
        ({"budget": {"amountUsd": 5, "onExceed": "explode"}}, "dsinfra:budget.onExceed",
         "explode"),
        ({"tier": "prod", "spot": True}, "dsinfra:spot", True),
        ({"tier": "dev", "bastion": True}, "dsinfra:bastion", True),
        ({"region": "eu-north-9"}, "dsinfra:region", "eu-north-9"),
        ({"precision": "fp4"}, "dsinfra:precision", "fp4"),
        ({"engineImage": "vllm/vllm-openai:latest"}, "dsinfra:engineImage",
         "vllm/vllm-openai:latest"),
        ({"tags": {"dsinfra:stack": "other"}}, "dsinfra:tags", None),
        ({"instanceTyp": "g5.xlarge"}, "dsinfra:instanceTyp", "g5.xlarge"),
    ],
)
def test_bad_value_names_key_and_value(override, key, value):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("s", {**BASE, **override})
    assert caught.value.key == key
    if value is not None:
        assert caught.value.value == value
    assert "allowed:" in str(caught.value)


def test_custom_engine_expresses_the_articles_serve_py_container():
    config = parse_stack_config("s", {**BASE, "engine": {
        "name": "custom", "image": "registry.example.com/deepseek-serve:1.0",
        "command": ["python3", "serve.py", "--model_path", "/app/model", "--port", "8080"],
        "port": 8080, "healthPath": "/health"}})
    assert config.engine.command[-1] == "8080"
    assert config.resolved_api_port == 8080
    assert config.resolved_engine_image == "registry.example.com/deepseek-serve:1.0"


def test_custom_engine_without_image_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("s", {**BASE, "engine": {"name": "custom"}})
    assert caught.value.key == "dsinfra:engine"


@pytest.mark.parametrize("name", ["a-very-long-stack-name-x", "bad_name", "-dash", "dots.x"])
def test_stack_names_that_aws_cannot_name_resources_after_are_refused(name, tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: dsinfra\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text(
        "config:\n  dsinfra:tier: dev\n  dsinfra:budget:\n    amountUsd: 10\n")
    with pytest.raises(ConfigError) as caught:
        load_stack(name, tmp_path)
    assert caught.value.key == "stack name" and caught.value.value == name


def test_an_engine_is_one_table_row_the_schema_and_its_defaults_follow(monkeypatch):
    """Issue 26 item 3: names, defaults, idle autostop and the error text all come from
    ENGINE_SPECS; a new row is accepted with no other change to the core."""
    from dsinfra.engines import ENGINE_SPECS, EngineSpec
    from dsinfra.idle import MetricNames

    with pytest.raises(ConfigError) as caught:
        parse_stack_config("s", {**BASE, "engine": "tgi"})
    assert caught.value.key == "dsinfra:engine.name" and "'custom'" in caught.value.allowed
    metrics = MetricNames(running=("tgi_queue_size",), waiting=("tgi_batch_current_size",),
                          counters=("tgi_request_count",))
    monkeypatch.setitem(ENGINE_SPECS, "tgi", EngineSpec(
        "tgi", image="ghcr.io/huggingface/text-generation-inference:3.0.1", port=8081,
        health_path="/ready", metrics=metrics))
    config = parse_stack_config("s", {**BASE, "engine": "tgi"})
    assert (config.resolved_engine_image, config.engine_port, config.resolved_api_port,
            config.engine.health_path) == (
        "ghcr.io/huggingface/text-generation-inference:3.0.1", 8081, 8081, "/ready")
    assert config.resolved_idle_minutes == TIERS["dev"].idle_minutes  # it has metrics
    assert parse_stack_config("s", {**BASE, "engine": "tgi", "idleMinutes": 30}
                              ).resolved_idle_minutes == 30
    with pytest.raises(ConfigError) as caught:  # the allowed list names the new row too
        parse_stack_config("s", {**BASE, "engine": "nope"})
    assert "'tgi'" in caught.value.allowed

    # A row without metrics: idle autostop off by default, an explicit one refused.
    monkeypatch.setitem(ENGINE_SPECS, "tgi", EngineSpec("tgi", image=None, port=None))
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("s", {**BASE, "engine": "tgi"})
    assert "needs image and port" in caught.value.allowed
    quiet = {"name": "tgi", "image": "x/y:1", "port": 9000}
    assert parse_stack_config("s", {**BASE, "engine": quiet}).resolved_idle_minutes is None
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("s", {**BASE, "engine": quiet, "idleMinutes": 30})
    assert caught.value.key == "dsinfra:idleMinutes" and "vllm and sglang" in caught.value.allowed
