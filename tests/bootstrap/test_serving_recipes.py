"""Issue 15: the engine container gets the host's EFA user space and current NCCL/libfabric
environment, engine flags come from per-family recipes, and the health step reads NCCL's own
start-up lines (recorded from public threads: tests/fixtures/nccl/SOURCE.md)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dsinfra.bootstrap import engine as eng
from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.bootstrap.nccl_log import nccl_problem, read_nccl_network
from dsinfra.config import parse_stack_config
from dsinfra.recipes import RECIPES, recipe_for

NCCL = Path(__file__).resolve().parents[1] / "fixtures" / "nccl"


def _plan(nodes=1, engine="vllm", model="deepseek-ai/DeepSeek-R1", **config):
    cfg = parse_stack_config("t", {"tier": "distributed", "budget": {"amountUsd": 1},
                                   "engine": engine, "nodeCount": nodes, "model": model,
                                   "precision": "fp8", **config})
    hosts = [HostSpec(name=f"n{i}", address=f"10.0.0.{i + 5}", role="head" if i == 0 else
                      "worker", instance_type="p5.48xlarge", node_rank=i, efa_interfaces=32)
             for i in range(nodes)]
    return eng.engine_plan(cfg, hosts), hosts


def _argv(script: str) -> list[str]:
    return shlex.split(script.splitlines()[-1])


# --- 1. EFA inside the container ----------------------------------------------------------

def test_efa_env_drops_the_settings_current_versions_make_unnecessary():
    lines = eng.efa_env(32, "6.8.0-1031-aws").splitlines()
    assert "FI_PROVIDER=efa" in lines and "NCCL_DEBUG=INFO" in lines
    for stale in ("NCCL_PROTO", "FI_EFA_USE_DEVICE_RDMA", "FI_EFA_FORK_SAFE"):
        assert not any(line.startswith(stale) for line in lines), stale


@pytest.mark.parametrize("kernel, fork_safe", [("5.10.0-1057-aws", True),
                                               ("5.15.0-1019-aws", False),
                                               (None, False)])
def test_fork_safe_only_below_kernel_5_15(kernel, fork_safe):
    assert ("FI_EFA_FORK_SAFE=1" in eng.efa_env(4, kernel).splitlines()) is fork_safe


def test_efa_host_libraries_are_mounted_read_only_with_the_library_path():
    plan, hosts = _plan(2)
    argv = _argv(eng.run_script(plan, hosts[1], cache_dir="/c", efa=True))
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "-v"]
    assert "/opt/amazon/efa:/opt/amazon/efa:ro" in volumes
    assert "/opt/amazon/ofi-nccl:/opt/amazon/ofi-nccl:ro" in volumes
    env = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    library_path = next(e for e in env if e.startswith("LD_LIBRARY_PATH="))
    assert library_path.split("=", 1)[1].split(":")[:6] == [
        "/opt/amazon/ofi-nccl/lib", "/opt/amazon/ofi-nccl/lib64",
        "/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu", "/opt/amazon/efa/lib",
        "/opt/amazon/efa/lib64", "/opt/amazon/efa/lib/x86_64-linux-gnu"]
    assert argv[argv.index("--device") + 1] == "/dev/infiniband"


def test_without_efa_nothing_of_the_host_is_mounted():
    plan, hosts = _plan(1)
    script = eng.run_script(plan, hosts[0], cache_dir="/c", efa=False)
    assert "/opt/amazon" not in script and "LD_LIBRARY_PATH" not in script


@pytest.mark.parametrize("fixture, networks, provider", [
    ("ofi-efa-libfabric.log", ("Libfabric",), ("efa",)),
    ("ofi-efa-aws-libfabric.log", ("AWS Libfabric",), ("efa",)),
])
def test_recorded_ofi_start_up_lines_prove_efa(fixture, networks, provider):
    found = read_nccl_network((NCCL / fixture).read_text())
    assert (found.networks, found.providers) == (networks, provider)
    assert nccl_problem(found) is None


def test_recorded_socket_fallback_fails_with_the_fix():
    found = read_nccl_network((NCCL / "socket-fallback.log").read_text())
    assert found.fell_back_to_socket
    problem = nccl_problem(found)
    assert "TCP sockets" in problem and "/opt/amazon/ofi-nccl" in problem


def test_one_socket_communicator_among_ofi_ones_is_still_a_fallback():
    log = (NCCL / "ofi-efa-libfabric.log").read_text() + \
        (NCCL / "socket-fallback.log").read_text()
    assert nccl_problem(read_nccl_network(log)) is not None


def test_no_network_line_at_all_is_not_taken_for_success():
    problem = nccl_problem(read_nccl_network("fake engine serving on port 8000\n"))
    assert problem and "Using network" in problem


# --- 2. recipes as data -------------------------------------------------------------------

@pytest.mark.parametrize("engine, model, family, flags", [
    ("vllm", "deepseek-ai/DeepSeek-R1", "deepseek-r1",
     ("--trust-remote-code", "--enable-expert-parallel", "--reasoning-parser", "deepseek_r1")),
    ("vllm", "deepseek-ai/DeepSeek-R1-0528", "deepseek-r1",
     ("--trust-remote-code", "--enable-expert-parallel", "--reasoning-parser", "deepseek_r1")),
    ("vllm", "deepseek-ai/DeepSeek-V3", "deepseek-v3",
     ("--trust-remote-code", "--enable-expert-parallel")),
    ("vllm", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "deepseek-r1-distill",
     ("--reasoning-parser", "deepseek_r1")),
    ("sglang", "deepseek-ai/DeepSeek-V3", "deepseek-v3", ("--trust-remote-code",)),
    ("sglang", "deepseek-ai/DeepSeek-R1", "deepseek-r1",
     ("--trust-remote-code", "--reasoning-parser", "deepseek-r1")),
    ("vllm", "Qwen/Qwen2.5-7B-Instruct", "generic", ()),
])
def test_each_engine_and_family_gets_its_recipe(engine, model, family, flags):
    recipe = recipe_for(engine, model)
    assert (recipe.family, recipe.flags) == (family, flags)


def test_every_recipe_cites_its_source():
    assert all(recipe.sources for recipe in RECIPES)


def test_the_unit_and_run_script_are_rendered_from_the_recipe():
    plan, hosts = _plan(2, engine={"name": "vllm", "extraArgs": ["--max-num-seqs", "64"]})
    head = eng.run_script(plan, hosts[0], cache_dir="/c", efa=True)
    assert ("--trust-remote-code --enable-expert-parallel --reasoning-parser deepseek_r1 "
            "--max-num-seqs 64") in head  # the stack's extraArgs come after the recipe
    unit = eng.systemd_unit(plan)
    assert "recipe deepseek-r1)" in unit and "# recipe source: vllm-project/recipes" in unit


def test_multi_node_vllm_sets_each_nodes_own_host_ip():
    plan, hosts = _plan(2)
    for host in hosts:
        argv = _argv(eng.run_script(plan, host, cache_dir="/c", efa=True))
        env = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
        assert f"VLLM_HOST_IP={host.peer_address}" in env


def test_single_node_and_sglang_get_no_vllm_host_ip():
    for plan, hosts in (_plan(1), _plan(2, engine="sglang")):
        assert "VLLM_HOST_IP" not in eng.run_script(plan, hosts[-1], cache_dir="/c", efa=True)


def test_sglang_r1_gets_its_recipe_flags():
    plan, hosts = _plan(2, engine="sglang")
    worker = eng.run_script(plan, hosts[1], cache_dir="/c", efa=True)
    assert "--trust-remote-code --reasoning-parser deepseek-r1" in worker


@pytest.mark.parametrize("path,plugin", [
    ("/opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so", "ofi"),          # installer >= 1.44
    ("/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu/libnccl-net.so", None),  # before 1.44
    (None, None)])
def test_nccl_net_plugin_follows_the_plugin_file_name(path, plugin):
    """NCCL 2.19+ (src/plugin/plugin_open.cc) opens libnccl-net.so unless NCCL_NET_PLUGIN
    names another: libnccl-net-ofi.so is loaded only with NCCL_NET_PLUGIN=ofi."""
    env = eng.efa_env(32, "6.8.0-1031-aws", path).splitlines()
    assert [l for l in env if l.startswith("NCCL_NET_PLUGIN")] == \
        ([f"NCCL_NET_PLUGIN={plugin}"] if plugin else [])
