"""Dream-7B (Dream-org/Dream-v0-Base-7B): a Qwen2.5-7B-architecture masked diffusion LM.

It runs on the native bidirectional transformer of `llada.py` with q/k/v biases, grouped-query
attention and the *shifted-logits* convention (the prediction for position i is read from the
output at position i - 1). The official checkpoint uses Qwen2 parameter names
(`model.layers.{i}.self_attn.q_proj.weight`, ...); they are mapped onto the native module here, so
no remote code is needed. Key names and special-token ids follow the public config and should be
checked against a downloaded checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .llada import LLaDAConfig, LLaDAModelLM, load_llada_state_dict

# official (Qwen2-style) name pattern -> native name
_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "q_proj.weight", "self_attn.q_proj.bias": "q_proj.bias",
    "self_attn.k_proj.weight": "k_proj.weight", "self_attn.k_proj.bias": "k_proj.bias",
    "self_attn.v_proj.weight": "v_proj.weight", "self_attn.v_proj.bias": "v_proj.bias",
    "self_attn.o_proj.weight": "attn_out.weight",
    "post_attention_layernorm.weight": "ff_norm.weight",
    "mlp.gate_proj.weight": "ff_proj.weight", "mlp.up_proj.weight": "up_proj.weight",
    "mlp.down_proj.weight": "ff_out.weight",
}
_TOP = {"model.embed_tokens.weight": "model.transformer.wte.weight", "model.norm.weight": "model.transformer.ln_f.weight",
        "lm_head.weight": "model.transformer.ff_out.weight"}


def official_to_native(name: str) -> str:
    if name in _TOP:
        return _TOP[name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
    if m and m.group(2) in _LAYER:
        return f"model.transformer.blocks.{m.group(1)}.{_LAYER[m.group(2)]}"
    raise KeyError(f"unexpected Dream parameter {name!r}")


def native_to_official(name: str) -> str:
    for official, native in _TOP.items():
        if name == native:
            return official
    m = re.fullmatch(r"model\.transformer\.blocks\.(\d+)\.(.+)", name)
    reverse = {v: k for k, v in _LAYER.items()}
    if m and m.group(2) in reverse:
        return f"model.layers.{m.group(1)}.{reverse[m.group(2)]}"
    raise KeyError(f"unexpected native parameter {name!r}")


def native_config(raw: dict) -> LLaDAConfig:
    """The native config of a Dream config.json mapping (Qwen2-style keys)."""
    if raw.get("tie_word_embeddings"):
        raise ValueError("Dream config: tie_word_embeddings=true is not supported")
    vocab = raw["vocab_size"]
    return LLaDAConfig(d_model=raw["hidden_size"], n_layers=raw["num_hidden_layers"],
                       n_heads=raw["num_attention_heads"],
                       n_kv_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
                       mlp_hidden_size=raw["intermediate_size"], vocab_size=vocab, embedding_size=vocab,
                       max_sequence_length=raw.get("max_position_embeddings", 32768),
                       rope_theta=float(raw.get("rope_theta", 1e6)), rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                       mask_token_id=raw["mask_token_id"], eos_token_id=raw.get("eos_token_id", 151643),
                       pad_token_id=raw.get("pad_token_id", 151643), qkv_bias=True, shift_logits=True)


def official_config(cfg: LLaDAConfig) -> dict:
    """config.json content in Dream's key layout."""
    return {"architectures": ["DreamModel"], "model_type": "Dream", "hidden_size": cfg.d_model,
            "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
            "num_key_value_heads": cfg.n_kv_heads, "intermediate_size": cfg.mlp_hidden_size,
            "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_sequence_length,
            "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.rms_norm_eps, "hidden_act": "silu",
            "tie_word_embeddings": False, "mask_token_id": cfg.mask_token_id, "eos_token_id": cfg.eos_token_id,
            "pad_token_id": cfg.pad_token_id, "torch_dtype": "bfloat16", "use_cache": False}


def official_generation_config(cfg: LLaDAConfig, bos_token_id: int) -> dict:
    """generation_config.json for Dream's loader: the special-token ids its `diffusion_generate` reads
    from the generation config (mask, pad, bos, eos); its sampler settings keep their own defaults."""
    return {"bos_token_id": bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
            "mask_token_id": cfg.mask_token_id}


def load_dream(directory: str | Path, device, dtype: torch.dtype, kernel: str) -> LLaDAModelLM:
    directory = Path(directory)
    cfg = native_config(json.loads((directory / "config.json").read_text()))
    with torch.device("meta"):
        model = LLaDAModelLM(cfg, kernel=kernel)
    state = {official_to_native(k): v for k, v in load_llada_state_dict(directory, device, dtype).items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


load = load_dream  # registry.Family.native's loader of the dream family
