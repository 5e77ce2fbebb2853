"""`dsinfra size` with a config.json: positive integers where the architecture needs them, the
common MoE families sized from their own keys, anything else refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app
from dsinfra.errors import UserError
from dsinfra.models import BUILTIN_MODELS, resolve_model, shape_from_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MIXTRAL = json.loads((FIXTURES / "mixtral-8x7b-v0.1.config.json").read_text())
QWEN_MOE = json.loads((FIXTURES / "qwen1.5-moe-a2.7b.config.json").read_text())
LLAMA_8B = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
            "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
            "vocab_size": 128256, "max_position_embeddings": 131072}
runner = CliRunner()


def test_mixtral_8x7b_is_sized_as_46_7b_parameters():
    shape = shape_from_config(MIXTRAL, name="Mixtral-8x7B-v0.1")
    assert shape.params == 46_702_792_704          # the published 46.7B
    assert round(shape.active_params / 1e9, 1) == 12.9  # two of eight experts per token


def test_qwen_moe_is_sized_with_its_shared_expert():
    shape = shape_from_config(QWEN_MOE, name="Qwen1.5-MoE-A2.7B")
    assert round(shape.params / 1e9, 1) == 14.3     # model card: 14.3B in total
    assert round(shape.active_params / 1e9, 1) == 2.7  # and 2.7B activated


def test_deepseek_configs_still_match_the_builtin_shapes():
    v2_lite = BUILTIN_MODELS["DeepSeek-V2-Lite"]
    measured = json.loads((FIXTURES.parent / "gpu" / "sizing-h200.json").read_text())
    config = next(m["config"] for m in measured["models"] if m["name"] == "DeepSeek-V2-Lite")
    assert shape_from_config(config, name="DeepSeek-V2-Lite").params == v2_lite.params


@pytest.mark.parametrize(("change", "needle"), [
    ({"num_attention_heads": 0}, "num_attention_heads: 0"),
    ({"num_hidden_layers": -3}, "num_hidden_layers: -3"),
    ({"hidden_size": 0}, "hidden_size: 0"),
    ({"vocab_size": 1e300}, "vocab_size: 1e+300"),
    ({"vocab_size": True}, "vocab_size: True"),
    ({"intermediate_size": "14336"}, "intermediate_size: '14336'"),
    ({"num_key_value_heads": 7}, "does not divide"),
    ({"num_hidden_layers": None}, "num_hidden_layers"),
    ({"model_type": "gpt2"}, "model_type 'gpt2' is not understood"),
    ({"model_type": None}, "model_type None is not understood"),
    ({"num_local_experts": 8}, "num_local_experts is not understood for model_type llama"),
    ({"num_experts": 8}, "num_experts is not understood for model_type llama"),
])
def test_bad_dense_configs_are_refused_by_name(change, needle):
    with pytest.raises(UserError) as caught:
        shape_from_config({**LLAMA_8B, **change}, name="m")
    assert needle in str(caught.value)


@pytest.mark.parametrize(("base", "change", "needle"), [
    (MIXTRAL, {"num_experts_per_tok": 9}, "exceeds the 8 experts"),
    (MIXTRAL, {"num_local_experts": 0}, "num_local_experts: 0"),
    (QWEN_MOE, {"decoder_sparse_step": 2}, "decoder_sparse_step: 2"),
    (QWEN_MOE, {"mlp_only_layers": [0, 3]}, "mlp_only_layers"),
    (QWEN_MOE, {"moe_intermediate_size": None}, "needs moe_intermediate_size"),
    (QWEN_MOE, {"num_local_experts": 60}, "num_local_experts is not understood"),
])
def test_moe_configs_outside_what_is_understood_are_refused(base, change, needle):
    with pytest.raises(UserError) as caught:
        shape_from_config({**base, **change}, name="m")
    assert needle in str(caught.value)


def test_size_cli_sizes_a_mixtral_folder_and_refuses_a_broken_one(tmp_path):
    good = tmp_path / "mixtral"
    good.mkdir()
    shutil.copy(FIXTURES / "mixtral-8x7b-v0.1.config.json", good / "config.json")
    result = runner.invoke(app, ["size", str(good), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params"] == 46_702_792_704
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**LLAMA_8B, "num_attention_heads": 0}))
    refused = runner.invoke(app, ["size", str(bad)])
    assert refused.exit_code == 2 and "num_attention_heads" in refused.output
    assert "Traceback" not in refused.output and len(refused.output.strip().splitlines()) == 1


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, "\xff\xfe", "[1, 2]"])
def test_unreadable_config_json_files_are_user_errors(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(UserError):
        resolve_model(str(path))


@pytest.mark.parametrize("model", ["x" * 100_000, "a\x00b", "a\nb", "/" + "x" * 300])
def test_model_arguments_that_are_no_path_or_name_exit_2(model):
    result = runner.invoke(app, ["size", model])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
