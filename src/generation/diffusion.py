"""Masked-diffusion sampling for LLaDA-style models (the reference semi-autoregressive sampler).

The canvas is the prompt followed by N_out mask tokens, split into blocks of `block_length`
decoded left to right; `steps` are split evenly over the blocks. At each step the model sees the
whole canvas, proposes a token for every position of the current block (argmax, with float64
Gumbel noise when temperature > 0), scores each masked position (its proposal's probability for
`low_confidence`, a uniform draw for `random`) and commits the best `k` of them, where `k` follows
the reference schedule (masked count // steps, the remainder spread +1 over the first steps).
Committed tokens never change again and the prompt is never touched. The mask token itself is
never proposed (its logit is set to -inf): a trained model gives it ~0 probability anyway, and
random-weight stand-ins must not leave masks behind.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import GenerationTrace, Marker


def transfer_schedule(masked_count: int, steps: int) -> list[int]:
    """Tokens to commit at each of `steps` steps for `masked_count` masked positions."""
    base, remainder = divmod(masked_count, steps)
    return [base + 1 if i < remainder else base for i in range(steps)]


def add_gumbel_noise(logits: Tensor, temperature: float) -> Tensor:
    """Reference Gumbel-max perturbation in float64: exp(logits) / (-log u)^T; identity at T = 0."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits)
    return logits.exp() / (-torch.log(noise)) ** temperature


def propose(logits: Tensor, sampler: str, temperature: float, mask_id: int) -> tuple[Tensor, Tensor]:
    """Proposed tokens and their confidence for block logits [B, L, V] -> ([B, L], [B, L])."""
    logits = logits.clone()
    logits[..., mask_id] = float("-inf")
    x0 = add_gumbel_noise(logits, temperature).argmax(dim=-1)
    if sampler == "low_confidence":
        probs = torch.softmax(logits.float(), dim=-1)
        confidence = probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    elif sampler == "random":
        confidence = torch.rand(x0.shape, device=x0.device)
    else:
        raise ValueError(f"unknown sampler {sampler!r}")
    return x0, confidence


class MaskedDiffusionGenerator:
    """Reference LLaDA sampler over a native LLaDA model (see module docstring)."""

    def __init__(self, model: torch.nn.Module, mask_id: int, block_length: int,
                 sampler: str = "low_confidence", temperature: float = 0.0, cfg_scale: float = 0.0):
        self.model, self.mask_id, self.block_length = model, mask_id, block_length
        self.sampler, self.temperature, self.cfg_scale = sampler, temperature, cfg_scale

    def _block_logits(self, x: Tensor, prompt_len: int, start: int, end: int) -> Tensor:
        """Logits [B, end-start, V] for the current block from a full-canvas forward."""
        if self.cfg_scale > 0:
            unconditional = x.clone()
            unconditional[:, :prompt_len] = self.mask_id
            both = self.model(torch.cat([x, unconditional]), logits_slice=slice(start, end)).logits
            cond, uncond = both.chunk(2)
            return uncond + (self.cfg_scale + 1) * (cond - uncond)
        return self.model(x, logits_slice=slice(start, end)).logits

    @torch.inference_mode()
    def generate(self, prompt_ids: Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker: Optional[Marker] = None) -> GenerationTrace:
        if steps is None:
            raise ValueError("diffusion generation needs steps")
        bl = self.block_length
        if n_out % bl:
            raise ValueError(f"block_length {bl} does not divide n_out {n_out}")
        n_blocks = n_out // bl
        if steps % n_blocks:
            raise ValueError(f"steps {steps} is not a multiple of the number of blocks {n_blocks}")
        steps_per_block = steps // n_blocks
        batch, prompt_len = prompt_ids.shape
        mask = torch.full((batch, n_out), self.mask_id, dtype=prompt_ids.dtype, device=prompt_ids.device)
        x = torch.cat([prompt_ids, mask], dim=1)
        marks: list = []
        committed: list[int] = []
        passes_per_step = 2 if self.cfg_scale > 0 else 1
        for b in range(n_blocks):
            start, end = prompt_len + b * bl, prompt_len + (b + 1) * bl
            for k in transfer_schedule(bl, steps_per_block):
                block = x[:, start:end]
                x0, confidence = propose(self._block_logits(x, prompt_len, start, end),
                                         self.sampler, self.temperature, self.mask_id)
                confidence = torch.where(block == self.mask_id, confidence.float(), float("-inf"))
                chosen = confidence.topk(k, dim=-1).indices
                block.scatter_(1, chosen, x0.gather(1, chosen))
                committed.append(k)
                if marker is not None:
                    marks.append(marker())
        return GenerationTrace(output_ids=x[:, prompt_len:].clone(), marks=marks,
                               forward_passes=len(committed) * passes_per_step,
                               steps_executed=len(committed), committed_per_step=committed)
