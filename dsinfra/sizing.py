"""Which hardware a model needs: weights + KV cache + runtime overhead, per GPU, per instance type.

The memory model (what `dsinfra size` prints and `plan`/`up` refuse on):

- weights = parameters x bytes per parameter (bf16/fp16 2, fp8/int8 1, int4 0.5), split over
  tensor parallel (TP) ranks; with pipeline parallel (PP) the heaviest stage holds
  ceil(layers / PP) layers plus one vocabulary matrix (two when PP = 1 and they are untied).
- KV cache = concurrency x context tokens x KV bytes per token, in bf16 unless fp8 KV is asked
  for. GQA: 2 x layers x kv_heads x head_dim x bytes, split over min(TP, kv_heads) ranks (vLLM
  replicates KV heads when TP exceeds them). MLA (DeepSeek-V2/V3/R1): layers x (kv_lora_rank +
  qk_rope_head_dim) x bytes, the compressed latent, which every TP rank holds in full.
- runtime overhead per GPU = 1.5 GiB fixed (CUDA context ~0.5, CUDA graphs ~0.5-1, NCCL buffers)
  plus 5% of that GPU's weights for activations of the profiling batch.
- all of it must fit in the engine's ``--gpu-memory-utilization`` share (0.90) of the memory
  the GPU reports (nvidia-smi's total, not the marketing figure).
"""

from __future__ import annotations


import math
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from dsinfra.catalog import (GPU_INSTANCE_TYPES, HOURS_PER_MONTH, INSTANCE_SPECS, PRICES_AS_OF,
                             InstanceSpec, RegionPrices, is_priced, on_demand_price)
from dsinfra.errors import ConfigError, UserError, shown_value
from dsinfra.models import ModelShape, kv_bytes_per_token, resolve_model
from dsinfra.tiers import TIERS

if TYPE_CHECKING:
    from dsinfra.config import StackConfig

GIB = 1024 ** 3
MIB = 1024 ** 2
PRECISION_BYTES: dict[str, float] = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
KV_CACHE_BYTES: dict[str, float] = {"bf16": 2, "fp8": 1}
GPU_MEMORY_UTILIZATION = 0.90
OVERHEAD_FIXED_GIB_PER_GPU = 1.5
OVERHEAD_WEIGHT_FRACTION = 0.05
DEFAULT_MAX_NODES = 8
MAX_CONCURRENCY = 1_000_000  # far beyond any engine's batch; keeps byte counts finite
TP_SIZES = (8, 4, 2, 1)  # engines shard over powers of two; the largest that divides wins
KvCacheDtype = Literal["bf16", "fp8"]


@dataclass(frozen=True)
class Candidate:
    instance_type: str
    gpu_model: str
    fits: bool
    nodes: int
    gpus: int
    tensor_parallel: int
    pipeline_parallel: int
    hourly_usd: float
    monthly_usd: float
    required_gib_per_gpu: float
    usable_gib_per_gpu: float
    precision_native: bool
    reason: str = ""


@dataclass(frozen=True)
class SizingResult:
    model: str
    attention: str
    precision: str
    kv_cache_dtype: str
    context: int
    concurrency: int
    params: int
    active_params: int
    weights_bytes: int
    kv_bytes_per_token: float
    kv_cache_bytes: float
    gpu_memory_utilization: float
    region: str
    prices_as_of: date
    candidates: list[Candidate]
    recommended: str | None
    recommended_nodes: int | None
    notes: list[str] = field(default_factory=list)

    def candidate(self, instance_type: str) -> Candidate:
        return next(c for c in self.candidates if c.instance_type == instance_type)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prices_as_of"] = self.prices_as_of.isoformat()
        return out


def weights_bytes(params: int, precision: str) -> int:
    return int(params * _precision_bytes(precision))


def _precision_bytes(precision: str) -> float:
    if precision not in PRECISION_BYTES:
        raise UserError(f"unknown precision {precision!r}; allowed: "
                        f"{', '.join(PRECISION_BYTES)}")
    return PRECISION_BYTES[precision]


def size_model(model: str, precision: str | None = None, context: int = 8192,
               concurrency: int = 1, *, kv_cache_dtype: KvCacheDtype = "bf16", region: str = "us-east-1",
               instance_types: tuple[str, ...] = GPU_INSTANCE_TYPES,
               max_nodes: int = DEFAULT_MAX_NODES,
               prices: dict[str, RegionPrices] | None = None) -> SizingResult:
    """Size ``model`` (built-in name, HF id or config.json path) on every catalog GPU type.
    ``precision`` None means the precision the model is published in (R1/V3: fp8)."""
    shape = resolve_model(model)
    precision = precision or shape.weights_published_in
    per_elem = _precision_bytes(precision)
    _check_workload(shape, context, concurrency, kv_cache_dtype)
    kv_token = kv_bytes_per_token(shape, KV_CACHE_BYTES[kv_cache_dtype])
    candidates = [_best_fit(shape, INSTANCE_SPECS[t], per_elem, precision, kv_token,
                            context * concurrency, region, max_nodes, prices)
                  for t in instance_types if is_priced(region, t, prices)]
    best = recommend(candidates)
    return SizingResult(
        model=shape.name, attention=shape.attention, precision=precision,
        kv_cache_dtype=kv_cache_dtype, context=context, concurrency=concurrency,
        params=shape.params, active_params=shape.active_params,
        weights_bytes=int(shape.params * per_elem), kv_bytes_per_token=kv_token,
        kv_cache_bytes=kv_token * context * concurrency,
        gpu_memory_utilization=GPU_MEMORY_UTILIZATION, region=region,
        prices_as_of=_prices_date(candidates, region, prices), candidates=candidates,
        recommended=best.instance_type if best else None,
        recommended_nodes=best.nodes if best else None,
        notes=_notes(shape, precision, kv_cache_dtype, best) + _cheaper_non_native(candidates,
                                                                                   best))


def _check_workload(shape: ModelShape, context: int, concurrency: int, kv_dtype: str) -> None:
    if context < 1 or context > shape.max_context:
        raise UserError(f"--context {shown_value(context)} is outside what {shape.name} supports; allowed: "
                        f"1 to {shape.max_context} tokens (its max_position_embeddings)")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UserError(f"--concurrency {shown_value(concurrency)}; allowed: 1 to "
                        f"{MAX_CONCURRENCY:,} sequences")
    if kv_dtype not in KV_CACHE_BYTES:
        raise UserError(f"--kv-cache-dtype {kv_dtype!r}; allowed: {', '.join(KV_CACHE_BYTES)}")


def tensor_parallel_size(shape: ModelShape, gpus_per_node: int) -> int | None:
    """The largest power-of-two TP <= the node's GPUs that the model's shapes divide by:
    attention heads, the MLP width, and KV heads (divisible, or replicated evenly)."""
    mlp = shape.moe_intermediate_size if shape.is_moe else shape.intermediate_size
    for tp in TP_SIZES:
        if tp > gpus_per_node:
            continue
        kv_ok = shape.kv_heads % tp == 0 or tp % shape.kv_heads == 0
        if shape.attention_heads % tp == 0 and mlp % tp == 0 and kv_ok:
            return tp
    return None


def per_gpu_bytes(shape: ModelShape, bytes_per_param: float, kv_bytes_token: float,
                  tokens: int, tp: int, pp: int) -> float:
    """Memory one GPU of the heaviest pipeline stage needs (weights + KV + overhead)."""
    vocab = shape.vocab_size * shape.hidden_size
    vocab_matrices = 1 if shape.tied_embeddings else 2
    layer_params = shape.params - vocab * vocab_matrices
    stage_layers = math.ceil(shape.layers / pp)
    stage_vocab = vocab * (vocab_matrices if pp == 1 else 1)
    weights = (layer_params * stage_layers / shape.layers + stage_vocab) * bytes_per_param / tp
    kv_shards = 1 if shape.attention == "mla" else min(tp, shape.kv_heads)
    kv = tokens * kv_bytes_token * stage_layers / shape.layers / kv_shards
    overhead = OVERHEAD_FIXED_GIB_PER_GPU * GIB + OVERHEAD_WEIGHT_FRACTION * weights
    return weights + kv + overhead


def usable_bytes_per_gpu(spec: InstanceSpec) -> float:
    return spec.gpu_memory_mib_visible * MIB * GPU_MEMORY_UTILIZATION


def evaluate(shape: ModelShape, spec: InstanceSpec, precision: str, nodes: int, *,
             context: int, concurrency: int = 1, kv_cache_dtype: str = "bf16",
             region: str = "us-east-1", prices: dict[str, RegionPrices] | None = None
             ) -> Candidate:
    """Does ``shape`` fit on exactly ``nodes`` x ``spec`` (TP within a node, PP across)?"""
    kv_token = kv_bytes_per_token(shape, KV_CACHE_BYTES[kv_cache_dtype])
    return _evaluate(shape, spec, _precision_bytes(precision), precision, kv_token,
                     context * concurrency, nodes, region, prices)


def _evaluate(shape, spec, per_elem, precision, kv_token, tokens, nodes, region, prices
              ) -> Candidate:
    # An unpriced type (p5e: Capacity Blocks only) can still be checked for fit at the door;
    # it counts $0/h here and never reaches a listing (size_model skips unpriced types).
    hourly = (on_demand_price(region, spec.name, prices).usd * nodes
              if is_priced(region, spec.name, prices) else 0.0)
    usable = usable_bytes_per_gpu(spec)
    native = spec.fp8_native or precision != "fp8"
    base = dict(instance_type=spec.name, gpu_model=spec.gpu_model or "", nodes=nodes,
                hourly_usd=round(hourly, 4), monthly_usd=round(hourly * HOURS_PER_MONTH, 2),
                usable_gib_per_gpu=round(usable / GIB, 2), precision_native=native)
    tp = tensor_parallel_size(shape, spec.gpu_count)
    if tp is None or nodes > shape.layers:
        return Candidate(fits=False, gpus=0, tensor_parallel=0, pipeline_parallel=nodes,
                         required_gib_per_gpu=0.0, reason=f"no tensor-parallel size <= "
                         f"{spec.gpu_count} divides {shape.attention_heads} attention heads",
                         **base)
    required = per_gpu_bytes(shape, per_elem, kv_token, tokens, tp, nodes)
    fits = required <= usable
    reason = "" if fits else (f"needs {required / GIB:.1f} GiB per GPU, "
                              f"{usable / GIB:.1f} GiB usable")
    return Candidate(fits=fits, gpus=tp * nodes, tensor_parallel=tp, pipeline_parallel=nodes,
                     required_gib_per_gpu=round(required / GIB, 2), reason=reason, **base)


def _best_fit(shape, spec, per_elem, precision, kv_token, tokens, region, max_nodes, prices
              ) -> Candidate:
    # Serving across nodes needs a fast fabric: only types with EFA are sized past one node.
    node_limit = max_nodes if spec.efa_interfaces > 0 else 1
    candidate = None
    for nodes in range(1, node_limit + 1):
        candidate = _evaluate(shape, spec, per_elem, precision, kv_token, tokens, nodes,
                              region, prices)
        if candidate.fits or candidate.tensor_parallel == 0:
            return candidate
    if node_limit == 1 and not candidate.fits:
        return Candidate(**{**asdict(candidate),
                            "reason": candidate.reason + " (one node: no EFA for multi-node)"})
    return candidate


def fits_local_gpus(model: str, precision: str, context: int, gpu_gib: float, gpus: int = 1,
                    concurrency: int = 1) -> tuple[bool, float]:
    """Does ``model`` fit on a machine of ``gpus`` x ``gpu_gib`` (e.g. one 24 GB RTX 4090)?
    Returns (fits, GiB needed per GPU). Used by ``advise`` for the article's VRAM factor."""
    shape = resolve_model(model)
    _check_workload(shape, context, concurrency, "bf16")
    tp = tensor_parallel_size(shape, gpus) or 1
    required = per_gpu_bytes(shape, _precision_bytes(precision),
                             kv_bytes_per_token(shape, KV_CACHE_BYTES["bf16"]),
                             context * concurrency, tp, 1)
    return required <= gpu_gib * GIB * GPU_MEMORY_UTILIZATION, round(required / GIB, 2)


def recommend(candidates: list[Candidate]) -> Candidate | None:
    """The cheapest fit, preferring hardware that runs the precision natively."""
    fitting = [c for c in candidates if c.fits]
    native = [c for c in fitting if c.precision_native] or fitting
    return min(native, key=lambda c: (c.hourly_usd, c.gpus), default=None)


def _cheaper_non_native(candidates: list[Candidate], best: Candidate | None) -> list[str]:
    cheapest = min((c for c in candidates if c.fits), key=lambda c: c.hourly_usd, default=None)
    if best is None or cheapest is None or cheapest.hourly_usd >= best.hourly_usd:
        return []
    return [f"cheaper but not native: {cheapest.nodes}x {cheapest.instance_type} at "
            f"${cheapest.hourly_usd:,.2f}/h runs this precision without hardware support"]


def _prices_date(candidates, region, prices) -> date:
    if not candidates:
        return PRICES_AS_OF
    return on_demand_price(region, candidates[0].instance_type, prices).as_of


def _notes(shape: ModelShape, precision: str, kv_dtype: str, best: Candidate | None
           ) -> list[str]:
    notes = [f"KV cache in {kv_dtype}" + ("" if kv_dtype == "fp8" else
                                          " (--kv-cache-dtype fp8 halves it)")]
    if precision == "fp8":
        notes.append("FP8 runs natively on H100/H200/L40S only; on A100 and A10G engines fall "
                     "back to weight-only FP8 kernels (slower): prefer bf16, int8 or AWQ there")
    if precision in ("int8", "int4"):
        notes.append(f"{precision} needs a quantized checkpoint (AWQ/GPTQ/W8A8) of the model")
    if shape.weights_published_in == "fp8" and precision in ("bf16", "fp16"):
        notes.append(f"{shape.name} is published in FP8; {precision} doubles its memory and "
                     "needs converted weights")
    if shape.attention == "mla":
        notes.append("MLA latent cache is held in full by every tensor-parallel rank")
    if best is None:
        notes.append("no catalog instance type fits: lower --context/--concurrency, use fp8 KV "
                     "cache, or a smaller precision")
    return notes


def check_stack_fits(config: "StackConfig", prices: dict[str, RegionPrices] | None = None
                     ) -> None:
    """Refuse a stack whose model cannot be served on its instance type x node count, naming
    the cheapest instance that can. Models outside the built-in family (and not a local
    config.json) cannot be sized offline and pass unchecked."""
    try:
        shape = resolve_model(config.resolved_model)
    except UserError:
        return
    if config.max_model_len > shape.max_context:
        raise ConfigError("dsinfra:maxModelLen", config.max_model_len,
                          f"at most {shape.max_context} for {shape.name}")
    spec = INSTANCE_SPECS[config.resolved_instance_type]
    # Off EFA every node is its own replica (bootstrap/engine.py engine_nodes): one node must
    # hold the whole model, however many nodes the stack has.
    nodes = config.resolved_node_count if config.tier_spec.efa else 1
    chosen = evaluate(shape, spec, config.precision, nodes, context=config.max_model_len,
                      region=config.region, prices=prices)
    if chosen.fits:
        check_fallback_fits(config, shape, prices)
        return
    if not config.tier_spec.efa and config.resolved_node_count > 1:
        efa_tiers = [t.name for t in TIERS.values() if t.efa]
        raise ConfigError(
            "dsinfra:nodeCount", config.resolved_node_count,
            f"on the {config.tier} tier each node is its own replica and must hold the whole "
            f"model; {shape.name} at {config.precision} does not fit one {spec.name} "
            f"({chosen.reason}): shard it across nodes on the {' or '.join(efa_tiers)} tier "
            "(EFA), or choose an instance type that holds it")
    sizing = size_model(config.resolved_model, config.precision, config.max_model_len, 1,
                        region=config.region, prices=prices)
    best = recommend(sizing.candidates)
    if best is None:
        alternative = ("no catalog instance type holds it at this precision; lower "
                       "dsinfra:maxModelLen or choose a smaller precision")
    else:
        alternative = (f"a size that holds it; the cheapest is {best.nodes}x "
                       f"{best.instance_type} (TP {best.tensor_parallel} x PP "
                       f"{best.pipeline_parallel}, ${best.hourly_usd:,.2f}/h)")
    raise ConfigError(
        "dsinfra:instanceType", f"{nodes}x {spec.name}",
        f"{shape.name} at {config.precision} with maxModelLen {config.max_model_len} does not "
        f"fit ({chosen.reason}); choose {alternative}")


@dataclass(frozen=True)
class CheaperFit:
    """The stack's own size and a cheaper one that also holds its model and context, and why
    the stack keeps its own (``kept_because``; empty: nothing speaks against the cheaper)."""

    current: Candidate
    cheaper: Candidate
    kept_because: tuple[str, ...] = ()

    @property
    def saving_hourly_usd(self) -> float:
        return round(self.current.hourly_usd - self.cheaper.hourly_usd, 4)

    def to_dict(self) -> dict[str, Any]:
        def shown(c: Candidate) -> dict[str, Any]:
            return {"instance_type": c.instance_type, "nodes": c.nodes,
                    "hourly_usd": c.hourly_usd, "monthly_usd": c.monthly_usd,
                    "tensor_parallel": c.tensor_parallel,
                    "pipeline_parallel": c.pipeline_parallel}
        return {"current": shown(self.current), "cheaper": shown(self.cheaper),
                "saving_hourly_usd": self.saving_hourly_usd,
                "saving_monthly_usd": round(self.saving_hourly_usd * HOURS_PER_MONTH, 2),
                "kept_because": list(self.kept_because)}


def _shards_off_nvlink(config: "StackConfig", current: Candidate, cheaper: Candidate
                       ) -> str | None:
    """A tier defined by NVLink keeps its NVSwitch type against one that would run tensor
    parallel over PCIe (every layer's all-reduce crosses it)."""
    now, other = INSTANCE_SPECS[current.instance_type], INSTANCE_SPECS[cheaper.instance_type]
    if not config.tier_spec.nvlink or not now.nvswitch or other.nvswitch \
            or cheaper.tensor_parallel < 2:
        return None
    return (f"the {config.tier} tier runs tensor parallel over NVLink (NVSwitch), as "
            f"{now.name} does; {other.name}'s {other.gpu_count} {other.gpu_model} GPUs have "
            f"no NVLink, so TP {cheaper.tensor_parallel} would all-reduce every layer over PCIe")


# Why a stack may keep a size dearer than the cheapest fit, as rules over the tier and the
# hardware (one rule per row); a stack states any other reason in dsinfra:fitReason.
KEEP_RULES = (_shards_off_nvlink,)


def cheaper_fit(config: "StackConfig", prices: dict[str, RegionPrices] | None = None
                ) -> CheaperFit | None:
    """A configuration the sizer finds cheaper per hour for the stack's model, precision and
    maxModelLen (native precision preferred, as ``recommend``); None when the stack is already
    the cheapest, or its model cannot be sized offline. Advice only: the stack is unchanged.
    ``kept_because``: what ``KEEP_RULES`` find against the cheaper one, then the stack's own
    ``dsinfra:fitReason``."""
    try:
        shape = resolve_model(config.resolved_model)
    except UserError:
        return None
    current = evaluate(shape, INSTANCE_SPECS[config.resolved_instance_type], config.precision,
                       config.resolved_node_count, context=config.max_model_len,
                       region=config.region, prices=prices)
    sizing = size_model(config.resolved_model, config.precision, config.max_model_len, 1,
                        region=config.region, prices=prices)
    # Across nodes only where the tier attaches EFA: elsewhere NCCL would run over TCP.
    best = recommend([c for c in sizing.candidates if c.nodes == 1 or config.tier_spec.efa])
    if best is None or not current.fits or best.hourly_usd >= current.hourly_usd:
        return None
    reasons = [r for rule in KEEP_RULES if (r := rule(config, current, best))]
    if config.fit_reason:
        reasons.append(config.fit_reason)
    return CheaperFit(current=current, cheaper=best, kept_because=tuple(reasons))


def check_fallback_fits(config: "StackConfig", shape: ModelShape,
                        prices: dict[str, RegionPrices] | None = None) -> None:
    """Every ``dsinfra:fallback`` alternative must hold the model at maxModelLen too, and run
    past one node only on a type with EFA: ``up`` may land on any of them unattended."""
    for index, alt in enumerate(config.fallback):
        spec = INSTANCE_SPECS[alt.instance_type]
        key, value = f"dsinfra:fallback.{index}", f"{alt.node_count}x {spec.name}"
        if alt.node_count > 1 and spec.efa_interfaces == 0:
            raise ConfigError(key, value, f"nodeCount 1 for {spec.name} (no EFA, so it serves "
                              "from one node), or an instance type with EFA")
        fit = evaluate(shape, spec, config.precision,
                       alt.node_count if config.tier_spec.efa else 1,
                       context=config.max_model_len, region=config.region, prices=prices)
        if not fit.fits:
            raise ConfigError(key, value, f"an alternative that holds {shape.name} at "
                              f"{config.precision} with maxModelLen {config.max_model_len}; "
                              f"this one does not ({fit.reason}); `dsinfra size` lists those "
                              "that do")
