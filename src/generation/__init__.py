"""Generation behind one interface: `generate(prompt_ids, n_out, steps=..., marker=...)`.

Generators know nothing of timing: the caller passes `marker`, a zero-argument callable whose
return value (a clock mark) is stored after every output token (autoregressive) or every
denoising step (diffusion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from torch import Tensor

Marker = Callable[[], Any]


@dataclass
class GenerationTrace:
    """What one generation produced.

    output_ids: [B, n_out] generated token ids (prompt excluded).
    marks: one clock mark per output token (AR, taken when its logits are ready) or per
        denoising step (diffusion, taken after the step's tokens are committed).
    forward_passes: model forward calls (a CFG step counts 2).
    steps_executed: decode iterations actually run (AR: n_out; diffusion: denoising steps).
    committed_per_step: diffusion only, tokens committed at each step (per sequence).
    """

    output_ids: Tensor
    marks: list[Any]
    forward_passes: int
    steps_executed: int
    committed_per_step: list[int] = field(default_factory=list)


class Generator(Protocol):
    def generate(self, prompt_ids: Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker: Optional[Marker] = None) -> GenerationTrace: ...
