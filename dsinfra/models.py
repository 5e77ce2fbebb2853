"""Model shapes: the few ``config.json`` values that decide how much memory a model needs.

Built-in shapes are the published Hugging Face ``config.json`` values of the DeepSeek family;
any other model is read from its own ``config.json``. Parameter counts are computed from the
shape (the same tensors ``transformers`` allocates), not copied from model cards, so a model
given by its config gets the same treatment as a built-in one; the counts match what the lead
measured on an H200 (``tests/fixtures/gpu/sizing-h200.json``) to the parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from dsinfra.errors import UserError

Attention = Literal["gqa", "mla"]


@dataclass(frozen=True)
class ModelShape:
    name: str
    attention: Attention
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2 has biases on q/k/v
    max_context: int = 131072
    # MLA (DeepSeek-V2/V3): the cached latent is kv_lora_rank + qk_rope_head_dim per layer.
    kv_lora_rank: int = 0
    q_lora_rank: int | None = None
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # MoE: layers after the first `first_k_dense` use routed + shared experts.
    routed_experts: int = 0
    shared_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    first_k_dense: int = 0
    # Qwen2-MoE: one always-on shared expert of this width, scaled by a 1-output gate.
    shared_expert_intermediate_size: int = 0
    qk_norm: bool = False  # Qwen3: an RMSNorm over each head's q and k
    weights_published_in: str = "bf16"

    @property
    def is_moe(self) -> bool:
        return self.routed_experts > 0

    @property
    def params(self) -> int:
        return count_params(self)

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (all of them for a dense model)."""
        if not self.is_moe:
            return self.params
        idle_experts = self.routed_experts - self.experts_per_token
        moe_layers = self.layers - self.first_k_dense
        return self.params - moe_layers * idle_experts * 3 * self.hidden_size * \
            self.moe_intermediate_size


def count_params(shape: ModelShape) -> int:
    embeddings = shape.vocab_size * shape.hidden_size * (1 if shape.tied_embeddings else 2)
    per_layer_norms = 2 * shape.hidden_size
    attention = _mla_attention_params(shape) if shape.attention == "mla" else \
        _gqa_attention_params(shape)
    total = embeddings + shape.hidden_size  # final norm
    for layer in range(shape.layers):
        total += attention + per_layer_norms + _mlp_params(shape, layer)
    return total


def _gqa_attention_params(s: ModelShape) -> int:
    q_out, kv_out = s.attention_heads * s.head_dim, s.kv_heads * s.head_dim
    weights = s.hidden_size * (q_out + 2 * kv_out) + q_out * s.hidden_size
    norms = 2 * s.head_dim if s.qk_norm else 0
    return weights + ((q_out + 2 * kv_out) if s.qkv_bias else 0) + norms


def _mla_attention_params(s: ModelShape) -> int:
    qk_head = s.qk_nope_head_dim + s.qk_rope_head_dim
    if s.q_lora_rank:
        q = s.hidden_size * s.q_lora_rank + s.q_lora_rank + \
            s.q_lora_rank * s.attention_heads * qk_head
    else:
        q = s.hidden_size * s.attention_heads * qk_head
    kv_down = s.hidden_size * (s.kv_lora_rank + s.qk_rope_head_dim) + s.kv_lora_rank
    kv_up = s.kv_lora_rank * s.attention_heads * (s.qk_nope_head_dim + s.v_head_dim)
    out = s.attention_heads * s.v_head_dim * s.hidden_size
    return q + kv_down + kv_up + out


def _mlp_params(s: ModelShape, layer: int) -> int:
    if not s.is_moe or layer < s.first_k_dense:
        return 3 * s.hidden_size * s.intermediate_size
    experts = (s.routed_experts + s.shared_experts) * 3 * s.hidden_size * s.moe_intermediate_size
    router = s.routed_experts * s.hidden_size
    shared = 0
    if s.shared_expert_intermediate_size:
        shared = 3 * s.hidden_size * s.shared_expert_intermediate_size + s.hidden_size  # + gate
    return experts + router + shared


def kv_bytes_per_token(shape: ModelShape, bytes_per_element: float) -> float:
    """KV cache per token over all layers: GQA keeps K and V per KV head; MLA keeps one latent."""
    if shape.attention == "mla":
        return shape.layers * (shape.kv_lora_rank + shape.qk_rope_head_dim) * bytes_per_element
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * bytes_per_element


def _qwen2(name, layers, hidden, inter, heads, kv, vocab=152064) -> ModelShape:
    return ModelShape(name, "gqa", layers, hidden, inter, heads, kv, hidden // heads, vocab,
                      qkv_bias=True)


def _llama(name, layers, hidden, inter, heads, kv) -> ModelShape:
    return ModelShape(name, "gqa", layers, hidden, inter, heads, kv, hidden // heads, 128256)


# DeepSeek-V3 config.json (huggingface.co/deepseek-ai/DeepSeek-V3); R1 shares the architecture.
# The published checkpoint also carries one multi-token-prediction layer (the "685B" on the model
# card); engines load it only for speculative decoding, so it is not counted here.
_V3 = ModelShape("DeepSeek-V3", "mla", layers=61, hidden_size=7168, intermediate_size=18432,
                 attention_heads=128, kv_heads=128, head_dim=192, vocab_size=129280,
                 max_context=163840, kv_lora_rank=512, q_lora_rank=1536, qk_nope_head_dim=128,
                 qk_rope_head_dim=64, v_head_dim=128, routed_experts=256, shared_experts=1,
                 experts_per_token=8, moe_intermediate_size=2048, first_k_dense=3,
                 weights_published_in="fp8")

BUILTIN_MODELS: dict[str, ModelShape] = {s.name: s for s in (
    _qwen2("DeepSeek-R1-Distill-Qwen-1.5B", 28, 1536, 8960, 12, 2, vocab=151936),
    _qwen2("DeepSeek-R1-Distill-Qwen-7B", 28, 3584, 18944, 28, 4),
    _qwen2("DeepSeek-R1-Distill-Qwen-14B", 48, 5120, 13824, 40, 8),
    _qwen2("DeepSeek-R1-Distill-Qwen-32B", 64, 5120, 27648, 40, 8),
    _llama("DeepSeek-R1-Distill-Llama-8B", 32, 4096, 14336, 32, 8),
    _llama("DeepSeek-R1-Distill-Llama-70B", 80, 8192, 28672, 64, 8),
    _V3,
    replace(_V3, name="DeepSeek-R1"),
    # Dated re-releases share their base's config.json (architecture and FP8 weights): the
    # recipe table matches them as R1/V3 (dsinfra/recipes.py: ``DeepSeek-R1(-\d+)?``,
    # ``DeepSeek-V3...``), so the sizer knows them too (huggingface.co/deepseek-ai/DeepSeek-R1-0528,
    # huggingface.co/deepseek-ai/DeepSeek-V3-0324).
    replace(_V3, name="DeepSeek-R1-0528"),
    replace(_V3, name="DeepSeek-V3-0324"),
    # DeepSeek-V2-Lite config.json: no query compression, 64 routed + 2 shared experts.
    ModelShape("DeepSeek-V2-Lite", "mla", layers=27, hidden_size=2048, intermediate_size=10944,
               attention_heads=16, kv_heads=16, head_dim=192, vocab_size=102400,
               max_context=32768, kv_lora_rank=512, q_lora_rank=None, qk_nope_head_dim=128,
               qk_rope_head_dim=64, v_head_dim=128, routed_experts=64, shared_experts=2,
               experts_per_token=6, moe_intermediate_size=1408, first_k_dense=1),
)}


def builtin_names() -> list[str]:
    return list(BUILTIN_MODELS)


def resolve_model(model: str) -> ModelShape:
    """A built-in name (short or ``deepseek-ai/...``, any case) or a path to a ``config.json``
    (or the folder holding one). ``UserError`` naming what is allowed otherwise."""
    from dsinfra.identifiers import host_text_problem

    if problem := host_text_problem(model, max_chars=1024):
        raise UserError(f"model {model[:80]!r}: {problem}; allowed: a built-in name, a Hugging "
                        "Face repo id or the path of a config.json")
    path = Path(model).expanduser()
    try:
        if path.is_dir():
            path = path / "config.json"
        is_file = path.is_file()
    except OSError as exc:  # e.g. a component longer than the file system allows
        raise UserError(f"model path {model[:80]!r}: {exc.strerror}") from None
    if is_file:
        return shape_from_config_file(path)
    short = model.strip().rsplit("/", 1)[-1].lower()
    for name, shape in BUILTIN_MODELS.items():
        if name.lower() == short:
            return shape
    if _looks_like_a_path(model):
        raise UserError(f"model file {model!r}: no such file; allowed: the path of a Hugging "
                        "Face config.json (or the folder holding one), or a built-in name")
    raise UserError(f"unknown model {model!r}; allowed: one of {', '.join(BUILTIN_MODELS)} "
                    "(with or without the deepseek-ai/ prefix) or the path of a Hugging Face "
                    "config.json")


def _looks_like_a_path(model: str) -> bool:
    """``./x``, ``~/x``, ``/x`` or a name ending in ``.json``: a file meant, not a repo id."""
    text = model.strip()
    return text.startswith(("./", "../", "/", "~")) or text.lower().endswith(".json")


MAX_CONFIG_JSON_BYTES = 1024 * 1024  # published config.json files are a few kB


def _config_int(text: str) -> int:
    if len(text) > 30:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def shape_from_config_file(path: Path) -> ModelShape:
    import os
    import stat

    try:
        # Never read more than the cap (a 600 MB file is not read whole first), and never
        # block on a FIFO or read a device: a regular file only, opened without waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UserError(f"model config {path}: not a regular file; allowed: a Hugging "
                                "Face config.json")
            raw = handle.read(MAX_CONFIG_JSON_BYTES + 1)
        if len(raw) > MAX_CONFIG_JSON_BYTES:
            raise UserError(f"model config {path}: larger than {MAX_CONFIG_JSON_BYTES:,} bytes; "
                            "allowed: a Hugging Face config.json")
        values = json.loads(raw.decode("utf-8"), parse_int=_config_int)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, and ints past the digit limit (a 5000-digit number)
        reason = "nested too deeply" if isinstance(exc, RecursionError) else \
            str(exc).replace("\n", " ")[:160]
        raise UserError(f"model config {path}: not readable JSON ({reason})") from None
    if not isinstance(values, dict):
        raise UserError(f"model config {path}: expected a JSON object (a Hugging Face "
                        "config.json)")
    return shape_from_config(values, name=path.parent.name or str(path))


def shape_from_config(values: dict[str, Any], *, name: str) -> ModelShape:
    """A shape from Hugging Face ``config.json`` values, checked by ``dsinfra.model_config``
    (dense Llama/Mistral/Qwen2/Qwen3, DeepSeek-V2/V3 MLA + MoE, Mixtral, Qwen-MoE)."""
    from dsinfra import model_config

    return model_config.shape_from_config(values, name=name)
