"""Sizing: exact formulas checked against GPU measurements, the article's figures, and the
fit rules `plan` and `up` refuse on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError, UserError
from dsinfra.models import BUILTIN_MODELS, kv_bytes_per_token, resolve_model, shape_from_config
from dsinfra.sizing import (check_stack_fits, size_model, tensor_parallel_size,
                            weights_bytes)

MEASURED = json.loads((Path(__file__).parents[1] / "fixtures/gpu/sizing-h200.json").read_text())
MEASURED_MODELS = [m for m in MEASURED["models"] if "error" not in m]
GB, GIB = 10 ** 9, 1024 ** 3


@pytest.mark.parametrize("record", MEASURED_MODELS, ids=lambda r: r["name"])
def test_predicted_weights_and_kv_match_the_h200_measurement(record):
    shape = shape_from_config(dict(record["config"]), name=record["name"])
    assert shape.params == record["params"]
    predicted = weights_bytes(shape.params, "bf16")
    assert abs(predicted - record["weights_bytes_allocated"]) / \
        record["weights_bytes_allocated"] < 0.10
    assert kv_bytes_per_token(shape, 2) == record["kv_bytes_per_token"]


@pytest.mark.parametrize("record", [m for m in MEASURED_MODELS if "@" not in m["name"]],
                         ids=lambda r: r["name"])
def test_builtin_shapes_are_the_measured_configs(record):
    assert resolve_model(record["name"]).params == record["params"]


def test_article_figures_7b_is_14gb_at_fp16_and_7gb_at_fp8():
    assert weights_bytes(7 * 10 ** 9, "fp16") == 14 * GB
    assert weights_bytes(7 * 10 ** 9, "fp8") == 7 * GB
    qwen7b = size_model("DeepSeek-R1-Distill-Qwen-7B", "fp16")
    assert qwen7b.weights_bytes / GIB == pytest.approx(14, rel=0.02)
    assert size_model("DeepSeek-R1-Distill-Qwen-7B", "fp8").weights_bytes / GIB == \
        pytest.approx(7, rel=0.02)


def test_int8_cuts_fp32_weights_by_three_quarters_and_int4_halves_int8():
    assert weights_bytes(10 ** 9, "int8") == 10 ** 9
    assert weights_bytes(10 ** 9, "int4") == 10 ** 9 // 2


def test_v3_mla_latent_cache_is_70272_bytes_per_token_in_bf16_and_half_in_fp8():
    assert size_model("DeepSeek-V3", "fp8").kv_bytes_per_token == 61 * 576 * 2 == 70272
    assert size_model("DeepSeek-V3", "fp8", kv_cache_dtype="fp8").kv_bytes_per_token == 35136


def test_hf_ids_and_short_names_resolve_case_insensitively():
    assert resolve_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B") is \
        resolve_model("deepseek-r1-distill-qwen-7b")
    assert resolve_model("DeepSeek-V3").params == pytest.approx(671e9, rel=0.001)
    assert resolve_model("DeepSeek-V2-Lite").params == pytest.approx(15.7e9, rel=0.01)


def test_kv_cache_scales_with_concurrency_times_context():
    one = size_model("DeepSeek-R1-Distill-Llama-8B", context=4096, concurrency=1)
    many = size_model("DeepSeek-R1-Distill-Llama-8B", context=4096, concurrency=16)
    assert many.kv_cache_bytes == 16 * one.kv_cache_bytes == 16 * 4096 * 131072


def test_cheapest_fit_is_recommended_for_the_7b_distill():
    result = size_model("DeepSeek-R1-Distill-Qwen-7B", "bf16", 8192, 1)
    fitting = [c for c in result.candidates if c.fits]
    assert result.recommended == min(fitting, key=lambda c: c.hourly_usd).instance_type
    assert result.recommended == "g6.xlarge"  # L4 at $0.8048/h, cheaper than g5.xlarge at $1.006/h
    assert result.candidate("g6.xlarge").required_gib_per_gpu < result.candidate("g6.xlarge").usable_gib_per_gpu


def test_r1_in_fp8_needs_one_h200_node_or_two_h100_nodes():
    result = size_model("deepseek-ai/DeepSeek-R1", "fp8", 32768, 1)
    p5, p5en = result.candidate("p5.48xlarge"), result.candidate("p5en.48xlarge")
    assert (p5en.fits, p5en.nodes, p5en.tensor_parallel) == (True, 1, 8)
    assert (p5.fits, p5.nodes, p5.tensor_parallel, p5.pipeline_parallel) == (True, 2, 8, 2)
    assert result.recommended == "p5en.48xlarge"


def test_fp8_on_ampere_is_flagged_and_not_recommended_over_native_hardware():
    result = size_model("DeepSeek-R1", "fp8", 8192, 1)
    assert result.candidate("p4de.24xlarge").precision_native is False
    assert result.candidate("p5.48xlarge").precision_native is True
    assert result.recommended in ("p5.48xlarge", "p5en.48xlarge")
    assert any("not native" in n for n in result.notes)


def test_single_gpu_types_without_efa_are_never_sized_past_one_node():
    result = size_model("DeepSeek-R1-Distill-Llama-70B", "bf16")
    g5 = result.candidate("g5.2xlarge")
    assert (g5.fits, g5.nodes) == (False, 1)
    assert "no EFA" in g5.reason


def test_tensor_parallel_divides_attention_heads():
    qwen7b = resolve_model("DeepSeek-R1-Distill-Qwen-7B")  # 28 heads: 8 does not divide
    assert tensor_parallel_size(qwen7b, 8) == 4
    assert tensor_parallel_size(resolve_model("DeepSeek-R1"), 8) == 8


def test_model_from_a_config_json_path(tmp_path):
    config = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
              "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
              "vocab_size": 128256, "max_position_embeddings": 131072}
    (tmp_path / "config.json").write_text(json.dumps(config))
    from_path = size_model(str(tmp_path / "config.json"))
    assert from_path.params == resolve_model("DeepSeek-R1-Distill-Llama-8B").params
    assert size_model(str(tmp_path)).params == from_path.params


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"model": "DeepSeek-R9"}, "unknown model 'DeepSeek-R9'"),
    ({"model": "DeepSeek-V3", "precision": "fp4"}, "allowed: bf16, fp16, fp8, int8, int4"),
    ({"model": "DeepSeek-V2-Lite", "context": 65536}, "1 to 32768"),
    ({"model": "DeepSeek-V3", "concurrency": 0}, "--concurrency"),
])
def test_bad_sizing_input_names_what_is_allowed(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        size_model(**kwargs)


def test_unreadable_config_json_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        resolve_model(str(tmp_path / "config.json"))


def _stack(**values):
    return parse_stack_config("s", {"tier": "dev", "budget": {"amountUsd": 100}, **values})


def test_stack_whose_model_does_not_fit_is_refused_naming_the_cheapest_fit():
    config = _stack(instanceType="g5.2xlarge", model="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B")
    with pytest.raises(ConfigError) as caught:
        check_stack_fits(config)
    assert caught.value.key == "dsinfra:instanceType"
    assert "1x g5.2xlarge" in str(caught.value)
    assert "the cheapest is 1x g6.12xlarge" in str(caught.value)


def test_distributed_r1_fits_two_p5_nodes_but_not_one():
    values = dict(tier="distributed", model="deepseek-ai/DeepSeek-R1", precision="fp8",
                  maxModelLen=32768)
    check_stack_fits(parse_stack_config("d", {**values, "nodeCount": 2,
                                              "budget": {"amountUsd": 1}}))
    with pytest.raises(ConfigError, match="p5en.48xlarge"):
        check_stack_fits(parse_stack_config("d", {**values, "nodeCount": 1,
                                                  "budget": {"amountUsd": 1}}))


@pytest.mark.parametrize("stack", ["dev", "prod", "distributed"])
def test_shipped_stacks_fit_their_instances(stack, project_dir):
    from dsinfra.stackfiles import load_stack

    check_stack_fits(load_stack(stack, project_dir))


def test_max_model_len_beyond_the_model_is_refused():
    with pytest.raises(ConfigError, match="dsinfra:maxModelLen"):
        check_stack_fits(_stack(model="deepseek-ai/DeepSeek-V2-Lite", maxModelLen=65536,
                                instanceType="g6e.xlarge"))


def test_models_outside_the_catalog_pass_unchecked():
    assert check_stack_fits(_stack(model="Qwen/Qwen2.5-72B-Instruct")) is None


def test_every_builtin_model_has_a_recommendation_at_short_context():
    for name in BUILTIN_MODELS:
        assert size_model(name, "fp8", 4096).recommended is not None, name


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dsinfra.sizing import per_gpu_bytes  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(BUILTIN_MODELS)), tokens=st.integers(1, 1_000_000),
       more=st.integers(1, 1_000_000), tp=st.sampled_from([1, 2, 4, 8]),
       pp=st.integers(1, 8))
def test_per_gpu_memory_grows_with_tokens_and_shrinks_with_more_pipeline_stages(name, tokens,
                                                                                more, tp, pp):
    shape = BUILTIN_MODELS[name]
    kv = kv_bytes_per_token(shape, 2)
    base = per_gpu_bytes(shape, 2, kv, tokens, tp, pp)
    assert per_gpu_bytes(shape, 2, kv, tokens + more, tp, pp) > base
    assert per_gpu_bytes(shape, 2, kv, tokens, tp, pp + 1) <= base
    assert per_gpu_bytes(shape, 1, kv, tokens, tp, pp) < base  # fp8 weights take less
