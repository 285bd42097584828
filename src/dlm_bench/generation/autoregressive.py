"""Autoregressive generation of exactly N_out tokens (EOS ignored) with per-token marks.

Decode modes (the `autoregressive.decode` axis):
- `eager`: transformers' `generate` with its dynamic KV cache (the everyday baseline);
- `static`: a native loop (prefill, then one token per forward) over a preallocated static KV cache;
- `static_compiled`: the same loop with the one-token step compiled (`generation.compiled`: CUDA
  graphs on a GPU), the AR baseline at its best.
All three emit the same tokens at temperature 0, and all of them treat EOS as an ordinary token:
every row gets exactly N_out real tokens (`check_exact_n_out` checks it after each generation).
"""

from __future__ import annotations

import copy
import inspect
from typing import Optional

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList

from .. import registry
from ..paths import ARPath
from . import GenerationTrace, Marker
from .compiled import compile_for
from .work import ar_work


def eos_ids(model: torch.nn.Module) -> set[int]:
    """The model's end-of-sequence token ids (generation config, then model config)."""
    for cfg in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(cfg, "eos_token_id", None)
        if value is not None and value != []:
            return set(value) if isinstance(value, (list, tuple)) else {int(value)}
    return set()


def check_exact_n_out(output_ids: Tensor, batch: int, n_out: int, eos: set[int], pad_id: Optional[int]) -> None:
    """Raise unless every row holds n_out generated tokens: the shape is [batch, n_out], and no row is an
    EOS followed by padding to the end (what a generation loop does to a row it considers finished)."""
    if tuple(output_ids.shape) != (batch, n_out):
        raise RuntimeError(f"autoregressive generation produced shape {tuple(output_ids.shape)}, "
                           f"expected ({batch}, {n_out})")
    if pad_id is None or pad_id in eos or not eos or n_out < 2:
        return
    is_eos = torch.isin(output_ids[:, :-1], torch.tensor(sorted(eos), device=output_ids.device))
    tail_is_pad = (output_ids[:, 1:] == pad_id).flip(1).cumprod(1).flip(1).bool()
    padded = (is_eos & tail_is_pad).any(dim=1)
    if bool(padded.any()):
        rows = padded.nonzero().flatten().tolist()
        raise RuntimeError(f"autoregressive generation stopped rows {rows} at EOS and padded them; "
                           f"every row must emit {n_out} real tokens")


def penalize_repeats(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """transformers' repetition penalty: the logit of every token in `seen` [B, T] (the sequence so far) divided
    by `penalty` when positive, multiplied when negative; 1 leaves the logits as they are."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(1, seen)
    return logits.scatter(1, seen, torch.where(picked < 0, picked * penalty, picked / penalty))


def nucleus(probs: Tensor, top_p: float) -> Tensor:
    """Probabilities [B, V] kept to the smallest set of the most probable tokens whose sum reaches `top_p` (the
    most probable token always), renormalised; 1 keeps every token."""
    if top_p >= 1.0:
        return probs
    ordered, order = probs.sort(dim=-1, descending=True)
    before = ordered.cumsum(dim=-1) - ordered  # the mass of the tokens ahead of each one
    ordered = torch.where(before < top_p, ordered, torch.zeros_like(ordered))
    kept = torch.zeros_like(probs).scatter(-1, order, ordered)
    return kept / kept.sum(dim=-1, keepdim=True)


def select_next(logits: Tensor, temperature: float, top_p: float = 1.0) -> Tensor:
    """Next token ids [B, 1] from last-position logits [B, V]: argmax, or sampling at temperature within the
    top-p nucleus."""
    if temperature > 0:
        probs = nucleus(torch.softmax(logits.float() / temperature, dim=-1), top_p)
        return torch.multinomial(probs, 1)
    return logits.argmax(dim=-1, keepdim=True)


class _MarkEachToken(LogitsProcessor):
    """Stores a clock mark each time the logits of a new token are ready (once per token)."""

    def __init__(self, marker: Optional[Marker], marks: list):
        self.marker, self.marks = marker, marks

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self.marker is not None:
            self.marks.append(self.marker())
        return scores


class HFGenerateGenerator:
    """transformers' eager `generate` with a dynamic KV cache: the everyday AR baseline."""

    def __init__(self, model: torch.nn.Module, temperature: float = 0.0, top_p: float = 1.0,
                 repetition_penalty: float = 1.0):
        self.model = model
        self.temperature = temperature
        cfg = copy.deepcopy(model.generation_config)
        self.eos = eos_ids(model)
        # No stopping at EOS: `None` would be filled in from the model's own generation config (and a
        # batch row that hits EOS would be padded), whereas an empty list leaves generate without any
        # EOS criterion, so EOS is an ordinary token as in the static loops.
        cfg.eos_token_id = []
        cfg.pad_token_id = 0 if cfg.pad_token_id is None else cfg.pad_token_id
        cfg.do_sample = temperature > 0
        cfg.temperature = temperature if temperature > 0 else None
        cfg.top_p = top_p if temperature > 0 and top_p < 1.0 else None
        cfg.top_k = None
        cfg.repetition_penalty = repetition_penalty if repetition_penalty != 1.0 else None
        cfg.use_cache = True
        self.generation_config = cfg

    @torch.inference_mode()
    def generate(self, prompt_ids: Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker: Optional[Marker] = None) -> GenerationTrace:
        marks: list = []
        cfg = copy.copy(self.generation_config)
        cfg.max_new_tokens = n_out
        out = self.model.generate(
            prompt_ids, attention_mask=torch.ones_like(prompt_ids), generation_config=cfg,
            logits_processor=LogitsProcessorList([_MarkEachToken(marker, marks)]))
        new = out[:, prompt_ids.shape[1]:]
        check_exact_n_out(new, prompt_ids.shape[0], n_out, self.eos, cfg.pad_token_id)
        return GenerationTrace(output_ids=new, marks=marks, forward_passes=n_out, steps_executed=n_out,
                               work=ar_work(prompt_ids.shape[0], prompt_ids.shape[1], n_out))


def cache_keyword(model: torch.nn.Module) -> str:
    """The name under which the model's forward takes its KV cache: `cache` from transformers 5.24 on
    (where `past_key_values` is deprecated), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _decode_one(model: torch.nn.Module, token: Tensor, position: Tensor, cache, keyword: str) -> Tensor:
    """Logits [B, V] of the next position after feeding `token` [B, 1] at `position` [1]."""
    return model(input_ids=token, cache_position=position, use_cache=True, **{keyword: cache}).logits[:, -1]


class StaticCacheGenerator:
    """Prefill + one-token decode steps over a static KV cache, optionally compiled (gpt-fast style).

    Caches are allocated once per (batch, length) and reset before each generation, so no memory
    is allocated inside the timed loop and compiled graphs see the same buffers every time.
    """

    def __init__(self, model: torch.nn.Module, compile: bool, temperature: float = 0.0, top_p: float = 1.0,
                 repetition_penalty: float = 1.0):
        self.model, self.temperature = model, temperature
        self.top_p, self.repetition_penalty = top_p, repetition_penalty
        device = next(model.parameters()).device
        self.step = compile_for(_decode_one, device) if compile else _decode_one
        self.keyword = cache_keyword(model)
        self._caches: dict[tuple[int, int], object] = {}

    def _cache(self, batch: int, length: int):
        from transformers import StaticCache

        key = (batch, length)
        if key not in self._caches:
            self._caches[key] = StaticCache(config=self.model.config, max_cache_len=length)
        cache = self._caches[key]
        cache.reset()
        return cache

    @torch.inference_mode()
    def generate(self, prompt_ids: Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker: Optional[Marker] = None) -> GenerationTrace:
        batch, prompt_len = prompt_ids.shape
        device = prompt_ids.device
        cache = self._cache(batch, prompt_len + n_out)
        positions = torch.arange(prompt_len + n_out, device=device)
        marks: list = []
        logits = self.model(input_ids=prompt_ids, cache_position=positions[:prompt_len], use_cache=True,
                            **{self.keyword: cache}).logits[:, -1]
        seen = prompt_ids
        token = select_next(penalize_repeats(logits, seen, self.repetition_penalty), self.temperature, self.top_p)
        tokens = [token]
        if marker is not None:
            marks.append(marker())
        for i in range(n_out - 1):
            logits = self.step(self.model, token, positions[prompt_len + i:prompt_len + i + 1], cache, self.keyword)
            if self.repetition_penalty != 1.0:
                seen = torch.cat([seen, token], dim=1)
                logits = penalize_repeats(logits, seen, self.repetition_penalty)
            token = select_next(logits, self.temperature, self.top_p).clone()
            tokens.append(token)
            if marker is not None:
                marks.append(marker())
        output_ids = torch.cat(tokens, dim=1)
        check_exact_n_out(output_ids, batch, n_out, set(), None)  # the loop never pads: shape only
        return GenerationTrace(output_ids=output_ids, marks=marks, forward_passes=n_out,
                               steps_executed=n_out, work=ar_work(batch, prompt_len, n_out))


def make_ar_generator(model: torch.nn.Module, path: ARPath):
    """The generator of an AR path: its decode mode, greedy at temperature 0, else sampled with its nucleus and
    repetition penalty (unset: every token, no penalty; see ARSamplingSpec)."""
    entry = registry.DECODE_PATHS.get(path.decode)
    if entry is None:
        raise ValueError(f"decode: {path.decode!r} is not allowed; allowed: {', '.join(registry.DECODE_PATHS)}")
    top_p = 1.0 if path.top_p is None else path.top_p
    penalty = 1.0 if path.repetition_penalty is None else path.repetition_penalty
    if not entry.static:
        return HFGenerateGenerator(model, path.temperature, top_p, penalty)
    return StaticCacheGenerator(model, compile=entry.compiled, temperature=path.temperature, top_p=top_p,
                                repetition_penalty=penalty)
