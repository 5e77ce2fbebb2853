"""What the inference container runs on each host: pure functions from the stack config and the
host list to a systemd unit and an environment file. No SSH here, so every engine layout
(vLLM single/multi-node with Ray, SGLang ``--nnodes``, a custom image) is unit-testable.
What differs per engine lives in bootstrap/engines/ (one module each, one registry)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from dsinfra.bootstrap.engines import engine_for
from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.bootstrap.secrets import Secrets
from dsinfra.config import StackConfig
from dsinfra.errors import ConfigError, UserError
from dsinfra.identifiers import hf_repo_id_problem, host_text_problem, s3_uri_problem
from dsinfra.images import ImagePlan, image_plan
from dsinfra.recipes import Recipe, per_node_env, recipe_for

UNIT_NAME = "dsinfra-engine.service"
CONTAINER = "dsinfra-engine"
ETC = "/opt/dsinfra/etc"
ENGINE_ENV = f"{ETC}/engine.env"
EFA_ENV = f"{ETC}/efa.env"
RUN_SCRIPT = f"{ETC}/engine-run.sh"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
# With ``dsinfra:modelCache`` each node serves its verified copy of the mirror (the
# ``model-weights`` step): <cache mount>/dsinfra-models/<org>/<name> on the host, mounted
# read-only at /models/<org>/<name>, and the engine told the repo id as the served name.
# The copy is a sibling of the Hugging Face cache folder, never inside it: the container mounts
# that folder read-write, and the copy is written by root, so nothing the container can write
# may lie on the copy's paths (a link planted there would send root's writes anywhere).
MODELS_ON_HOST = "dsinfra-models"  # beside the host's model cache folder, same disk
MODELS_IN_CONTAINER = "/models"


@dataclass(frozen=True)
class EnginePlan:
    name: str  # a key of bootstrap/engines.ENGINES
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
    recipe: Recipe = Recipe("", "generic", "")
    model_cache: str | None = None  # dsinfra:modelCache, the s3:// mirror
    # Where the image comes from on stack nodes (the account's ECR, dsinfra/images.py); None
    # for an inventory's hosts, which pull ``image`` as named and get EFA from the host.
    source: ImagePlan | None = None

    @property
    def efa_in_image(self) -> bool:
        return self.source is not None and self.source.efa_layer

    @property
    def model_path(self) -> str:
        """What the engine loads: the node's local copy of the mirror where the stack has one,
        else the Hugging Face repo id (the engine downloads it). Either way the API serves it
        as ``model`` through ``--served-model-name``: vLLM's engine arguments ("The model
        name(s) used in the API ... If not specified, the model name will be the same as the
        --model argument", docs.vllm.ai/en/latest/configuration/engine_args.html) and SGLang's
        server arguments ("Override the model name returned by the v1/models endpoint",
        docs.sglang.ai/advanced_features/server_arguments.html)."""
        return f"{MODELS_IN_CONTAINER}/{self.model}" if self.model_cache else self.model

    @property
    def recipe_flags(self) -> list[str]:
        """The recipe's flags, then the stack's extraArgs (a later flag wins in both engines'
        argument parsers)."""
        return [*self.recipe.flags, *self.extra_args]

    @property
    def openai_compatible(self) -> bool:
        return engine_for(self.name).openai_compatible


def engine_nodes(config: StackConfig, hosts: list[HostSpec]) -> int:
    """Nodes one engine spans. Only nodes launched with EFA (the distributed tier's, or an
    inventory's hosts that all have ``efa_interfaces``) shard one engine across nodes (TP x PP
    over NCCL); elsewhere more than one node means independent replicas behind the load
    balancer, each its own engine: pipeline stages over TCP across zones are slower than one
    node, and the peers' ports (Ray 6379, SGLang's dist-init) are open only with EFA.
    ``sizing.check_stack_fits`` refuses at the door a model that one node cannot hold there."""
    if len(hosts) > 1 and all(h.efa_interfaces > 0 for h in hosts):
        return len(hosts)
    return 1


def engine_plan(config: StackConfig, hosts: list[HostSpec], *, ecr: bool = False
                ) -> EnginePlan:
    """The engine's layout; the values that reach the unit file, the env file and the run
    script are checked again here, right before rendering (the schema checked them first).
    ``ecr``: the nodes take the image from the account's ECR (stack nodes), derived with the
    EFA user space where one engine spans nodes over EFA (dsinfra/images.py)."""
    head = next(h for h in hosts if h.role == "head")
    _check_host_values(config)
    nodes = engine_nodes(config, hosts)
    source = image_plan(config.engine.name, config.resolved_engine_image, efa=nodes > 1) \
        if ecr else None
    return EnginePlan(
        name=config.engine.name, image=source.local if source else config.resolved_engine_image,
        source=source, port=config.engine_port,
        health_path=config.engine.health_path, model=config.resolved_model,
        max_model_len=config.max_model_len,
        gpu_memory_utilization=config.engine.gpu_memory_utilization,
        gpus_per_node=head.spec.gpu_count, nodes=nodes,
        head_address=head.peer_address,
        command=tuple(config.engine.command) if config.engine.command else None,
        extra_args=tuple(config.engine.extra_args),
        recipe=recipe_for(config.engine.name, config.resolved_model),
        model_cache=config.model_cache)


def _check_host_values(config: StackConfig) -> None:
    if problem := hf_repo_id_problem(config.resolved_model):
        raise ConfigError("dsinfra:model", config.resolved_model, problem)
    if config.model_cache and (problem := s3_uri_problem(config.model_cache)):
        raise ConfigError("dsinfra:modelCache", config.model_cache, problem)
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
    lines += engine_for(plan.name).env_lines(secrets.api_key)
    lines += [f"{name}={value}" for name, value in plan.recipe.env]
    if secrets.hf_token:
        lines += [f"HF_TOKEN={secrets.hf_token}", f"HUGGING_FACE_HUB_TOKEN={secrets.hf_token}"]
    return "\n".join(lines) + "\n"


# The host's EFA user space, mounted read-only into the engine container: libfabric and its
# efa provider under /opt/amazon/efa, the aws-ofi-nccl plugin under /opt/amazon/ofi-nccl
# (neither the vLLM nor the SGLang image ships them: vllm-project/vllm#55635). The host's
# copies match its EFA driver, which an image's copy may not.
EFA_HOST_DIRS = ("/opt/amazon/efa", "/opt/amazon/ofi-nccl")
# Where the EFA installer puts libfabric and aws-ofi-nccl: `lib` on Ubuntu from installer 1.44
# (aws/deep-learning-containers scripts/docker/common/install_efa.sh), `lib64` on Amazon Linux,
# `lib/x86_64-linux-gnu` for aws-ofi-nccl from installers before 1.44. Looked up by glob across
# all three, never assumed from the distribution.
EFA_LIB_DIRS = ("lib", "lib64", "lib/x86_64-linux-gnu")
EFA_LD_LIBRARY_PATH = ":".join(
    [f"{root}/{sub}" for root in ("/opt/amazon/ofi-nccl", "/opt/amazon/efa")
     for sub in EFA_LIB_DIRS]
    # What the CUDA base images of both engines set; -e replaces the image's value.
    + ["/usr/local/nvidia/lib", "/usr/local/nvidia/lib64"])


def efa_lib_globs(root: str, pattern: str) -> str:
    """``root/lib/pattern root/lib64/pattern ...``: a shell glob per layout (sh has no braces)."""
    return " ".join(f"{root}/{sub}/{pattern}" for sub in EFA_LIB_DIRS)


def nccl_net_plugin(path: str | None) -> str | None:
    """``NCCL_NET_PLUGIN`` for a plugin file: NCCL (src/plugin/plugin_open.cc, 2.19 onward) opens
    ``libnccl-net.so`` when the variable is unset and ``libnccl-net-<name>.so`` for ``<name>``,
    so ``libnccl-net-ofi.so`` (EFA installer 1.44 on) needs ``ofi``."""
    match = re.fullmatch(r"libnccl-net-([A-Za-z0-9_]+)\.so", (path or "").rsplit("/", 1)[-1])
    return match.group(1) if match else None
FORK_SAFE_KERNEL = (5, 15)  # from 5.15 on the kernel makes fork safe for registered memory


def efa_env(efa_interfaces: int, kernel: str | None = None, plugin: str | None = None) -> str:
    """NCCL over EFA per the EFA cheat sheet in aws-samples/awsome-distributed-training
    (1.architectures/efa-cheatsheet.md): ``FI_PROVIDER=efa``; no ``NCCL_PROTO=simple`` (only
    aws-ofi-nccl <= 1.5 needed it, and it turns off NCCL's low-latency protocols), no
    ``FI_EFA_USE_DEVICE_RDMA=1`` (automatic from libfabric 1.18; the EFA installer dsinfra pins
    and current DLAMIs ship 2.x), ``FI_EFA_FORK_SAFE=1`` only below kernel 5.15.
    ``NCCL_DEBUG=INFO`` for the init and network subsystems only: the health step reads the
    ``Using network`` lines to prove the plugin is used (bootstrap/nccl_log.py)."""
    lines = ["FI_PROVIDER=efa", "NCCL_SOCKET_IFNAME=^docker,lo,veth", "NCCL_DEBUG=INFO",
             "NCCL_DEBUG_SUBSYS=INIT,NET", f"DSINFRA_EFA_INTERFACES={efa_interfaces}"]
    if name := nccl_net_plugin(plugin):
        lines.append(f"NCCL_NET_PLUGIN={name}")
    if kernel_release(kernel) < FORK_SAFE_KERNEL:
        lines.insert(1, "FI_EFA_FORK_SAFE=1")
    return "\n".join(lines) + "\n"


def kernel_release(kernel: str | None) -> tuple[int, int]:
    """``uname -r``'s major and minor (``6.8.0-1031-aws`` -> (6, 8)); unknown reads as new."""
    match = re.match(r"(\d+)\.(\d+)", kernel or "")
    return (int(match.group(1)), int(match.group(2))) if match else (99, 0)


def efa_docker_options(*, mount_host: bool = True) -> list[str]:
    """The EFA devices for the container; the host's EFA user space mounted read-only only
    where the image has none of its own (an inventory's hosts): a derived image carries its
    libfabric, rdma-core and aws-ofi-nccl as one set (dsinfra/images.py)."""
    options = ["--env-file", EFA_ENV, "--device", "/dev/infiniband", "--cap-add", "IPC_LOCK"]
    if mount_host:
        options += ["-e", f"LD_LIBRARY_PATH={EFA_LD_LIBRARY_PATH}"]
        for path in EFA_HOST_DIRS:
            options += ["-v", f"{path}:{path}:ro"]
    return options


def container_args(plan: EnginePlan, host: HostSpec) -> list[str]:
    """Image and arguments after ``docker run [options]``."""
    return engine_for(plan.name).container_args(plan, host)


def run_script(plan: EnginePlan, host: HostSpec, *, cache_dir: str, efa: bool) -> str:
    """The script the unit runs: plain shell quoting, which systemd's ExecStart lacks."""
    options = ["--rm", "--name", CONTAINER, "--gpus", "all", "--network", "host", "--ipc", "host",
               "--shm-size", "16g", "--ulimit", "memlock=-1", "--env-file", ENGINE_ENV,
               "-v", f"{cache_dir}:{HF_CACHE_IN_CONTAINER}"]
    if plan.model_cache:
        options += ["-v", f"{local_model_dir(cache_dir, plan.model)}:{plan.model_path}:ro"]
    for name in per_node_env(plan.name, plan.nodes):  # VLLM_HOST_IP: this node's address
        options += ["-e", f"{name}={host.peer_address}"]
    if efa:
        options += efa_docker_options(mount_host=not plan.efa_in_image)
    run = " ".join(shlex.quote(a) for a in ["docker", "run", *options,
                                            *container_args(plan, host)])
    return f"#!/bin/sh\n# Written by dsinfra bootstrap; rewritten on every run.\nexec {run}\n"


def local_model_dir(cache_dir: str, model: str) -> str:
    """Where the ``model-weights`` step puts the mirror's copy of ``model`` on a host: beside
    ``cache_dir`` (the container's read-write Hugging Face cache), on the same disk, so the
    container sees the copy only through its read-only mount."""
    parent = cache_dir.rstrip("/").rsplit("/", 1)[0] or "/"
    return f"{parent.rstrip('/')}/{MODELS_ON_HOST}/{model}"


def systemd_unit(plan: EnginePlan) -> str:
    """Restart on failure, start on boot (host network: Ray and NCCL talk to peers)."""
    from dsinfra.bootstrap.units import render_unit

    return render_unit([
        ("Unit", [("Description", f"dsinfra inference engine ({plan.name}, {plan.model}, "
                                  f"recipe {plan.recipe.family})"),
                  ("After", "docker.service network-online.target"),
                  ("Requires", "docker.service")]),
        ("Service", [("ExecStartPre", f"-/usr/bin/docker rm -f {CONTAINER}"),
                     ("ExecStart", f"/bin/sh {RUN_SCRIPT}"),
                     ("ExecStop", f"/usr/bin/docker stop {CONTAINER}"),
                     ("Restart", "on-failure"), ("RestartSec", "10"),
                     ("TimeoutStartSec", "0")]),
        ("Install", [("WantedBy", "multi-user.target")]),
    ], comments=tuple(f"recipe source: {source}" for source in plan.recipe.sources))
