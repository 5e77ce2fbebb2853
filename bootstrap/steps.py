"""The bootstrap sequence, in order. Each step is a check and an apply (see ``plan.Step``)."""

from __future__ import annotations

from dsinfra.bootstrap import idle_watch, nodekit
from dsinfra.bootstrap import steps_engine as engine
from dsinfra.bootstrap import steps_gpu as gpu
from dsinfra.bootstrap import steps_spot as spot
from dsinfra.bootstrap import steps_system as system
from dsinfra.bootstrap import steps_weights as weights
from dsinfra.bootstrap.plan import Step


def _has_efa(plan) -> bool:
    # What the launch attached, not what the type allows: a p4d without EFA interfaces in its
    # launch template has no EFA device, and fi_info would find none.
    return plan.host.efa_interfaces > 0


def _is_head(plan) -> bool:
    return plan.host.role == "head"


def _serves(plan) -> bool:
    """Every node whose engine answers the API: the head of a multi-node engine, or each
    replica where every node runs its own (engine.engine_nodes)."""
    return _is_head(plan) or plan.engine.nodes == 1


def _is_spot(plan) -> bool:
    return plan.spot


def _is_head_across_efa(plan) -> bool:
    # Only across nodes does NCCL pick a network; inside one node it uses NVLink.
    return _is_head(plan) and plan.engine.nodes > 1 and _has_efa(plan)


STEPS: tuple[Step, ...] = (
    Step("cloud-init", system.cloud_init_done, system.wait_cloud_init,
         describe="wait for cloud-init to finish"),
    Step("host-facts", system.read_facts, describe="OS release, kernel, DLAMI, GPUs"),
    Step("nvidia-driver", system.driver_ready, system.install_driver,
         describe="NVIDIA driver, CUDA toolkit, fabric manager on NVSwitch hosts"),
    Step("efa", system.efa_ready, system.install_efa, applies_to=_has_efa,
         describe="EFA software, devices and the NCCL environment"),
    Step("gpu-probe", gpu.gpus_match_catalog,
         describe="`dsinfra host check`: GPUs, NVLink, fabric, attached EFA"),
    Step("docker", system.docker_ready, system.install_docker,
         describe="Docker CE and the NVIDIA container runtime"),
    Step("container-gpus", system.container_sees_all_gpus,
         describe="a container sees every GPU"),
    Step("node-kit", nodekit.kit_ready, nodekit.install_kit, applies_to=lambda p: p.node_kit,
         describe="boto3 and dsinfra's node-side tools in /opt/dsinfra/kit"),
    Step("model-cache", system.cache_ready, system.prepare_cache,
         describe="Hugging Face cache on local NVMe (RAID 0), the DLAMI's NVMe, or EBS"),
    Step("model-weights", weights.weights_ready, weights.copy_weights,
         applies_to=lambda p: bool(p.engine.model_cache),
         describe="the weights from the stack's S3 mirror (dsinfra:modelCache), verified"),
    Step("engine-image", engine.image_present, engine.pull_image,
         describe="the engine's container image, pulled on every host in parallel"),
    Step("engine", engine.engine_ready, engine.start_engine, phase="engine",
         describe="the inference container as a systemd unit"),
    Step("health", engine.endpoint_healthy, engine.wait_for_endpoint, applies_to=_serves,
         phase="health", describe="/health, /v1/models and one chat completion"),
    Step("nccl-network", engine.nccl_over_efa, applies_to=_is_head_across_efa, phase="health",
         describe="NCCL runs over EFA through aws-ofi-nccl, not TCP sockets"),
    Step("spot-watch", spot.watcher_ready, spot.start_watcher, applies_to=_is_spot,
         phase="engine", describe="spot interruption watcher: drains the engine on a notice"),
    Step("idle-watch", idle_watch.watch_ready, idle_watch.install_watch,
         applies_to=lambda p: _is_head(p) or bool(p.idle_watch and p.idle_watch.replicas),
         phase="health", describe="idle autostop: a systemd timer reads the engine's metrics"),
)


def step_names() -> list[str]:
    return [step.name for step in STEPS]
