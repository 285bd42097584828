"""Masked-diffusion sampling for LLaDA-style models: the reference sampler and its fast variants.

The canvas is the prompt followed by N_out mask tokens, split into blocks of `block_length`
decoded left to right; `steps` are split evenly over the blocks. At each step the model proposes a
token for every position of the current block (argmax, with float64 Gumbel noise when
temperature > 0) and scores each masked position; then some of them are committed. Committed
tokens never change again and the prompt is never touched. The mask token itself is never proposed
(its logit is set to -inf): a trained model gives it ~0 probability, and random-weight stand-ins
must not leave masks behind.

Samplers (which positions to commit):
- `low_confidence` (reference): the `k` most probable proposals, `k` from the reference schedule
  (masked count // steps, the remainder spread +1 over the first steps);
- `random` (reference): `k` positions chosen uniformly;
- `entropy`: the `k` positions whose predictive distribution has the lowest entropy;
- `threshold` (confidence-aware parallel decoding): every masked position whose proposal
  probability is >= `threshold`, and always the single most confident one; a block ends as soon as
  it has no mask left, so steps adapt. `steps` is an upper bound: at a block's last allowed step
  everything left is committed.

Caches (what each step recomputes), combinable with every sampler:
- `none`: the whole canvas every step (reference);
- `prefix`: at a block's first step a full forward also stores the keys/values of everything before
  the block; the block's later steps run the block and the masked suffix against that cache;
- `dual`: the suffix's keys/values are stored too; later steps run only the block.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..config import DIFFUSION_CACHES as CACHES
from ..config import DIFFUSION_SAMPLERS as SAMPLERS
from . import ForwardWork, GenerationTrace, Marker


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
    """Proposed tokens and their scores (higher = commit first) for block logits [B, L, V]."""
    logits = logits.clone()
    logits[..., mask_id] = float("-inf")
    x0 = add_gumbel_noise(logits, temperature).argmax(dim=-1)
    if sampler in ("low_confidence", "threshold"):
        probs = torch.softmax(logits.float(), dim=-1)
        score = probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    elif sampler == "entropy":
        logp = torch.log_softmax(logits.float(), dim=-1)
        score = (logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)  # = -entropy
    elif sampler == "random":
        score = torch.rand(x0.shape, device=x0.device)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    return x0, score


def choose(score: Tensor, masked: Tensor, k: Optional[int], threshold: Optional[float], commit_all: bool) -> Tensor:
    """Boolean [B, L]: which masked positions to commit this step.

    k: commit the top-k masked positions by score (schedule samplers).
    threshold: commit masked positions with score >= threshold plus each row's best one.
    commit_all: commit every masked position (a threshold block's last allowed step).
    """
    if commit_all:
        return masked.clone()
    score = torch.where(masked, score.float(), float("-inf"))
    if threshold is None:
        chosen = torch.zeros_like(masked)
        chosen.scatter_(1, score.topk(k, dim=-1).indices, True)
        return chosen & masked
    best = torch.zeros_like(masked)
    best.scatter_(1, score.argmax(dim=-1, keepdim=True), True)
    return masked & ((score >= threshold) | best)


class MaskedDiffusionGenerator:
    """LLaDA sampler over a native LLaDA model (see module docstring)."""

    def __init__(self, model: torch.nn.Module, mask_id: int, block_length: int,
                 sampler: str = "low_confidence", temperature: float = 0.0, cfg_scale: float = 0.0,
                 cache: str = "none", threshold: float = 0.9):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
        if cache not in CACHES:
            raise ValueError(f"unknown cache {cache!r}; allowed: {', '.join(CACHES)}")
        if cache != "none" and cfg_scale > 0:
            raise ValueError("classifier-free guidance is not combined with a KV cache")
        self.model, self.mask_id, self.block_length = model, mask_id, block_length
        self.sampler, self.temperature, self.cfg_scale = sampler, temperature, cfg_scale
        self.cache, self.threshold = cache, threshold
        # Dream-style models read position i's prediction from the output at i - 1
        self.shift = int(bool(getattr(getattr(model, "config", None), "shift_logits", False)))

    # ------------------------------------------------------------------ forwards

    def _full(self, x: Tensor, prompt_len: int, start: int, end: int, work: list, keep_kv: bool):
        """Whole-canvas forward; logits of the block (and the canvas K/V when keep_kv)."""
        batch, total = x.shape
        rows = slice(start - self.shift, end - self.shift)
        if self.cfg_scale > 0:
            unconditional = x.clone()
            unconditional[:, :prompt_len] = self.mask_id
            both = self.model(torch.cat([x, unconditional]), logits_slice=rows).logits
            cond, uncond = both.chunk(2)
            work.append(ForwardWork(2 * batch, total, total * total, end - start, 0))
            return uncond + (self.cfg_scale + 1) * (cond - uncond), None
        out = self.model(x, logits_slice=rows, return_kv=keep_kv)
        work.append(ForwardWork(batch, total, total * total, end - start, 0))
        return out.logits, out.kv

    def _cached(self, x: Tensor, start: int, end: int, kv: list, work: list) -> Tensor:
        """A later step of a block with a prefix or dual cache built at the block's first step."""
        batch, total = x.shape
        first = start - self.shift  # shifted-logits models also recompute the position before the block
        if self.cache == "prefix":
            context = [(k[:, :, :first], v[:, :, :first]) for k, v in kv]
            ids = x[:, first:]
        else:
            context = [(torch.cat([k[:, :, :first], k[:, :, end:]], 2), torch.cat([v[:, :, :first], v[:, :, end:]], 2))
                       for k, v in kv]
            ids = x[:, first:end]
        positions = torch.arange(first, first + ids.shape[1], device=x.device)
        out = self.model(ids, positions=positions, context=context, logits_slice=slice(0, end - start))
        q = ids.shape[1]
        work.append(ForwardWork(batch, q, q * total, end - start, total - q))
        return out.logits

    # ------------------------------------------------------------------ sampling

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
        committed: list[float] = []
        work: list[ForwardWork] = []
        threshold = self.threshold if self.sampler == "threshold" else None
        for b in range(n_blocks):
            start, end = prompt_len + b * bl, prompt_len + (b + 1) * bl
            kv = None
            for i, k in enumerate(transfer_schedule(bl, steps_per_block)):
                block = x[:, start:end]
                masked = block == self.mask_id
                if threshold is not None and not masked.any():
                    break  # threshold decoding finished the block early (the only host sync per step)
                if i == 0 or self.cache == "none":
                    logits, kv = self._full(x, prompt_len, start, end, work, keep_kv=self.cache != "none")
                else:
                    logits = self._cached(x, start, end, kv, work)
                x0, score = propose(logits, self.sampler, self.temperature, self.mask_id)
                chosen = choose(score, masked, k, threshold, commit_all=threshold is not None and i == steps_per_block - 1)
                block.copy_(torch.where(chosen, x0, block))
                committed.append(chosen.sum() if threshold is not None else k)
                if marker is not None:
                    marks.append(marker())
        committed = [float(c) / batch if isinstance(c, Tensor) else c for c in committed]
        return GenerationTrace(output_ids=x[:, prompt_len:].clone(), marks=marks,
                               forward_passes=sum(w.batch for w in work) // batch, steps_executed=len(committed),
                               committed_per_step=committed, work=work)
