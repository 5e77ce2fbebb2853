#!/usr/bin/env python3
"""Measure, on a real NVIDIA GPU, what DeepSeek model shapes take in memory.

For each shape: build the model from its config with random weights in bf16 directly on the
GPU (no download: the shapes are the published config.json values), then record
- parameters (sum of numel) and weight bytes (torch.cuda.memory_allocated growth);
- KV-cache bytes per token: for GQA models, the bytes of the cache a real forward pass fills
  (past_key_values) over N tokens; for MLA models (DeepSeek-V2/V3/R1), the bytes of the
  compressed latent (kv_a_proj_with_mqa output: kv_lora_rank + qk_rope_head_dim per layer),
  which is what vLLM and SGLang keep, measured by hooking that projection in a real forward.
Shapes too large for one GPU are measured with fewer layers (the config records the count),
so the sizing model is checked against the same reduced config.

Usage (needs torch + transformers): python3 measure_sizing.py OUT.json [--only NAME ...]
"""

import argparse
import gc
import json
import sys
import time

import torch

QWEN2 = dict(model_type="qwen2", hidden_act="silu", max_position_embeddings=131072,
             rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
             use_sliding_window=False)
LLAMA = dict(model_type="llama", hidden_act="silu", max_position_embeddings=131072,
             rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
DEEPSEEK_V3 = dict(model_type="deepseek_v3", vocab_size=129280, hidden_size=7168,
                   intermediate_size=18432, moe_intermediate_size=2048, num_attention_heads=128,
                   num_key_value_heads=128, n_shared_experts=1, n_routed_experts=256,
                   num_experts_per_tok=8, first_k_dense_replace=3, kv_lora_rank=512,
                   q_lora_rank=1536, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                   n_group=8, topk_group=4, routed_scaling_factor=2.5, norm_topk_prob=True,
                   max_position_embeddings=163840, tie_word_embeddings=False)
DEEPSEEK_V2_LITE = dict(model_type="deepseek_v2", vocab_size=102400, hidden_size=2048,
                        intermediate_size=10944, moe_intermediate_size=1408,
                        num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16,
                        n_shared_experts=2, n_routed_experts=64, num_experts_per_tok=6,
                        first_k_dense_replace=1, kv_lora_rank=512, q_lora_rank=None,
                        qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                        max_position_embeddings=163840, tie_word_embeddings=False,
                        topk_method="greedy", n_group=1, topk_group=1)

SHAPES = {
    "DeepSeek-R1-Distill-Qwen-1.5B": dict(QWEN2, vocab_size=151936, hidden_size=1536,
                                          intermediate_size=8960, num_hidden_layers=28,
                                          num_attention_heads=12, num_key_value_heads=2),
    "DeepSeek-R1-Distill-Qwen-7B": dict(QWEN2, vocab_size=152064, hidden_size=3584,
                                        intermediate_size=18944, num_hidden_layers=28,
                                        num_attention_heads=28, num_key_value_heads=4),
    "DeepSeek-R1-Distill-Llama-8B": dict(LLAMA, vocab_size=128256, hidden_size=4096,
                                         intermediate_size=14336, num_hidden_layers=32,
                                         num_attention_heads=32, num_key_value_heads=8),
    "DeepSeek-R1-Distill-Qwen-14B": dict(QWEN2, vocab_size=152064, hidden_size=5120,
                                         intermediate_size=13824, num_hidden_layers=48,
                                         num_attention_heads=40, num_key_value_heads=8),
    "DeepSeek-R1-Distill-Qwen-32B": dict(QWEN2, vocab_size=152064, hidden_size=5120,
                                         intermediate_size=27648, num_hidden_layers=64,
                                         num_attention_heads=40, num_key_value_heads=8),
    # 80 layers in bf16 is 141 GB: measure 40 and let the model scale the layer count.
    "DeepSeek-R1-Distill-Llama-70B@40layers": dict(LLAMA, vocab_size=128256, hidden_size=8192,
                                                   intermediate_size=28672,
                                                   num_hidden_layers=40,
                                                   num_attention_heads=64,
                                                   num_key_value_heads=8),
    "DeepSeek-V2-Lite": DEEPSEEK_V2_LITE,
    # 61 layers is 1.3 TB in bf16: 3 dense layers + 2 MoE layers keeps every kind of block.
    "DeepSeek-V3@5layers": dict(DEEPSEEK_V3, num_hidden_layers=5),
}


def build(config_values):
    from transformers import AutoConfig, AutoModelForCausalLM

    values = dict(config_values)
    model_type = values.pop("model_type")
    config = AutoConfig.for_model(model_type, **values)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config)
    torch.set_default_dtype(torch.float32)
    return model.eval(), config


def kv_bytes_per_token_gqa(model, tokens):
    ids = torch.randint(0, 1000, (1, tokens), device="cuda")
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    cache = out.past_key_values
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is not None:
                total += tensor.numel() * tensor.element_size()
    if total == 0:  # older cache layouts
        for name in ("key_cache", "value_cache"):
            for tensor in getattr(cache, name, []):
                total += tensor.numel() * tensor.element_size()
    return total / tokens


def kv_bytes_per_token_mla(model, tokens):
    latent_bytes = []

    def hook(_module, _inputs, output):
        latent_bytes.append(output.numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules()
               if n.endswith("kv_a_proj_with_mqa")]
    ids = torch.randint(0, 1000, (1, tokens), device="cuda")
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for handle in handles:
        handle.remove()
    return sum(latent_bytes) / tokens, len(handles)


def measure(name, config_values, tokens):
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    started = time.time()
    model, config = build(config_values)
    torch.cuda.synchronize()
    weights_bytes = torch.cuda.memory_allocated() - before
    params = sum(p.numel() for p in model.parameters())
    record = {"name": name, "config": config_values, "params": params,
              "weights_bytes_allocated": weights_bytes,
              "weights_bytes_numel": sum(p.numel() * p.element_size()
                                         for p in model.parameters()),
              "build_s": round(time.time() - started, 1), "tokens": tokens}
    if "kv_lora_rank" in config_values:
        per_token, layers = kv_bytes_per_token_mla(model, tokens)
        record.update(kv_kind="mla-latent", kv_bytes_per_token=per_token,
                      kv_layers_hooked=layers)
    else:
        record.update(kv_kind="gqa", kv_bytes_per_token=kv_bytes_per_token_gqa(model, tokens))
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return record


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--tokens", type=int, default=512)
    args = parser.parse_args()
    import transformers

    results = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "transformers": transformers.__version__, "dtype": "bfloat16", "models": []}
    for name, values in SHAPES.items():
        if args.only and name not in args.only:
            continue
        try:
            record = measure(name, values, args.tokens)
        except Exception as exc:  # keep measuring the others; the failure is recorded
            record = {"name": name, "error": "%s: %s" % (type(exc).__name__, exc)}
        print(json.dumps({k: v for k, v in record.items() if k != "config"}), flush=True)
        results["models"].append(record)
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
