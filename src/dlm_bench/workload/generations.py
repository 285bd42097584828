"""Untimed generations over every prompt of a cell, saved so quality can be scored (and re-scored)
without regenerating."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..generation import Generator
from .prompts import PromptSet


def generate_for_quality(generator: Generator, prompts: PromptSet, batch_size: int, n_out: int,
                         steps: Optional[int], device: torch.device, tokenizer: Any) -> list[dict]:
    """One entry per prompt: passage id, prompt/reference/output text, the output token ids and the steps
    its batch executed (per prompt at batch_size 1; adaptive samplers stop early)."""
    out = []
    for start in range(0, len(prompts.prompt_ids), batch_size):
        chunk = prompts.prompt_ids[start:start + batch_size]
        ids = torch.tensor(chunk, dtype=torch.long, device=device)
        trace = generator.generate(ids, n_out, steps=steps)
        for j, output in enumerate(trace.output_ids.tolist()):
            i = start + j
            out.append({
                "passage_id": prompts.passage_ids[i],
                "prompt_text": tokenizer.decode(prompts.prompt_ids[i]),
                "reference_text": tokenizer.decode(prompts.reference_ids[i]),
                "output_ids": output,
                "output_text": tokenizer.decode(output, skip_special_tokens=True),
                "steps_executed": trace.steps_executed,
            })
    return out
