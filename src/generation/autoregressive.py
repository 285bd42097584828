"""Autoregressive generation of exactly N_out tokens (EOS ignored) with per-token marks."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList

from . import GenerationTrace, Marker


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

    def __init__(self, model: torch.nn.Module, temperature: float = 0.0):
        self.model = model
        self.temperature = temperature
        cfg = copy.deepcopy(model.generation_config)
        cfg.eos_token_id = None  # never stop early: both architectures emit exactly n_out tokens
        cfg.pad_token_id = 0 if cfg.pad_token_id is None else cfg.pad_token_id
        cfg.do_sample = temperature > 0
        cfg.temperature = temperature if temperature > 0 else None
        cfg.top_p = None
        cfg.top_k = None
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
        if new.shape[1] != n_out:
            raise RuntimeError(f"autoregressive generation produced {new.shape[1]} tokens, expected {n_out}")
        return GenerationTrace(output_ids=new, marks=marks, forward_passes=n_out, steps_executed=n_out)
