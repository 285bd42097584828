"""The forward calls a generation makes, counted without running it (torch-free).

`ar_work` is what KV-cached autoregressive generation runs; `diffusion_work` is what the block-wise
masked-diffusion sampler runs with a fixed step count (every schedule sampler; threshold samplers
stop blocks early and take at most this). The generators record the same `ForwardWork` as they
run (tests/test_cost_model.py checks that both agree); the roofline and the cost model read them.
"""

from __future__ import annotations

from .. import registry
from . import ForwardWork


def ar_work(batch: int, prompt_len: int, n_out: int) -> list[ForwardWork]:
    """Forward calls of KV-cached AR generation: a causal prefill, then n_out - 1 one-token steps."""
    prefill = ForwardWork(batch, prompt_len, prompt_len * (prompt_len + 1) // 2, 1, 0)
    return [prefill] + [ForwardWork(batch, 1, prompt_len + i, 1, prompt_len + i - 1) for i in range(1, n_out)]


def diffusion_work(batch: int, prompt_len: int, n_out: int, steps: int, block_length: int, cache: str,
                   cfg: bool = False, shift: int = 0) -> list[ForwardWork]:
    """Forward calls of the block-wise sampler at `steps` denoising steps (see generation.diffusion).

    Each block's first step, and every step without a cache, runs the whole canvas (bidirectional:
    every query attends to every key) with logits for the block; with a cache the block's later steps
    run the block to the canvas end (prefix) or the block alone (dual) against the cached keys/values.
    CFG doubles the batch of the full forwards. `shift` = 1 for shifted-logits models (Dream), whose
    cached steps also recompute the position before the block.
    """
    queries = registry.CACHES[cache].queries
    total = prompt_len + n_out
    n_blocks = n_out // block_length
    per_block = steps // n_blocks
    work = []
    for b in range(n_blocks):
        start = prompt_len + b * block_length
        for i in range(per_block):
            if i == 0 or queries == "canvas":
                work.append(ForwardWork((2 if cfg else 1) * batch, total, total * total, block_length, 0))
                continue
            first = start - shift
            q = (total if queries == "block_to_end" else start + block_length) - first
            work.append(ForwardWork(batch, q, q * total, block_length, total - q))
    return work
