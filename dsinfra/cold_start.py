"""Cold start: time from a scale-out decision to a healthy replica, predicted per stack (pure).

A replica boots from the image dsinfra bakes (engine installed; issue 27), so what remains at a
scale-out is four stages, in order, each a number with the source it rests on:

1. ``launch``: EC2 launches the instance and it boots to SSH-able. No AWS figure exists for
   GPU types; an assumption with a range (``LAUNCH_ASSUMPTIONS``), flagged ``assumed``.
2. ``weights``: the checkpoint at the stack's precision (``sizing.weights_bytes``), copied from
   the S3 mirror onto the node's instance store (which a new instance gets blank), at
   ``min(the NIC's baseline bandwidth, the fetch's connections x 85 MB/s)``: the catalog's
   baseline (``catalog.network_gbps``; one network card's share where the type has several,
   since the copy runs over the primary ENA interface), and AWS's S3 guideline of one
   connection per 85-90 MB/s (``S3_MB_PER_CONNECTION``). Every node of a replica copies the
   whole mirror (bootstrap's model-weights step), in parallel: one node's time.
3. ``engine_load``: the heaviest GPU's share of the weights into GPU memory at a published rate
   (``GPU_LOAD_GB_PER_S``), plus the engine's own start (``ENGINE_START_S``: CUDA graphs,
   profiling, warm-up); both from one published vLLM log (no lent GPU could be started to
   measure them: docs/GPU_EVIDENCE.md).
4. ``health_gate``: the target group's healthy threshold x interval (infra/loadbalancer.py),
   after which the NLB routes to the target; the NLB guide warns that registration itself "can
   take a few minutes", which is not in the sum (no figure is published).

Nothing here measures AWS: bench/bench_cold_start.py times the same stages on the test twin, and
docs/BENCHMARKS.md ("Cold start") sets the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsinfra.catalog import INSTANCE_SPECS, network_gbps
from dsinfra.errors import UserError
from dsinfra.models import resolve_model
from dsinfra.sizing import (GIB, OVERHEAD_FIXED_GIB_PER_GPU, OVERHEAD_WEIGHT_FRACTION,
                            PRECISION_BYTES, per_gpu_bytes, tensor_parallel_size,
                            weights_bytes)

if TYPE_CHECKING:
    from dsinfra.config import StackConfig

GB = 1e9

# The target group's health check (infra/loadbalancer.py: interval=15, healthy_threshold=2).
# tests/test_cold_start.py reads the Pulumi program's values and fails if these drift.
HEALTH_INTERVAL_S = 15
HEALTHY_THRESHOLD = 2
HEALTH_SOURCE = ("infra/loadbalancer.py target group health check (HTTP 200 on the engine's "
                 "health path, interval 15 s, healthy threshold 2); AWS, 'Health checks for "
                 "Network Load Balancer target groups': routing to a new target starts once "
                 "'the registration process completes and the targets pass the initial health "
                 "checks. It can take a few minutes for the registration process to complete "
                 "and health checks to start' (not counted: no figure)")

# AWS, "Best Practices Design Patterns: Optimizing Amazon S3 Performance", horizontal scaling:
# "Make one concurrent request for each 85-90 MB/s of desired network throughput. To saturate a
# 10 Gb/s network interface card (NIC), you might use about 15 concurrent requests ... You can
# scale up the concurrent requests over more connections to saturate faster NICs, such as
# 25 Gb/s or 100 Gb/s NICs." The low end is taken.
S3_MB_PER_CONNECTION = 85.0
S3_SOURCE = ("AWS S3 performance guidelines (horizontal scaling and request parallelization): "
             "one concurrent request per 85-90 MB/s")
# The node's copy (cloud/model_cache.py DEFAULT_CONCURRENCY; a test keeps the two equal): the
# core cannot import the boto3 edge, so the number is restated here.
FETCH_CONNECTIONS = 32

# Weights from the node's disk into GPU memory, GB/s: vllm-project/vllm#20264 (2025-06) logs
# "Model loading took 3.4213 GiB and 0.902026 seconds" (3.67 GB / 0.90 s = 4.1 GB/s; the node
# had the file in page cache or on fast disk, the issue does not say). Every tier's node has
# more memory than its copy of the weights, so right after the copy from the mirror they are in
# page cache. No lent GPU could be started to measure it ourselves (docs/GPU_EVIDENCE.md).
GPU_LOAD_GB_PER_S = 4.0
GPU_LOAD_SOURCE = ("vllm-project/vllm#20264: 'Model loading took 3.4213 GiB and 0.902026 "
                   "seconds' (4.1 GB/s; not measured by us)")
# What vLLM spends after the weights are in: engine init (profiling, KV cache, CUDA graph
# capture, warm-up) with a reused torch.compile cache, plus process start to the first
# answer. vllm-project/vllm#20264 (2025-06): "init engine (profile, create kv cache, warmup
# model) took 34.11 seconds", and "the response is received after 59s in total" with weights
# loaded in 0.90 s: 58 s besides the weights. Without the compile cache in the baked image,
# torch.compile adds ~29 s more ("torch.compile takes 28.77 s in total",
# kubernetes-sigs/gateway-api-inference-extension#550).
ENGINE_START_S = 58.0
ENGINE_START_SOURCE = ("vllm-project/vllm#20264: 59 s from start to first response, 0.90 s "
                       "of it loading weights (torch.compile cache reused)")


@dataclass(frozen=True)
class LaunchAssumption:
    seconds: float
    low_s: float
    high_s: float


# EC2 launch to SSH-able, by family. AWS publishes no launch time; these are assumptions:
# "it can take a few minutes to launch an EC2 instance" (AWS Auto Scaling Plans API,
# ScalingInstruction.scheduledActionBufferTime, default 300 s), an AWS sample's maintainers
# "7~8 minutes from scratch, including the time to start the EC2 instance and pull all the
# models from S3" for a GPU node (aws-samples/comfyui-on-eks#7). The 8-GPU NVSwitch types boot
# longer (larger firmware, NVSwitch fabric initialisation), hence the wider range.
LAUNCH_ASSUMPTIONS: dict[str, LaunchAssumption] = {
    "g": LaunchAssumption(90.0, 60.0, 180.0),
    "p": LaunchAssumption(300.0, 180.0, 600.0),
}
LAUNCH_SOURCE = ("ASSUMED (no published figure): 'it can take a few minutes to launch an EC2 "
                 "instance' (AWS Auto Scaling Plans API, scheduledActionBufferTime); "
                 "aws-samples/comfyui-on-eks#7: 7-8 minutes from scratch with the model pull")


@dataclass(frozen=True)
class Stage:
    name: str  # launch, weights, engine_load, health_gate
    seconds: float
    basis: str  # the arithmetic, with its inputs
    source: str
    assumed: bool = False
    low_s: float | None = None
    high_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": round(self.seconds, 1), "basis": self.basis,
                "source": self.source, "assumed": self.assumed,
                "low_s": self.low_s, "high_s": self.high_s}


@dataclass(frozen=True)
class ColdStart:
    instance_type: str
    nodes: int  # per replica (every node copies and loads in parallel)
    model: str
    precision: str
    weights_bytes: int
    copy_gbps: float  # the rate the weights stage uses
    stages: tuple[Stage, ...]

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def dominant(self) -> str:
        return max(self.stages, key=lambda s: s.seconds).name

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"instance_type": self.instance_type, "nodes_per_replica": self.nodes,
                "model": self.model, "precision": self.precision,
                "weights_bytes": self.weights_bytes, "copy_gbps": round(self.copy_gbps, 2),
                "total_s": round(self.total_s, 1), "dominant": self.dominant,
                "stages": [s.to_dict() for s in self.stages]}


def copy_gbps(instance_type: str, connections: int = FETCH_CONNECTIONS) -> float:
    """Gbit/s a node copies the mirror at: its NIC's baseline (one card's share) or what S3
    serves that many connections, whichever is lower."""
    spec = INSTANCE_SPECS[instance_type]
    nic = network_gbps(instance_type) / max(spec.network_cards, 1)
    return min(nic, connections * S3_MB_PER_CONNECTION * 8 / 1000)


def predict(instance_type: str, model: str, precision: str, *, nodes: int = 1,
            connections: int = FETCH_CONNECTIONS) -> ColdStart:
    """The four stages for one replica of ``nodes`` x ``instance_type`` serving ``model``.
    ``UserError`` for a model that cannot be sized offline."""
    spec = INSTANCE_SPECS[instance_type]
    shape = resolve_model(model)
    total = weights_bytes(shape.params, precision)
    launch = LAUNCH_ASSUMPTIONS["p" if spec.quota_family == "P" else "g"]
    nic = network_gbps(instance_type)
    rate = copy_gbps(instance_type, connections)
    s3_gbps = connections * S3_MB_PER_CONNECTION * 8 / 1000
    tp = tensor_parallel_size(shape, spec.gpu_count) or 1
    # The heaviest GPU's weights: the sizer's per-GPU bytes with no KV cache, less its
    # runtime overhead (fixed + a fraction of the weights), so the split rule stays the sizer's.
    heaviest = per_gpu_bytes(shape, PRECISION_BYTES[precision], 0.0, 0, tp, nodes)
    gpu_bytes = (heaviest - OVERHEAD_FIXED_GIB_PER_GPU * GIB) / (1 + OVERHEAD_WEIGHT_FRACTION)
    load_s = gpu_bytes / (GPU_LOAD_GB_PER_S * GB)
    stages = (
        Stage("launch", launch.seconds, f"EC2 launch to SSH-able, {spec.family} "
              f"({'P' if spec.quota_family == 'P' else 'G'} family)", LAUNCH_SOURCE,
              assumed=True, low_s=launch.low_s, high_s=launch.high_s),
        Stage("weights", total / (rate * GB / 8),
              f"{total / GB:,.1f} GB ({precision}) / min({instance_type} NIC "
              f"{nic:g} Gbps / {spec.network_cards} card(s), {connections} connections x "
              f"{S3_MB_PER_CONNECTION:g} MB/s = {s3_gbps:.1f} Gbps) = {rate:.1f} Gbps",
              f"catalog.network_gbps (baseline); {S3_SOURCE}"),
        Stage("engine_load", load_s + ENGINE_START_S,
              f"{gpu_bytes / GB:,.1f} GB on the heaviest of {tp * nodes} GPU(s) / "
              f"{GPU_LOAD_GB_PER_S:g} GB/s + {ENGINE_START_S:g} s engine start",
              f"{GPU_LOAD_SOURCE}; {ENGINE_START_SOURCE}"),
        Stage("health_gate", HEALTHY_THRESHOLD * HEALTH_INTERVAL_S,
              f"healthy threshold {HEALTHY_THRESHOLD} x interval {HEALTH_INTERVAL_S} s",
              HEALTH_SOURCE),
    )
    return ColdStart(instance_type=instance_type, nodes=nodes, model=shape.name,
                     precision=precision, weights_bytes=total, copy_gbps=rate, stages=stages)


def predict_for_config(config: "StackConfig") -> ColdStart | None:
    """The stack's replica (one node off EFA, the node group on EFA: dsinfra.replicas); None
    where the model cannot be sized offline."""
    from dsinfra.replicas import nodes_per_replica

    try:
        return predict(config.resolved_instance_type, config.resolved_model, config.precision,
                       nodes=nodes_per_replica(config))
    except UserError:
        return None
