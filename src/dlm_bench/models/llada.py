"""Native PyTorch LLaDA (LLaMA-style transformer without a causal mask).

Parameter names follow the official checkpoint (`model.transformer.wte.weight`,
`model.transformer.blocks.{i}.q_proj.weight`, ...), so the official safetensors shards load with
`load_state_dict(strict=True)` and no remote code. Attention is bidirectional.

`forward` optionally attends to cached keys/values of other canvas positions (`context`) and can
return this call's keys/values, which is all the block-wise KV-cache samplers need.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attend

KV = tuple[Tensor, Tensor]  # ([B, H_kv, S, D], [B, H_kv, S, D]), keys already rotated


@dataclass
class KVSlot:
    """One layer's keys/values of a whole canvas [B, H_kv, S, D] (keys rotated), in which this call's
    tokens own the canvas positions `index` [S_call] (an index tensor, so that a compiled forward sees
    the same shapes at every block): the layer writes their new keys/values there in place and attends
    over the whole buffer, so a cached step allocates no key/value memory (Fast-dLLM's in-place dual
    cache; with the positions running to the end of the canvas, a prefix cache)."""

    keys: Tensor
    values: Tensor
    index: Tensor


@dataclass(frozen=True)
class LLaDAConfig:
    """The architecture keys of LLaDA's config.json (OLMo-style names)."""

    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 32
    mlp_hidden_size: int = 12288
    vocab_size: int = 126464
    embedding_size: int = 126464
    max_sequence_length: int = 4096
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    mask_token_id: int = 126336
    eos_token_id: int = 126081
    pad_token_id: int = 126081
    qkv_bias: bool = False  # Dream (Qwen2.5 architecture) has q/k/v biases; LLaDA has none
    shift_logits: bool = False  # Dream: position i's prediction is read from the output at i - 1

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_dict(cls, raw: dict) -> "LLaDAConfig":
        """Read an official-style config.json mapping; refuse variants this module does not implement."""
        expect = {"block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu",
                  "weight_tying": False, "include_bias": False, "rope": True}
        for key, value in expect.items():
            if key in raw and raw[key] != value:
                raise ValueError(f"LLaDA config: {key}={raw[key]!r} is not supported (expected {value!r})")
        names = {f.name for f in fields(cls)}
        kwargs = {k: raw[k] for k in names if k in raw and raw[k] is not None}
        if "n_kv_heads" not in kwargs and "n_heads" in kwargs:
            kwargs["n_kv_heads"] = kwargs["n_heads"]
        if "embedding_size" not in kwargs and "vocab_size" in kwargs:
            kwargs["embedding_size"] = kwargs["vocab_size"]
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> "LLaDAConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_official_dict(self) -> dict:
        """config.json content in the official key layout."""
        out = {k: v for k, v in asdict(self).items() if k not in ("qkv_bias", "shift_logits")}
        out.update({
            "architectures": ["LLaDAModelLM"], "model_type": "llada", "block_type": "llama",
            "layer_norm_type": "rms", "activation_type": "silu", "weight_tying": False,
            "include_bias": False, "rope": True, "rope_full_precision": True, "alibi": False,
            "attention_layer_norm": False, "multi_query_attention": None,
            "mlp_ratio": self.mlp_hidden_size // self.d_model, "init_device": "meta",
            "use_cache": False, "torch_dtype": "bfloat16",
        })
        return out


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables [S, head_dim] in float32 for absolute positions (halves layout, as HF Llama)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = torch.outer(positions.float(), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate t [B, H, S, D] in full precision, return in t's dtype."""
    tf = t.float()
    half = tf.shape[-1] // 2
    rotated = torch.cat([-tf[..., half:], tf[..., :half]], dim=-1)
    return (tf * cos + rotated * sin).to(t.dtype)


class LLaDABlock(nn.Module):
    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        d, hd = cfg.d_model, cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, hd
        self.attn_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.q_proj = nn.Linear(d, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.attn_out = nn.Linear(cfg.n_heads * hd, d, bias=False)
        self.ff_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.ff_proj = nn.Linear(d, cfg.mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(d, cfg.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(cfg.mlp_hidden_size, d, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, kernel: str,
                context: Optional[KV | KVSlot], causal: bool = False) -> tuple[Tensor, KV]:
        b, s, _ = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = k, v
        if isinstance(context, KVSlot):
            context.keys.index_copy_(2, context.index, k)
            context.values.index_copy_(2, context.index, v)
            keys, values = context.keys, context.values
        elif context is not None:
            keys, values = torch.cat([context[0], k], dim=2), torch.cat([context[1], v], dim=2)
        a = attend(q, keys, values, kernel=kernel, causal=causal)
        x = x + self.attn_out(a.transpose(1, 2).reshape(b, s, -1))
        h = self.ff_norm(x)
        x = x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))
        return x, (k, v)


class LLaDATransformer(nn.Module):
    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.wte = nn.Embedding(cfg.embedding_size, cfg.d_model)
        self.blocks = nn.ModuleList(LLaDABlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.ff_out = nn.Linear(cfg.d_model, cfg.embedding_size, bias=False)


class LLaDAModel(nn.Module):
    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.transformer = LLaDATransformer(cfg)


@dataclass
class LLaDAOutput:
    logits: Tensor  # [B, S_logits, vocab] (float of the model dtype)
    kv: Optional[list[KV]]  # per layer, this call's rotated keys/values, when asked for


class LLaDAModelLM(nn.Module):
    """LLaDA-8B architecture; `kernel` is the attention kernel that runs ('sdpa', 'sdpa_flash',
    'flash_attn' or 'eager', see models.attention)."""

    def __init__(self, cfg: LLaDAConfig, kernel: str = "sdpa"):
        super().__init__()
        self.config = cfg
        self.kernel = kernel
        self.model = LLaDAModel(cfg)

    def forward(self, input_ids: Tensor, positions: Optional[Tensor] = None,
                context: Optional[list[KV] | list[KVSlot]] = None, logits_slice: Optional[slice | Tensor] = None,
                return_kv: bool = False, causal: bool = False) -> LLaDAOutput:
        """Logits for `input_ids` [B, S].

        positions: absolute positions [S] of input_ids (default 0..S-1).
        context: per layer, cached keys/values of other positions that these tokens also attend to
            (concatenated before this call's), or a `KVSlot` buffer that this call writes into in place.
        logits_slice: apply the LM head only to these positions of input_ids, a slice or an index tensor
            (saves the vocab projection where the caller needs logits for a few positions only).
        """
        t = self.model.transformer
        s = input_ids.shape[1]
        if positions is None:
            positions = torch.arange(s, device=input_ids.device)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        x = t.wte(input_ids)
        kv_out: list[KV] = []
        for i, block in enumerate(t.blocks):
            x, kv = block(x, cos, sin, self.kernel, context[i] if context is not None else None, causal)
            if return_kv:
                kv_out.append(kv)
        if logits_slice is not None:
            x = x[:, logits_slice]
        logits = t.ff_out(t.ln_f(x))
        return LLaDAOutput(logits=logits, kv=kv_out if return_kv else None)

    def init_random(self, std: float = 0.02, generator: Optional[torch.Generator] = None) -> None:
        """Random-init weights in place (synthetic weights): normal(0, std) matrices, unit norms."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, std, generator=generator)


def load_llada_state_dict(directory: Path, device: torch.device | str, dtype: torch.dtype) -> dict[str, Tensor]:
    """All tensors of an official-layout checkpoint: model.safetensors or sharded with an index."""
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        shard_names = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    state: dict[str, Tensor] = {}
    for name in shard_names:
        for key, tensor in load_file(str(directory / name), device=str(device)).items():
            state[key] = tensor.to(dtype)
    return state


def native_config(raw: dict) -> LLaDAConfig:
    """The native config of a LLaDA config.json mapping (registry.Family.native)."""
    return LLaDAConfig.from_dict(raw)


def load_llada(directory: str | Path, device: torch.device | str, dtype: torch.dtype,
               kernel: str) -> LLaDAModelLM:
    """Build the native model from an official-layout checkpoint directory (no remote code)."""
    directory = Path(directory)
    cfg = LLaDAConfig.from_json(directory / "config.json")
    with torch.device("meta"):
        model = LLaDAModelLM(cfg, kernel=kernel)
    state = load_llada_state_dict(directory, device, dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def build_synthetic_llada(cfg: LLaDAConfig, device: torch.device | str, dtype: torch.dtype,
                          kernel: str, seed: int) -> LLaDAModelLM:
    """Random-init model of a given architecture, created directly on `device` in `dtype`."""
    with torch.device("meta"):
        model = LLaDAModelLM(cfg, kernel=kernel).to(dtype)
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    model.init_random(generator=gen)
    return model.eval()


load = load_llada  # registry.Family.native's loader of the llada family
