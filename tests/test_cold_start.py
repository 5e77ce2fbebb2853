"""The cold-start predictor (dsinfra/cold_start.py), property by property over every shipped
tier (stacks/Pulumi.<tier>.yaml for each tier in TIERS): the stages add up, the weights stage
follows the model's size from the sizer and the instance's bandwidth from the catalog, and the
health gate is the target group's health check as the Pulumi program declares it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dsinfra import catalog, cold_start
from dsinfra.catalog import GPU_INSTANCE_TYPES, INSTANCE_SPECS
from dsinfra.cold_start import predict, predict_for_config
from dsinfra.models import resolve_model
from dsinfra.replicas import nodes_per_replica
from dsinfra.sizing import size_model
from dsinfra.stackfiles import load_stack
from dsinfra.tiers import TIERS

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("launch", "weights", "engine_load", "health_gate")


@pytest.fixture(scope="module", params=tuple(TIERS))
def shipped(request):
    config = load_stack(request.param, ROOT)
    return config, predict_for_config(config)


def test_every_shipped_tier_is_predicted_and_its_stages_add_up(shipped):
    config, predicted = shipped
    assert predicted is not None, f"{config.stack}: its model could not be sized"
    assert tuple(s.name for s in predicted.stages) == STAGES
    assert predicted.total_s == pytest.approx(sum(s.seconds for s in predicted.stages))
    assert all(s.seconds > 0 and s.source for s in predicted.stages)
    assert predicted.dominant == max(predicted.stages, key=lambda s: s.seconds).name
    as_json = predicted.to_dict()
    assert as_json["total_s"] == pytest.approx(sum(s["seconds"] for s in as_json["stages"]),
                                               abs=0.5)


def test_the_weights_are_the_sizers_bytes_at_the_stacks_precision(shipped):
    config, predicted = shipped
    sized = size_model(config.resolved_model, config.precision, 1024, 1)
    assert predicted.weights_bytes == sized.weights_bytes
    assert predicted.precision == config.precision
    assert predicted.nodes == nodes_per_replica(config)


def test_the_weights_stage_is_bytes_over_the_copy_rate(shipped):
    _, predicted = shipped
    weights = predicted.stage("weights").seconds
    assert weights == pytest.approx(predicted.weights_bytes * 8 / (predicted.copy_gbps * 1e9))


def test_half_the_bytes_take_half_the_time(shipped):
    """The same model and instance at one byte a parameter against two (fp8 vs bf16)."""
    config, _ = shipped
    two = predict(config.resolved_instance_type, config.resolved_model, "bf16")
    one = predict(config.resolved_instance_type, config.resolved_model, "fp8")
    assert one.weights_bytes * 2 == pytest.approx(two.weights_bytes, rel=1e-9)
    assert one.stage("weights").seconds * 2 == pytest.approx(two.stage("weights").seconds)
    assert one.stage("launch") == two.stage("launch")
    assert one.stage("health_gate") == two.stage("health_gate")


def test_the_copy_follows_the_nic_until_s3_connections_cap_it(shipped, monkeypatch):
    """Below the cap a NIC twice as fast copies in half the time; above it, no faster."""
    config, _ = shipped
    itype, model = config.resolved_instance_type, config.resolved_model
    cards = INSTANCE_SPECS[itype].network_cards
    cap = cold_start.FETCH_CONNECTIONS * cold_start.S3_MB_PER_CONNECTION * 8 / 1000
    slow, fast = cap / 8 * cards, cap / 4 * cards  # both under the cap, per card
    times = {}
    for gbps in (slow, fast, cap * 10 * cards, cap * 100 * cards):
        monkeypatch.setitem(catalog.NETWORK_GBPS, itype, gbps)
        times[gbps] = predict(itype, model, config.precision).stage("weights").seconds
    assert times[slow] == pytest.approx(2 * times[fast])
    assert times[cap * 10 * cards] == pytest.approx(times[cap * 100 * cards])
    assert times[cap * 10 * cards] < times[fast]


def test_more_connections_lift_the_s3_cap_only_up_to_the_nic(shipped):
    config, _ = shipped
    itype = config.resolved_instance_type
    nic = catalog.network_gbps(itype) / INSTANCE_SPECS[itype].network_cards
    few = predict(itype, config.resolved_model, config.precision, connections=1)
    many = predict(itype, config.resolved_model, config.precision, connections=100_000)
    assert few.copy_gbps == pytest.approx(cold_start.S3_MB_PER_CONNECTION * 8 / 1000)
    assert many.copy_gbps == pytest.approx(nic)


def test_the_engine_load_grows_with_the_bytes_on_the_heaviest_gpu(shipped):
    config, _ = shipped
    small = predict(config.resolved_instance_type, config.resolved_model, "fp8")
    large = predict(config.resolved_instance_type, config.resolved_model, "bf16")
    extra = large.stage("engine_load").seconds - small.stage("engine_load").seconds
    assert extra > 0
    assert small.stage("engine_load").seconds > cold_start.ENGINE_START_S


def test_a_larger_model_on_the_same_instance_takes_longer_to_copy():
    small = predict("p4d.24xlarge", "DeepSeek-R1-Distill-Qwen-7B", "bf16")
    large = predict("p4d.24xlarge", "DeepSeek-R1-Distill-Llama-70B", "bf16")
    ratio = resolve_model("DeepSeek-R1-Distill-Llama-70B").params / \
        resolve_model("DeepSeek-R1-Distill-Qwen-7B").params
    assert large.stage("weights").seconds / small.stage("weights").seconds == \
        pytest.approx(ratio, rel=1e-6)


def test_a_model_that_cannot_be_sized_is_no_prediction(shipped):
    config, _ = shipped
    other = config.model_copy(update={"model": "someone/not-a-built-in-model"})
    assert predict_for_config(other) is None


def test_the_health_gate_is_the_target_groups_check_in_the_program():
    """Read infra/loadbalancer.py's TargetGroupHealthCheckArgs (no Pulumi import): a change
    there without one here fails."""
    tree = ast.parse((ROOT / "infra" / "loadbalancer.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", "") == "TargetGroupHealthCheckArgs"]
    assert len(calls) == 1
    args = {k.arg: k.value.value for k in calls[0].keywords if isinstance(k.value, ast.Constant)}
    assert args["interval"] == cold_start.HEALTH_INTERVAL_S
    assert args["healthy_threshold"] == cold_start.HEALTHY_THRESHOLD
    gate = predict("g5.2xlarge", "DeepSeek-R1-Distill-Qwen-7B", "bf16").stage("health_gate")
    assert gate.seconds == args["interval"] * args["healthy_threshold"]


def test_the_fetch_connections_are_the_node_copys():
    from dsinfra.cloud.model_cache import DEFAULT_CONCURRENCY

    assert cold_start.FETCH_CONNECTIONS == DEFAULT_CONCURRENCY


def test_every_gpu_type_has_a_bandwidth():
    missing = [t for t in GPU_INSTANCE_TYPES if t not in catalog.NETWORK_GBPS]
    assert not missing
    assert all(catalog.network_gbps(t) > 0 for t in catalog.NETWORK_GBPS)


def test_launch_is_flagged_as_an_assumption_with_its_range(shipped):
    _, predicted = shipped
    launch = predicted.stage("launch")
    assert launch.assumed and "ASSUMED" in launch.source
    assert launch.low_s <= launch.seconds <= launch.high_s
    assert not predicted.stage("weights").assumed
