"""The engine's unit and env file are rendered only from values that pass their grammar, even
when a StackConfig was built without the schema (model_construct, a future code path)."""

from __future__ import annotations

import pytest

from dsinfra.bootstrap.engine import engine_env, engine_plan, systemd_unit
from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.bootstrap.secrets import Secrets
from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError, UserError

HOSTS = [HostSpec(name="gpu-0", address="10.0.0.5", role="head", instance_type="g5.2xlarge")]
CONFIG = parse_stack_config("s", {"tier": "dev", "budget": {"amountUsd": 100}})


def test_a_model_id_with_a_newline_never_reaches_the_unit_file():
    smuggled = CONFIG.model_copy(update={"model": "org/m\nExecStartPre=/bin/sh -c id"})
    with pytest.raises(ConfigError) as caught:
        engine_plan(smuggled, HOSTS)
    assert caught.value.key == "dsinfra:model"


def test_a_clean_config_renders_one_description_line():
    unit = systemd_unit(engine_plan(CONFIG, HOSTS))
    assert [line for line in unit.splitlines() if line.startswith("Description=")] == [
        "Description=dsinfra inference engine (vllm, deepseek-ai/DeepSeek-R1-Distill-Qwen-7B, "
        "recipe deepseek-r1-distill)"]


@pytest.mark.parametrize("model_cache", ["s3://b/x\nExecStart=/bin/id", "s3://Bucket/p",
                                         "s3://bucket/../etc", "https://bucket/p", "s3://1.2.3.4/p"])
def test_a_model_cache_uri_outside_the_s3_grammar_is_refused(model_cache):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("s", {"tier": "dev", "budget": {"amountUsd": 100},
                                 "modelCache": model_cache})
    assert caught.value.key == "dsinfra:modelCache" and "s3://bucket/prefix" in str(caught.value)


def test_extra_args_with_a_newline_are_refused_before_rendering():
    engine = CONFIG.engine.model_copy(update={"extra_args": ["--a\nVLLM_X=1"]})
    with pytest.raises(ConfigError, match="engine.extraArgs"):
        engine_plan(CONFIG.model_copy(update={"engine": engine}), HOSTS)


def test_a_secret_with_a_newline_is_refused_without_printing_it():
    plan = engine_plan(CONFIG, HOSTS)
    with pytest.raises(UserError) as caught:
        engine_env(plan, Secrets(api_key="k\nHF_HOME=/tmp/evil", hf_token=None))
    assert "evil" not in str(caught.value) and "API key" in str(caught.value)
