"""Generation behind one interface: `generate(prompt_ids, n_out, steps=..., marker=...)`.

Generators know nothing of timing: the caller passes `marker`, a zero-argument callable whose
return value (a clock mark) is stored after every output token (autoregressive) or every
denoising step (diffusion). A marker may raise to end a generation early (shortened warm-ups do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

if TYPE_CHECKING:  # the records of this module are read by the torch-free roofline and analysis
    from torch import Tensor

Marker = Callable[[], Any]


@dataclass(frozen=True)
class ForwardWork:
    """What one model forward call processed, for the roofline (counts per call, in tokens).

    batch: sequences in the call (a CFG step runs 2B); query_tokens: tokens run through the layers
    per sequence; attention_pairs: (query, key) pairs scored per sequence and layer; logits_tokens:
    positions the LM head is applied to per sequence; cached_tokens: keys/values read from a cache
    per sequence and layer.
    """

    batch: int
    query_tokens: int
    attention_pairs: int
    logits_tokens: int
    cached_tokens: int


@dataclass
class GenerationTrace:
    """What one generation produced.

    output_ids: [B, n_out] generated token ids (prompt excluded).
    marks: one clock mark per output token (AR, taken when its logits are ready) or per
        denoising step (diffusion, taken after the step's tokens are committed).
    forward_passes: model forward calls (a CFG step counts 2).
    steps_executed: decode iterations actually run (AR: n_out; diffusion: denoising steps).
    committed_per_step: diffusion only, tokens committed at each step (per sequence, batch mean).
    work: one ForwardWork per model forward call.
    report: an engine's own account of the batch (engines.EngineBatch: the answers as returned, streamed
        TTFT / ITL, logged step times); None for the project's PyTorch generators.
    """

    output_ids: Tensor
    marks: list[Any]
    forward_passes: int
    steps_executed: int
    committed_per_step: list[float] = field(default_factory=list)
    work: list[ForwardWork] = field(default_factory=list)
    report: Any = None


class Generator(Protocol):
    def generate(self, prompt_ids: Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker: Optional[Marker] = None) -> GenerationTrace: ...
