"""vLLM's OpenAI server: on one node directly, on several as a Ray cluster (head + blocking
workers, as vLLM's run_cluster.sh does) with pipeline parallelism across nodes."""

from __future__ import annotations

import shlex

from dsinfra.bootstrap.engines import Engine
from dsinfra.engines import engine_spec


class VLLM(Engine):
    name = "vllm"

    def container_args(self, plan, host) -> list[str]:
        if plan.nodes == 1:
            return [plan.image, *_vllm_serve_args(plan)]
        return ["--entrypoint", "/bin/bash", plan.image, "-c", _vllm_ray_script(plan, host)]

    def env_lines(self, api_key: str) -> list[str]:
        return [f"VLLM_API_KEY={api_key}"]  # vLLM reads it instead of --api-key


def _vllm_serve_args(plan) -> list[str]:
    args = ["--model", plan.model_path, "--served-model-name", plan.model, "--host", "0.0.0.0",
            "--port", str(plan.port), "--tensor-parallel-size", str(plan.gpus_per_node),
            "--pipeline-parallel-size", str(plan.nodes),
            "--gpu-memory-utilization", f"{plan.gpu_memory_utilization:g}",
            "--max-model-len", str(plan.max_model_len)]
    if plan.nodes > 1:
        args += ["--distributed-executor-backend", "ray"]
    return args + plan.recipe_flags


def _vllm_ray_script(plan, host) -> str:
    """Ray head + vLLM on the head; a blocking Ray worker elsewhere (vLLM's run_cluster.sh)."""
    me = shlex.quote(host.peer_address)
    ray_port = engine_spec("vllm").peer_port
    if host.role != "head":
        return (f"exec ray start --block --address={shlex.quote(plan.head_address)}:{ray_port} "
                f"--node-ip-address={me}")
    total = plan.gpus_per_node * plan.nodes
    wait = ("until [ \"$(python3 -c 'import ray; ray.init(address=\"auto\"); "
            "print(int(ray.cluster_resources().get(\"GPU\", 0)))')\" -ge " + str(total) +
            " ]; do sleep 5; done")
    serve = " ".join(shlex.quote(a) for a in ["python3", "-m", "vllm.entrypoints.openai.api_server",
                                              *_vllm_serve_args(plan)])
    return (f"ray start --head --port={ray_port} --node-ip-address={me} && {wait} && "
            f"exec {serve}")
