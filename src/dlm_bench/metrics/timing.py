"""One function per metric. Inputs are plain numbers: times in ms, counts in tokens.

Used by the runner and the record; torch-free.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def ttft_ms(token_offsets_ms: Sequence[float]) -> float:
    """Time to first token: offset of the first output token's logits from the start, ms."""
    return float(token_offsets_ms[0])


def mean_itl_ms(token_offsets_ms: Sequence[float]) -> float:
    """ITL: mean gap between consecutive output tokens, ms; NaN for a single token."""
    if len(token_offsets_ms) < 2:
        return math.nan
    return (token_offsets_ms[-1] - token_offsets_ms[0]) / (len(token_offsets_ms) - 1)


def step_latencies_ms(step_offsets_ms: Sequence[float]) -> list[float]:
    """Duration of each denoising step, ms (the first measured from the start)."""
    return [b - a for a, b in zip([0.0, *step_offsets_ms], step_offsets_ms)]


def throughput_tokens_per_s(batch_size: int, n_out: int, latency_ms: float) -> float:
    """T_gen = B * N_out / L_e2e, output tokens per second."""
    return batch_size * n_out / (latency_ms / 1000.0)


def answer_tokens(output_ids: Sequence[Sequence[int]], eos_id: int | None) -> list[int]:
    """Per sequence, output tokens before the first EOS (all of them when there is none)."""
    return [list(row).index(eos_id) if eos_id is not None and eos_id in row else len(row) for row in output_ids]


def forward_passes_per_token(forward_passes: int, n_out: int) -> float:
    """Model forward calls per output token (per sequence)."""
    return forward_passes / n_out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def mean_finite(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation / mean; 0 for one value."""
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else math.nan
