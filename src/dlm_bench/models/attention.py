"""Attention kernels, chosen once per run and recorded per row.

Requested backend (config) -> kernel that runs:
- `flash_attention_2`: the flash-attn package's kernel (`flash_attn`) when importable, otherwise
  PyTorch SDPA restricted to its FlashAttention-2 backend (`sdpa_flash`). If that backend cannot
  run a call, PyTorch raises instead of silently falling back.
- `sdpa`: PyTorch SDPA, any backend it picks (`sdpa`).
- `eager`: explicit matmul + softmax (`eager`).
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def flash_attn_available() -> bool:
    """True when the flash-attn package is importable (and a GPU is present)."""
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_kernel(requested: str) -> str:
    """The kernel name that will run for a requested backend on this machine."""
    if requested == "flash_attention_2":
        return "flash_attn" if flash_attn_available() else "sdpa_flash"
    if requested in ("sdpa", "eager"):
        return requested
    raise ValueError(f"attention: {requested!r} is not allowed; allowed: flash_attention_2, sdpa, eager")


def hf_attn_implementation(kernel: str) -> str:
    """transformers' `attn_implementation` for a kernel name."""
    return {"flash_attn": "flash_attention_2", "sdpa_flash": "sdpa", "sdpa": "sdpa", "eager": "eager"}[kernel]


@contextlib.contextmanager
def kernel_context(kernel: str) -> Iterator[None]:
    """Restrict SDPA to its FlashAttention backend for `sdpa_flash`; a no-op otherwise."""
    if kernel == "sdpa_flash":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            yield
    else:
        yield


def _causal_mask(sq: int, sk: int, device: torch.device) -> Tensor:
    """[sq, sk] bool, True where query i (the i-th of the last sq positions) may see key j."""
    return torch.ones(sq, sk, dtype=torch.bool, device=device).tril(sk - sq)


def attend(q: Tensor, k: Tensor, v: Tensor, kernel: str, causal: bool) -> Tensor:
    """Attention of q [B, H, Sq, D] over k, v [B, H_kv, Sk, D]; returns [B, H, Sq, D].

    With `causal`, the queries are the last Sq of the Sk positions (bottom-right alignment, as flash-attn).
    """
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if kernel == "flash_attn":
        from flash_attn import flash_attn_func

        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal)
        return out.transpose(1, 2)
    sq, sk = q.shape[2], k.shape[2]
    if kernel in ("sdpa", "sdpa_flash"):
        if causal and sq != sk:  # SDPA's is_causal aligns top-left; flash-attn and eager align bottom-right
            return F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(sq, sk, q.device))
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if kernel == "eager":
        scores = (q.float() @ k.float().transpose(-1, -2)) / (q.shape[-1] ** 0.5)
        if causal:
            scores = scores.masked_fill(~_causal_mask(sq, sk, q.device), float("-inf"))
        return (scores.softmax(-1) @ v.float()).to(q.dtype)
    raise ValueError(f"unknown attention kernel {kernel!r}")
