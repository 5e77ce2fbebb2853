"""What the inference container runs on each host: pure functions from the stack config and the
host list to a systemd unit and an environment file. No SSH here, so every engine layout
(vLLM single/multi-node with Ray, SGLang ``--nnodes``, a custom image) is unit-testable."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.bootstrap.secrets import Secrets
from dsinfra.config import StackConfig
from dsinfra.errors import ConfigError, UserError
from dsinfra.identifiers import hf_repo_id_problem, host_text_problem

UNIT_NAME = "dsinfra-engine.service"
CONTAINER = "dsinfra-engine"
ETC = "/opt/dsinfra/etc"
ENGINE_ENV = f"{ETC}/engine.env"
EFA_ENV = f"{ETC}/efa.env"
RUN_SCRIPT = f"{ETC}/engine-run.sh"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
RAY_PORT = 6379
SGLANG_DIST_PORT = 5000


@dataclass(frozen=True)
class EnginePlan:
    name: str  # vllm | sglang | custom
    image: str
    port: int
    health_path: str
    model: str
    max_model_len: int
    gpu_memory_utilization: float
    gpus_per_node: int
    nodes: int
    head_address: str
    command: tuple[str, ...] | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def openai_compatible(self) -> bool:
        return self.name != "custom"


def engine_plan(config: StackConfig, hosts: list[HostSpec]) -> EnginePlan:
    """The engine's layout; the values that reach the unit file, the env file and the run
    script are checked again here, right before rendering (the schema checked them first)."""
    head = next(h for h in hosts if h.role == "head")
    _check_host_values(config)
    return EnginePlan(
        name=config.engine.name, image=config.resolved_engine_image, port=config.engine_port,
        health_path=config.engine.health_path, model=config.resolved_model,
        max_model_len=config.max_model_len,
        gpu_memory_utilization=config.engine.gpu_memory_utilization,
        gpus_per_node=head.spec.gpu_count, nodes=len(hosts), head_address=head.peer_address,
        command=tuple(config.engine.command) if config.engine.command else None,
        extra_args=tuple(config.engine.extra_args))


def _check_host_values(config: StackConfig) -> None:
    if problem := hf_repo_id_problem(config.resolved_model):
        raise ConfigError("dsinfra:model", config.resolved_model, problem)
    for key, value in (("engine.image", config.resolved_engine_image),
                       ("engine.healthPath", config.engine.health_path),
                       *((f"engine.command[{i}]", a) for i, a in
                         enumerate(config.engine.command or ())),
                       *((f"engine.extraArgs[{i}]", a) for i, a in
                         enumerate(config.engine.extra_args))):
        if problem := host_text_problem(value):
            raise ConfigError(f"dsinfra:{key}", value, problem)


def engine_env(plan: EnginePlan, secrets: Secrets) -> str:
    """The 0600 env file: the API key under the names each engine reads, and the HF token."""
    # A newline in a secret would add variables to the file; say which one, never its value.
    for name, secret in (("the API key", secrets.api_key), ("HF_TOKEN", secrets.hf_token)):
        if secret and host_text_problem(secret, max_chars=4096):
            raise UserError(f"{name} is not one line of printable characters; allowed: a "
                            "single-line token")
    if problem := hf_repo_id_problem(plan.model):
        raise ConfigError("dsinfra:model", plan.model, problem)
    lines = [f"DSINFRA_API_KEY={secrets.api_key}", f"API_KEY={secrets.api_key}",
             f"HF_HOME={HF_CACHE_IN_CONTAINER}", f"DSINFRA_MODEL={plan.model}"]
    if plan.name == "vllm":
        lines.append(f"VLLM_API_KEY={secrets.api_key}")  # vLLM reads it instead of --api-key
    if secrets.hf_token:
        lines += [f"HF_TOKEN={secrets.hf_token}", f"HUGGING_FACE_HUB_TOKEN={secrets.hf_token}"]
    return "\n".join(lines) + "\n"


def efa_env(efa_interfaces: int) -> str:
    """NCCL over EFA, per the awsome-distributed-training EFA cheat sheet."""
    lines = ["FI_EFA_USE_DEVICE_RDMA=1", "FI_EFA_FORK_SAFE=1", "NCCL_SOCKET_IFNAME=^docker,lo,veth",
             "NCCL_PROTO=simple", "NCCL_DEBUG=WARN", f"DSINFRA_EFA_INTERFACES={efa_interfaces}"]
    return "\n".join(lines) + "\n"


def container_args(plan: EnginePlan, host: HostSpec) -> list[str]:
    """Image and arguments after ``docker run [options]``."""
    if plan.name == "custom":
        return [plan.image, *(plan.command or ())]
    if plan.name == "sglang":
        return ["--entrypoint", "/bin/sh", plan.image, "-c", _sglang_script(plan, host)]
    if plan.nodes == 1:
        return [plan.image, *_vllm_serve_args(plan)]
    return ["--entrypoint", "/bin/bash", plan.image, "-c", _vllm_ray_script(plan, host)]


def _vllm_serve_args(plan: EnginePlan) -> list[str]:
    args = ["--model", plan.model, "--served-model-name", plan.model, "--host", "0.0.0.0",
            "--port", str(plan.port), "--tensor-parallel-size", str(plan.gpus_per_node),
            "--pipeline-parallel-size", str(plan.nodes),
            "--gpu-memory-utilization", f"{plan.gpu_memory_utilization:g}",
            "--max-model-len", str(plan.max_model_len)]
    if plan.nodes > 1:
        args += ["--distributed-executor-backend", "ray"]
    return args + list(plan.extra_args)


def _vllm_ray_script(plan: EnginePlan, host: HostSpec) -> str:
    """Ray head + vLLM on the head; a blocking Ray worker elsewhere (vLLM's run_cluster.sh)."""
    me = shlex.quote(host.peer_address)
    if host.role != "head":
        return (f"exec ray start --block --address={shlex.quote(plan.head_address)}:{RAY_PORT} "
                f"--node-ip-address={me}")
    total = plan.gpus_per_node * plan.nodes
    wait = ("until [ \"$(python3 -c 'import ray; ray.init(address=\"auto\"); "
            "print(int(ray.cluster_resources().get(\"GPU\", 0)))')\" -ge " + str(total) +
            " ]; do sleep 5; done")
    serve = " ".join(shlex.quote(a) for a in ["python3", "-m", "vllm.entrypoints.openai.api_server",
                                              *_vllm_serve_args(plan)])
    return (f"ray start --head --port={RAY_PORT} --node-ip-address={me} && {wait} && "
            f"exec {serve}")


def _sglang_script(plan: EnginePlan, host: HostSpec) -> str:
    args = ["python3", "-m", "sglang.launch_server", "--model-path", plan.model,
            "--served-model-name", plan.model, "--host", "0.0.0.0", "--port", str(plan.port),
            "--tp", str(plan.gpus_per_node * plan.nodes),
            "--mem-fraction-static", f"{plan.gpu_memory_utilization:g}",
            "--context-length", str(plan.max_model_len), *plan.extra_args]
    if plan.nodes > 1:
        args += ["--nnodes", str(plan.nodes), "--node-rank", str(host.node_rank),
                 "--dist-init-addr", f"{plan.head_address}:{SGLANG_DIST_PORT}"]
    # SGLang takes the key only as a flag: it is expanded inside the container from the env
    # file, so it is on neither the unit file nor the host's docker command line.
    return "exec " + " ".join(shlex.quote(a) for a in args) + ' --api-key "$DSINFRA_API_KEY"'


def run_script(plan: EnginePlan, host: HostSpec, *, cache_dir: str, efa: bool) -> str:
    """The script the unit runs: plain shell quoting, which systemd's ExecStart lacks."""
    options = ["--rm", "--name", CONTAINER, "--gpus", "all", "--network", "host", "--ipc", "host",
               "--shm-size", "16g", "--ulimit", "memlock=-1", "--env-file", ENGINE_ENV,
               "-v", f"{cache_dir}:{HF_CACHE_IN_CONTAINER}"]
    if efa:
        options += ["--env-file", EFA_ENV, "--device", "/dev/infiniband", "--cap-add", "IPC_LOCK"]
    run = " ".join(shlex.quote(a) for a in ["docker", "run", *options,
                                            *container_args(plan, host)])
    return f"#!/bin/sh\n# Written by dsinfra bootstrap; rewritten on every run.\nexec {run}\n"


def systemd_unit(plan: EnginePlan) -> str:
    """Restart on failure, start on boot (host network: Ray and NCCL talk to peers)."""
    return "\n".join([
        "[Unit]",
        f"Description=dsinfra inference engine ({plan.name}, {plan.model})",
        "After=docker.service network-online.target",
        "Requires=docker.service",
        "",
        "[Service]",
        f"ExecStartPre=-/usr/bin/docker rm -f {CONTAINER}",
        f"ExecStart=/bin/sh {RUN_SCRIPT}",
        f"ExecStop=/usr/bin/docker stop {CONTAINER}",
        "Restart=on-failure",
        "RestartSec=10",
        "TimeoutStartSec=0",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
