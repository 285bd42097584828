"""Every engine as a Generator, so that an engine cell is timed by the same loop as a torch cell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..generation import GenerationTrace
from . import Engine, EngineBatch, EngineError

MISSING_TOKEN = -1  # output id of an answer that came back as text only (its ids are re-encoded elsewhere)


def contract_error(batch: EngineBatch, batch_size: int, n_out: int) -> Optional[str]:
    """Why an engine's batch breaks the contract (B answers of exactly N_out tokens each, none empty), or None.
    A server that stops early (a length limit, an EOS it did not ignore, a cut stream) returns fewer tokens:
    its time is not the time of N_out tokens, so it is never a measurement."""
    if len(batch.answers) != batch_size:
        return f"{len(batch.answers)} answers came back for {batch_size} prompts"
    for i, answer in enumerate(batch.answers):
        counted = len(answer.token_ids) if answer.token_ids is not None else answer.tokens_returned
        where = f"answer {i + 1} of {batch_size}"
        if counted == 0:
            return f"{where} is empty (N_out = {n_out} tokens asked)"
        for count, how in ((answer.tokens_returned, "counted by the engine"), (counted, "returned")):
            if count != n_out:
                return f"{where} has {count} tokens ({how}), not N_out = {n_out}: the engine stopped early or ran on"
    return None


@dataclass
class EngineGenerator:
    """`generate` sends the B prompts to the engine and returns its answers as a trace: output ids padded
    with MISSING_TOKEN to N_out (text-only answers), the first answer's steps and forward passes, no clock marks
    (the engine's own TTFT / ITL / step times are in `trace.report`, an EngineBatch). An answer that breaks
    the contract (`contract_error`) raises EngineError, as any engine failure does."""

    engine: Engine

    def generate(self, prompt_ids: torch.Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker=None) -> GenerationTrace:
        batch = self.engine.run(prompt_ids.tolist())
        problem = contract_error(batch, int(prompt_ids.shape[0]), n_out)
        if problem:
            raise EngineError(f"{self.engine.name}: {problem}")
        rows = []
        for answer in batch.answers:
            ids = list(answer.token_ids or [])[:n_out]
            rows.append(ids + [MISSING_TOKEN] * (n_out - len(ids)))
        first = batch.answers[0]
        return GenerationTrace(output_ids=torch.tensor(rows, dtype=torch.long), marks=[],
                               forward_passes=first.forward_passes or 0, steps_executed=first.steps or n_out,
                               report=batch)
