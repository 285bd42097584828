"""Every engine as a Generator, so that an engine cell is timed by the same loop as a torch cell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..generation import GenerationTrace
from . import Engine

MISSING_TOKEN = -1  # output id where an engine returned fewer than N_out ids (or text only)


@dataclass
class EngineGenerator:
    """`generate` sends the B prompts to the engine and returns its answers as a trace: output ids padded
    with MISSING_TOKEN to N_out, the first answer's steps and forward passes, no clock marks (the engine's
    own TTFT / ITL / step times are in `trace.report`, an EngineBatch). EngineError propagates."""

    engine: Engine

    def generate(self, prompt_ids: torch.Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker=None) -> GenerationTrace:
        batch = self.engine.run(prompt_ids.tolist())
        rows = []
        for answer in batch.answers:
            ids = list(answer.token_ids or [])[:n_out]
            rows.append(ids + [MISSING_TOKEN] * (n_out - len(ids)))
        first = batch.answers[0]
        return GenerationTrace(output_ids=torch.tensor(rows, dtype=torch.long), marks=[],
                               forward_passes=first.forward_passes or 0, steps_executed=first.steps or n_out,
                               report=batch)
