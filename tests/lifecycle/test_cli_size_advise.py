"""`dsinfra size` and `dsinfra advise` through typer's CliRunner: JSON shape, exit statuses,
no traceback on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

runner = CliRunner()


def test_size_json_has_the_documented_fields():
    result = runner.invoke(app, ["size", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    for key in ("model", "precision", "params", "weights_bytes", "kv_bytes_per_token",
                "candidates", "recommended"):
        assert key in payload
    assert payload["recommended"] == "g6.xlarge"
    row = payload["candidates"][0]
    assert set(row) >= {"instance_type", "fits", "nodes", "gpus", "tensor_parallel",
                        "pipeline_parallel", "hourly_usd"}


def test_size_prints_a_table_and_the_recommendation():
    result = runner.invoke(app, ["size", "DeepSeek-R1", "--precision", "fp8",
                                 "--context", "32768"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "p5en.48xlarge" in result.stdout
    assert "Recommended: 1x p5en.48xlarge" in result.stdout


def test_precision_is_accepted_in_either_case():
    upper = runner.invoke(app, ["size", "DeepSeek-R1", "-p", "FP8", "--kv-cache-dtype", "FP8",
                                "--json"])
    assert upper.exit_code == 0, upper.output
    lower = runner.invoke(app, ["size", "DeepSeek-R1", "-p", "fp8", "--kv-cache-dtype", "fp8",
                                "--json"])
    assert json.loads(upper.stdout) == json.loads(lower.stdout)
    assert json.loads(upper.stdout)["precision"] == "fp8"


@pytest.mark.parametrize(("args", "needle"), [
    (["size", "gpt-5"], "argument MODEL: unknown model 'gpt-5'"),
    (["size", "DeepSeek-V3", "--precision", "fp4"], "--precision 'fp4'; allowed: bf16"),
    (["size", "DeepSeek-V3", "--kv-cache-dtype", "int2"], "--kv-cache-dtype"),
    (["size", "/nonexistent/config.json"], "argument MODEL: model file '/nonexistent/config"
     ".json': no such file"),
    (["size", "./missing/config.json"], "model file './missing/config.json': no such file"),
    (["size", "DeepSeek-V3", "--region", "mars-1"], "--region 'mars-1'"),
    (["size", "DeepSeek-V3", "--max-nodes", "0"], "--max-nodes 0; allowed: 1 to 64"),
    (["size", "DeepSeek-V3", "--context", "0"], "--context 0"),
    (["advise", "--hardware-price", "1", "--local-monthly", "1", "--ops-experience", "guru"],
     "--ops-experience 'guru'; allowed: none, some, strong"),
    (["advise", "--hardware-price", "1", "--local-monthly", "1", "--instance-type", "m5.large"],
     "--instance-type 'm5.large'"),
    (["advise", "--hardware-price", "-5", "--local-monthly", "1"], "--hardware-price -5"),
])
def test_bad_arguments_exit_2_naming_the_argument_without_traceback(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_advise_json_for_the_article_example():
    result = runner.invoke(app, ["advise", "--cloud-monthly", "8000", "--hardware-price",
                                 "50000", "--local-monthly", "500", "--currency", "CNY",
                                 "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["break_even_month"] == 7
    assert payload["recommendation"] == "self-host"
    assert payload["currency"] == "CNY"


def test_advise_prices_the_cloud_from_the_catalog():
    result = runner.invoke(app, ["advise", "--hardware-price", "20000", "--local-monthly",
                                 "100", "--instance-type", "g5.2xlarge", "--usage-hours",
                                 "200", "--json"])
    payload = json.loads(result.stdout)
    assert payload["inputs"]["cloud_monthly"] == pytest.approx(1.212 * 200)
    assert "as of 2026-07-20" in payload["cloud_price_source"]


def test_advise_sizes_the_model_on_the_local_gpus():
    base = ["advise", "--hardware-price", "15000", "--local-monthly", "300", "--cloud-monthly",
            "8000", "--json", "--local-gpu-gib", "24"]
    fits = json.loads(runner.invoke(app, base + ["--model", "DeepSeek-R1-Distill-Qwen-7B"]).stdout)
    assert fits["inputs"]["local_vram_sufficient"] is True
    assert fits["recommendation"] == "self-host"
    too_big = json.loads(runner.invoke(app, base + ["--model",
                                                    "DeepSeek-R1-Distill-Qwen-32B"]).stdout)
    assert too_big["inputs"]["local_vram_sufficient"] is False
    assert too_big["recommendation"] == "cloud"
    assert "cannot hold" in too_big["local_fit"]


def test_advise_model_without_gpu_memory_is_refused():
    result = runner.invoke(app, ["advise", "--hardware-price", "1", "--local-monthly", "1",
                                 "--model", "DeepSeek-V3"])
    assert result.exit_code == 2 and "--local-gpu-gib" in result.output


def test_size_max_nodes_limits_multi_node_candidates():
    result = runner.invoke(app, ["size", "DeepSeek-R1", "--precision", "bf16", "--max-nodes",
                                 "1", "--json"])
    payload = json.loads(result.stdout)
    assert all(c["nodes"] == 1 for c in payload["candidates"])
    assert payload["recommended"] is None


def test_size_defaults_to_the_published_precision_and_knows_dated_variants():
    """Issue 22: R1 and V3 are published in FP8, so `size` sizes them in FP8 unless told
    otherwise; DeepSeek-R1-0528 (which the recipe table matches as R1) is a known model."""
    import json

    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    runner = CliRunner()
    for model in ("deepseek-r1", "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1-0528",
                  "deepseek-ai/DeepSeek-V3-0324"):
        result = runner.invoke(app, ["size", model, "--json"])
        assert result.exit_code == 0, (model, result.output)
        assert json.loads(result.stdout)["precision"] == "fp8", model
    told = runner.invoke(app, ["size", "deepseek-r1", "--precision", "bf16", "--json"])
    assert json.loads(told.stdout)["precision"] == "bf16"
    distill = runner.invoke(app, ["size", "DeepSeek-R1-Distill-Qwen-7B", "--json"])
    assert json.loads(distill.stdout)["precision"] == "bf16"


def test_every_r1_v3_name_the_recipes_match_is_sizeable():
    from dsinfra.models import BUILTIN_MODELS, resolve_model
    from dsinfra.recipes import RECIPES

    for recipe in RECIPES:
        if recipe.family in ("deepseek-r1", "deepseek-v3"):
            names = [n for n in BUILTIN_MODELS if recipe.matches(n)]
            assert names, recipe.family
            for name in names:
                assert resolve_model(f"deepseek-ai/{name}").weights_published_in == "fp8"
    assert resolve_model("deepseek-ai/DeepSeek-R1-0528").name == "DeepSeek-R1-0528"
