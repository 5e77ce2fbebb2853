"""A Hugging Face ``config.json`` checked before it is sized.

Only the architectures whose tensors ``dsinfra.models.count_params`` knows are sized, each from
the keys its ``transformers`` config class defines; anything else is refused by name instead of
guessed. Every size is a strict positive integer with an upper bound far above any published
model (a JSON ``1e300`` is a float and refused; ``0`` heads would divide by zero).

Families:

- dense GQA: ``llama``, ``mistral``, ``qwen2`` (q/k/v biases), ``qwen3`` (q/k RMSNorm);
- DeepSeek MLA + MoE: ``deepseek_v2``, ``deepseek_v3`` (``n_routed_experts``,
  ``n_shared_experts``, ``moe_intermediate_size``, ``first_k_dense_replace``);
- Mixtral: ``mixtral`` (``num_local_experts`` experts of ``intermediate_size`` in every layer);
- Qwen-MoE: ``qwen2_moe`` (``num_experts`` of ``moe_intermediate_size`` plus one gated shared
  expert of ``shared_expert_intermediate_size``), ``qwen3_moe`` (no shared expert, q/k norm).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dsinfra.errors import UserError, shown_value
from dsinfra.models import ModelShape

DENSE_TYPES = ("llama", "mistral", "qwen2", "qwen3")
MLA_TYPES = ("deepseek_v2", "deepseek_v3")
MIXTRAL_TYPES = ("mixtral",)
QWEN_MOE_TYPES = ("qwen2_moe", "qwen3_moe")
KNOWN_MODEL_TYPES = DENSE_TYPES + MLA_TYPES + MIXTRAL_TYPES + QWEN_MOE_TYPES

# Keys that change which tensors exist; a family that does not define one must not carry it.
_STRUCTURAL_KEYS = ("num_local_experts", "num_experts", "n_routed_experts",
                    "moe_intermediate_size", "shared_expert_intermediate_size", "kv_lora_rank")
_ALLOWED_STRUCTURAL: dict[str, tuple[str, ...]] = {
    **{t: () for t in DENSE_TYPES},
    **{t: ("n_routed_experts", "moe_intermediate_size", "kv_lora_rank") for t in MLA_TYPES},
    "mixtral": ("num_local_experts",),
    "qwen2_moe": ("num_experts", "moe_intermediate_size", "shared_expert_intermediate_size"),
    "qwen3_moe": ("num_experts", "moe_intermediate_size"),
}


def _size(le: int) -> Any:
    return Annotated[int, Field(strict=True, ge=1, le=le)]


def _count(le: int) -> Any:
    return Annotated[int, Field(strict=True, ge=0, le=le)]


class _HfConfig(BaseModel):
    """The keys sizing reads; other keys (rope, dropout, token ids) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    model_type: str
    num_hidden_layers: _size(1024)
    hidden_size: _size(262_144)
    intermediate_size: _size(1_048_576)
    num_attention_heads: _size(4096)
    num_key_value_heads: _size(4096) | None = None
    head_dim: _size(16_384) | None = None
    vocab_size: _size(16_777_216)
    max_position_embeddings: _size(16_777_216) | None = None
    tie_word_embeddings: Annotated[bool, Field(strict=True)] = False
    attention_bias: Annotated[bool, Field(strict=True)] | None = None
    # MoE
    num_experts_per_tok: _size(1024) | None = None
    num_local_experts: _size(4096) | None = None
    num_experts: _size(4096) | None = None
    n_routed_experts: _size(4096) | None = None
    n_shared_experts: _count(64) | None = None
    moe_intermediate_size: _size(1_048_576) | None = None
    shared_expert_intermediate_size: _size(1_048_576) | None = None
    first_k_dense_replace: _count(1024) | None = None
    decoder_sparse_step: _size(1) | None = None  # 1 = every layer is MoE (what we size)
    mlp_only_layers: Annotated[list[int], Field(max_length=0)] | None = None
    moe_layer_freq: _size(1) | None = None
    # MLA
    kv_lora_rank: _size(65_536) | None = None
    q_lora_rank: _size(65_536) | None = None
    qk_nope_head_dim: _size(16_384) | None = None
    qk_rope_head_dim: _size(16_384) | None = None
    v_head_dim: _size(16_384) | None = None


def shape_from_config(values: dict[str, Any], *, name: str) -> ModelShape:
    """A checked ``ModelShape`` from ``config.json`` values, or a ``UserError`` naming the key."""
    model_type = values.get("model_type")
    if model_type not in KNOWN_MODEL_TYPES:
        raise UserError(f"model config for {name!r}: model_type {shown_value(model_type)} is not "
                        f"understood; allowed: {', '.join(KNOWN_MODEL_TYPES)}")
    for key in _STRUCTURAL_KEYS:
        if values.get(key) is not None and key not in _ALLOWED_STRUCTURAL[model_type]:
            raise UserError(f"model config for {name!r}: key {key} is not understood for "
                            f"model_type {model_type} (sizing would ignore its tensors)")
    try:
        config = _HfConfig.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in error["loc"])
        raise UserError(f"model config for {name!r}: invalid value for {key}: "
                        f"{shown_value(error.get('input'))}; allowed: {_allowed(error)}") from None
    if config.num_attention_heads % (config.num_key_value_heads or config.num_attention_heads):
        raise UserError(f"model config for {name!r}: num_key_value_heads "
                        f"{config.num_key_value_heads} does not divide num_attention_heads "
                        f"{config.num_attention_heads}; allowed: a divisor of it")
    if model_type in MLA_TYPES:
        return _mla_shape(config, values, name)
    return _gqa_shape(config, name)


def _allowed(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "a value is required (needed: num_hidden_layers, hidden_size, " \
               "intermediate_size, num_attention_heads, vocab_size)"
    return str(error["msg"]).removeprefix("Value error, ")


def _require(config: _HfConfig, name: str, *keys: str) -> None:
    for key in keys:
        if getattr(config, key) is None:
            raise UserError(f"model config for {name!r}: model_type {config.model_type} needs "
                            f"{key}; allowed: a positive integer")


def _gqa_shape(c: _HfConfig, name: str) -> ModelShape:
    heads = c.num_attention_heads
    head_dim = c.head_dim or c.hidden_size // heads
    if head_dim < 1:
        raise UserError(f"model config for {name!r}: hidden_size {c.hidden_size} is smaller "
                        f"than num_attention_heads {heads}; allowed: give head_dim")
    moe: dict[str, Any] = {}
    if c.model_type == "mixtral":
        _require(c, name, "num_local_experts", "num_experts_per_tok")
        moe = dict(routed_experts=c.num_local_experts, experts_per_token=c.num_experts_per_tok,
                   moe_intermediate_size=c.intermediate_size)
    elif c.model_type in QWEN_MOE_TYPES:
        _require(c, name, "num_experts", "num_experts_per_tok", "moe_intermediate_size")
        moe = dict(routed_experts=c.num_experts, experts_per_token=c.num_experts_per_tok,
                   moe_intermediate_size=c.moe_intermediate_size,
                   shared_expert_intermediate_size=c.shared_expert_intermediate_size or 0)
    if moe and moe["experts_per_token"] > moe["routed_experts"]:
        raise UserError(f"model config for {name!r}: num_experts_per_tok "
                        f"{moe['experts_per_token']} exceeds the {moe['routed_experts']} experts")
    qkv_bias = c.attention_bias if c.attention_bias is not None else \
        c.model_type in ("qwen2", "qwen2_moe")
    return ModelShape(
        name, "gqa", layers=c.num_hidden_layers, hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size, attention_heads=heads,
        kv_heads=c.num_key_value_heads or heads, head_dim=head_dim, vocab_size=c.vocab_size,
        tied_embeddings=c.tie_word_embeddings, qkv_bias=qkv_bias,
        qk_norm=c.model_type in ("qwen3", "qwen3_moe"),
        max_context=c.max_position_embeddings or 4096, **moe)


def _mla_shape(c: _HfConfig, values: dict[str, Any], name: str) -> ModelShape:
    _require(c, name, "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
    if c.n_routed_experts:
        _require(c, name, "num_experts_per_tok", "moe_intermediate_size")
    if (c.first_k_dense_replace or 0) > c.num_hidden_layers:
        raise UserError(f"model config for {name!r}: first_k_dense_replace "
                        f"{c.first_k_dense_replace} exceeds num_hidden_layers "
                        f"{c.num_hidden_layers}")
    quant = values.get("quantization_config")
    quant_method = quant.get("quant_method") if isinstance(quant, dict) else None
    return ModelShape(
        name, "mla", layers=c.num_hidden_layers, hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size, attention_heads=c.num_attention_heads,
        kv_heads=c.num_key_value_heads or c.num_attention_heads,
        head_dim=c.qk_nope_head_dim + c.qk_rope_head_dim, vocab_size=c.vocab_size,
        tied_embeddings=c.tie_word_embeddings, max_context=c.max_position_embeddings or 4096,
        kv_lora_rank=c.kv_lora_rank, q_lora_rank=c.q_lora_rank,
        qk_nope_head_dim=c.qk_nope_head_dim, qk_rope_head_dim=c.qk_rope_head_dim,
        v_head_dim=c.v_head_dim, routed_experts=c.n_routed_experts or 0,
        shared_experts=c.n_shared_experts or 0, experts_per_token=c.num_experts_per_tok or 0,
        moe_intermediate_size=c.moe_intermediate_size or 0,
        first_k_dense=c.first_k_dense_replace or 0,
        weights_published_in="fp8" if quant_method == "fp8" else "bf16")
