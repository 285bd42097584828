"""Masked-diffusion sampling for LLaDA- and Dream-style models: the reference samplers and their fast variants.

The canvas is the prompt followed by N_out mask tokens, split into blocks of `block_length`
decoded left to right; `steps` are split evenly over the blocks. At each step the model proposes a
token for every position of the current block (argmax, with float64 Gumbel noise when
temperature > 0) and scores each masked position; then some of them are committed. Committed
tokens never change again and the prompt is never touched. The mask token itself is never proposed
(its logit is set to -inf): a trained model gives it ~0 probability, and random-weight stand-ins
must not leave masks behind.

Schedules (how many tokens a block's steps commit):
- `llada` (LLaDA's generate.py): masked count // steps per step, the remainder spread +1 over the
  first steps;
- `dream` (Dream's diffusion_generate): times t, s on linspace(1, eps, steps + 1) in float32; a step
  commits int(masked * (1 - s / t)) of the masked positions left (so some steps commit none) and the
  last step everything left. With one block over the whole answer this is Dream's own sampler.

Samplers (which positions to commit), with Dream's `alg` names where it has one:
- `low_confidence` (LLaDA's reference; Dream's maskgit_plus): the most probable proposals;
- `margin` (Dream's topk_margin): the largest gap between the top-1 and top-2 probabilities;
- `entropy` (Dream's entropy): the lowest entropy, scored as sum p log(p + 1e-10) as Dream does;
- `random`: LLaDA schedule: k positions chosen uniformly; Dream schedule (Dream's origin): each masked
  position independently with probability 1 - s / t (1 at the last step);
- `threshold` (Fast-dLLM's confidence-aware parallel decoding): every masked position whose proposal
  probability is >= `threshold`, and always the single most confident one. `threshold_steps`:
  `unbounded` (the default) runs each block until it has no mask left and ignores `steps`, as Fast-dLLM's
  generators do (the reference behaviour for comparisons with its published numbers); `cap` treats
  `steps` as a budget (at a block's last allowed step everything left is committed).
- `local_leap` (LocalLeap, Kong et al. 2025, arXiv 2510.07081: local determinism propagation):
  masked positions whose proposal probability is >= `threshold` are anchors; a masked position
  within `leap_window` positions of an anchor (inside the block) also commits when its probability is
  >= `leap_relaxed`, the relaxed threshold; and always the single most confident one. `threshold_steps`
  as for `threshold`. With `leap_window` 0 it is the `threshold` sampler.

Random draws: uniform scores of `random` under the LLaDA schedule are drawn over the whole canvas
[B, S] and sliced to the block, as generate.py does. The float64 Gumbel noise at temperature > 0 is
drawn over the whole canvas [B, S, V] by default (`noise_layout: canvas`), as generate.py does, so a
seeded run gives the reference's tokens; `noise_layout: block` draws it over the block only, S /
block_length times fewer random numbers per step.

Caches (what each step recomputes), combinable with every sampler:
- `none`: the whole canvas every step (reference);
- `prefix`: at a block's first step a full forward also stores the keys/values of everything before
  the block; the block's later steps run the block and the masked suffix against that cache;
- `dual`: the suffix's keys/values are stored too; later steps run only the block.

Forward (the `diffusion.forward` axis): `eager`, or `compiled`: the model's forward under
`torch.compile` (see `generation.compiled`). Block positions reach the model as index tensors, never
as Python ints, so every block of a cell runs the same compiled graph (a prefix cache's shrinking
suffix makes one dimension symbolic after the first block). Tokens are those of the eager forward up
to floating-point reassociation in the fused kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor

from .. import registry
from ..config import DIFFUSION_SCHEDULES as SCHEDULES
from ..config import (DEFAULT_LEAP_RELAXED, DEFAULT_LEAP_WINDOW, DEFAULT_THRESHOLD, NOISE_LAYOUTS,
                      THRESHOLD_SAMPLERS, THRESHOLD_STEPS, diffusion_shape_error)
from ..models.llada import KVSlot
from ..paths import DiffusionPath
from . import ForwardWork, GenerationTrace, Marker
from .compiled import compile_for

ENTROPY_EPS = 1e-10  # Dream's entropy scoring: sum p log(p + 1e-10)


def transfer_schedule(masked_count: int, steps: int) -> list[int]:
    """LLaDA schedule: tokens to commit at each of `steps` steps for `masked_count` masked positions."""
    base, remainder = divmod(masked_count, steps)
    return [base + 1 if i < remainder else base for i in range(steps)]


def dream_timesteps(steps: int, eps: float) -> Tensor:
    """Dream's times: linspace(1, eps, steps + 1) in float32."""
    return torch.linspace(1.0, eps, steps + 1, dtype=torch.float32)


def dream_schedule(masked_count: int, steps: int, eps: float) -> list[int]:
    """Dream schedule: int(masked left * (1 - s / t)) per step in float32 arithmetic, everything left last."""
    times = dream_timesteps(steps, eps)
    left, counts = masked_count, []
    for i in range(steps):
        n = left if i == steps - 1 else int(left * (1 - times[i + 1] / times[i]))
        counts.append(n)
        left -= n
    return counts


def dream_transfer_probabilities(steps: int, eps: float) -> list[float]:
    """Dream's `origin`: per-step probability that a masked position is committed (1 at the last step)."""
    times = dream_timesteps(steps, eps)
    return [1.0 if i == steps - 1 else float(1 - times[i + 1] / times[i]) for i in range(steps)]


def uniform(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
            canvas: Optional[tuple[int, int]] = None) -> Tensor:
    """U(0, 1) draws for block positions `shape` = [B, L, ...]. With `canvas` = (canvas length, first
    block position) they are drawn over the whole canvas [B, S, ...] and sliced, as the reference does."""
    if canvas is None:
        return torch.rand(shape, dtype=dtype, device=device)
    total, first = canvas
    full = torch.rand((shape[0], total, *shape[2:]), dtype=dtype, device=device)
    return full[:, first:first + shape[1]]


def add_gumbel_noise(logits: Tensor, temperature: float, canvas: Optional[tuple[int, int]] = None) -> Tensor:
    """Reference Gumbel-max perturbation in float64: exp(logits) / (-log u)^T; identity at T = 0."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = uniform(tuple(logits.shape), torch.float64, logits.device, canvas)
    return logits.exp() / (-torch.log(noise)) ** temperature


def propose_tokens(logits: Tensor, temperature: float, mask_id: int,
                   noise_canvas: Optional[tuple[int, int]] = None) -> tuple[Tensor, Tensor]:
    """Proposed tokens [B, L] for block logits [B, L, V] (argmax, Gumbel-perturbed at temperature > 0),
    and the logits with the mask token excluded. noise_canvas: see `uniform`."""
    logits = logits.clone()
    logits[..., mask_id] = float("-inf")
    return add_gumbel_noise(logits, temperature, noise_canvas).argmax(dim=-1), logits


def score_proposals(logits: Tensor, x0: Tensor, sampler: str,
                    score_canvas: Optional[tuple[int, int]] = None) -> Tensor:
    """Scores [B, L] of the proposals by the sampler's score rule (registry.Sampler.score; higher = commit
    first). score_canvas: where a uniform score is drawn (see `uniform`)."""
    entry = registry.SAMPLERS.get(sampler)
    score = entry.score if entry is not None else None
    if score == "confidence":
        probs = torch.softmax(logits.float(), dim=-1)
        return probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    if score == "margin":
        top2 = torch.softmax(logits.float(), dim=-1).topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    if score == "entropy":
        probs = torch.softmax(logits.float(), dim=-1)
        return (probs * torch.log(probs + ENTROPY_EPS)).sum(-1)  # = -entropy
    if score == "uniform":
        return uniform(tuple(x0.shape), torch.float32, x0.device, score_canvas)
    raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(registry.SAMPLERS)}")


def origin_choice(masked: Tensor, p: float) -> Tensor:
    """Dream's origin: each masked position is committed with probability p; the draws are made over
    the masked positions only, in row-major order, as Dream's sampler makes them."""
    draws = torch.rand(int(masked.sum()), device=masked.device)
    chosen = torch.zeros_like(masked)
    chosen[masked] = draws < p
    return chosen


def near_anchors(anchors: Tensor, window: int) -> Tensor:
    """Boolean [B, L]: positions within `window` positions of an anchor (True in `anchors` [B, L])."""
    if window == 0:
        return anchors.clone()
    spread = torch.nn.functional.max_pool1d(anchors.float().unsqueeze(1), kernel_size=2 * window + 1, stride=1,
                                            padding=window)
    return spread.squeeze(1) > 0


def choose(score: Tensor, masked: Tensor, k: Optional[int], threshold: Optional[float], commit_all: bool,
           relaxed: Optional[float] = None, window: int = 0) -> Tensor:
    """Boolean [B, L]: which masked positions to commit this step.

    k: commit the top-k masked positions by score (schedule samplers).
    threshold: commit masked positions with score >= threshold plus each row's best one; with `relaxed`
        (LocalLeap), also masked positions within `window` of such an anchor whose score >= relaxed.
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
    anchors = masked & (score >= threshold)
    if relaxed is not None:
        anchors = anchors | (near_anchors(anchors, window) & (score >= relaxed))
    return masked & (anchors | best)


@dataclass(frozen=True)
class StepPlan:
    """What one denoising step of a block commits: the `k` top-scored positions, each masked position
    with probability `p` (Dream's origin), everything at or above `threshold` (plus the best, and with
    LocalLeap's `relaxed` and `window` the confident neighbours of those), or everything left
    (`commit_all`)."""

    k: Optional[int] = None
    p: Optional[float] = None
    threshold: Optional[float] = None
    commit_all: bool = False
    relaxed: Optional[float] = None  # LocalLeap: the relaxed threshold near anchors
    window: int = 0  # LocalLeap: how far from an anchor (positions) the relaxed threshold applies


@dataclass(frozen=True)
class SamplerSettings:
    """A diffusion path's settings beside its sampler, cache and forward (`paths.DiffusionPath`).

    block_length: tokens per block; temperature: of the Gumbel noise (0: argmax); cfg_scale: classifier-free
    guidance (0: none); threshold, threshold_steps: the threshold samplers' (anchor) probability and whether
    `steps` is a budget; schedule, eps: tokens committed per step (`eps` for Dream's linspace only);
    noise_layout: Gumbel noise over the canvas or the block; leap_relaxed, leap_window: LocalLeap's relaxed
    threshold and its reach (positions). A sampler reads only the settings it uses (registry.SAMPLERS' knobs).
    """

    block_length: int
    temperature: float = 0.0
    cfg_scale: float = 0.0
    threshold: float = DEFAULT_THRESHOLD
    threshold_steps: str = "unbounded"
    schedule: str = "llada"
    eps: float = 1e-3
    noise_layout: str = "canvas"
    leap_relaxed: float = DEFAULT_LEAP_RELAXED
    leap_window: int = DEFAULT_LEAP_WINDOW

    def __post_init__(self):
        for value, allowed, what in ((self.schedule, SCHEDULES, "schedule"),
                                     (self.threshold_steps, THRESHOLD_STEPS, "threshold_steps"),
                                     (self.noise_layout, NOISE_LAYOUTS, "noise_layout")):
            if value not in allowed:
                raise ValueError(f"{what}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


class MaskedDiffusionGenerator:
    """Block-wise masked-diffusion sampler over a native LLaDA or Dream model (see module docstring): the
    path says how it commits, caches and runs its forward, the settings the numbers it does so with."""

    def __init__(self, model: torch.nn.Module, mask_id: int, path: DiffusionPath, settings: SamplerSettings):
        problem = path.problem()
        if problem:
            raise ValueError(problem)
        if "leap_relaxed" in registry.SAMPLERS[path.sampler].knobs and (
                not 0.0 < settings.leap_relaxed <= settings.threshold or settings.leap_window < 0):
            raise ValueError(f"local_leap: leap_relaxed {settings.leap_relaxed} and leap_window {settings.leap_window} "
                             f"are not allowed; allowed: 0 < leap_relaxed <= threshold ({settings.threshold}), "
                             f"leap_window >= 0")
        self.queries = registry.CACHES[path.cache].queries  # what a block's later steps recompute
        if self.queries != "canvas" and settings.cfg_scale > 0:
            raise ValueError("classifier-free guidance is not combined with a KV cache")
        self.model, self.mask_id, self.path, self.settings = model, mask_id, path, settings
        compiled = registry.FORWARDS[path.forward].compiled
        self.forward = compile_for(model, next(model.parameters()).device) if compiled else model
        # Dream-style models read position i's prediction from the output at i - 1
        self.shift = int(bool(getattr(getattr(model, "config", None), "shift_logits", False)))

    # ------------------------------------------------------------------ forwards

    def _full(self, x: Tensor, prompt_len: int, start: int, end: int, work: list, keep_kv: bool):
        """Whole-canvas forward; logits of the block (and the canvas K/V when keep_kv)."""
        batch, total = x.shape
        rows = torch.arange(start - self.shift, end - self.shift, device=x.device)
        if self.settings.cfg_scale > 0:
            unconditional = x.clone()
            unconditional[:, :prompt_len] = self.mask_id
            both = self.forward(torch.cat([x, unconditional]), logits_slice=rows).logits
            cond, uncond = both.chunk(2)
            work.append(ForwardWork(2 * batch, total, total * total, end - start, 0))
            return uncond + (self.settings.cfg_scale + 1) * (cond - uncond), None
        out = self.forward(x, logits_slice=rows, return_kv=keep_kv)
        work.append(ForwardWork(batch, total, total * total, end - start, 0))
        return out.logits, out.kv

    def _cached(self, x: Tensor, start: int, end: int, kv: list, work: list) -> Tensor:
        """A later step of a block with a prefix or dual cache built at the block's first step: the
        canvas keys/values of that step are the buffer; this step overwrites its own positions in
        place (prefix: from the block to the end of the canvas; dual: the block) and attends over all."""
        batch, total = x.shape
        first = start - self.shift  # shifted-logits models also recompute the position before the block
        last = total if self.queries == "block_to_end" else end
        ids = x[:, first:last]
        positions = torch.arange(first, last, device=x.device)
        context = [KVSlot(k, v, positions) for k, v in kv]
        out = self.forward(ids, positions=positions, context=context, logits_slice=slice(0, end - start))
        q = ids.shape[1]
        work.append(ForwardWork(batch, q, q * total, end - start, total - q))
        return out.logits

    # ------------------------------------------------------------------ sampling

    def block_plan(self, steps_per_block: int) -> Iterator[StepPlan]:
        """The steps of one block, in order; `unbounded` threshold decoding never runs out of steps
        (the caller stops when the block has no mask left)."""
        bl = self.settings.block_length
        if self.path.sampler in THRESHOLD_SAMPLERS:
            leap = (dict(relaxed=self.settings.leap_relaxed, window=self.settings.leap_window)
                    if "leap_relaxed" in registry.SAMPLERS[self.path.sampler].knobs else {})
            if self.settings.threshold_steps == "unbounded":
                while True:
                    yield StepPlan(threshold=self.settings.threshold, **leap)
            for i in range(steps_per_block):
                yield StepPlan(threshold=self.settings.threshold, commit_all=i == steps_per_block - 1, **leap)
            return
        linspace = registry.SCHEDULES[self.settings.schedule].uses_eps  # Dream's schedule, else LLaDA's even split
        if linspace and self.path.sampler == "random":
            for p in dream_transfer_probabilities(steps_per_block, self.settings.eps):
                yield StepPlan(p=p)  # p = 1 at the last step: everything left, still drawn as Dream does
            return
        counts = (dream_schedule(bl, steps_per_block, self.settings.eps) if linspace
                  else transfer_schedule(bl, steps_per_block))
        for k in counts:
            yield StepPlan(k=k)

    @torch.inference_mode()
    def generate(self, prompt_ids: Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker: Optional[Marker] = None) -> GenerationTrace:
        if steps is None:
            raise ValueError("diffusion generation needs steps")
        problem = diffusion_shape_error(n_out, self.settings.block_length, steps)
        if problem:
            raise ValueError(problem)
        bl = self.settings.block_length
        n_blocks = n_out // bl
        steps_per_block = steps // n_blocks
        batch, prompt_len = prompt_ids.shape
        mask = torch.full((batch, n_out), self.mask_id, dtype=prompt_ids.dtype, device=prompt_ids.device)
        x = torch.cat([prompt_ids, mask], dim=1)
        total = x.shape[1]
        marks: list = []
        committed: list = []
        work: list[ForwardWork] = []
        for b in range(n_blocks):
            start, end = prompt_len + b * bl, prompt_len + (b + 1) * bl
            canvas = (total, start)
            kv = None
            for i, plan in enumerate(self.block_plan(steps_per_block)):
                block = x[:, start:end]
                masked = block == self.mask_id
                if plan.threshold is not None and not masked.any():
                    break  # threshold decoding finished the block early (the only host sync per step)
                if i == 0 or self.queries == "canvas":
                    logits, kv = self._full(x, prompt_len, start, end, work, keep_kv=self.queries != "canvas")
                else:
                    logits = self._cached(x, start, end, kv, work)
                x0, proposal_logits = propose_tokens(logits, self.settings.temperature, self.mask_id,
                                                     canvas if self.settings.noise_layout == "canvas" else None)
                if plan.p is not None:
                    chosen = origin_choice(masked, plan.p)
                else:
                    score = score_proposals(proposal_logits, x0, self.path.sampler, score_canvas=canvas)
                    chosen = choose(score, masked, plan.k, plan.threshold, plan.commit_all, plan.relaxed, plan.window)
                block.copy_(torch.where(chosen, x0, block))
                committed.append(plan.k if plan.k is not None else chosen.sum())  # adaptive plans: counted
                if marker is not None:
                    marks.append(marker())
        committed = [float(c) / batch if isinstance(c, Tensor) else c for c in committed]
        return GenerationTrace(output_ids=x[:, prompt_len:].clone(), marks=marks,
                               forward_passes=sum(w.batch for w in work) // batch, steps_executed=len(committed),
                               committed_per_step=committed, work=work)

