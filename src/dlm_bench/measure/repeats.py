"""How many timed repetitions a cell runs (the timing settings' policy, shared by every engine)."""

from __future__ import annotations

from ..config import TimingSpec
from ..results import Repetition


def another_repetition(timing: TimingSpec, reps: list[Repetition]) -> bool:
    """Whether one more timed repetition starts. Up to `repeats`: yes, unless `max_timed_s` is spent and
    `min_repeats` ran. After `repeats`: only while the timed total is under `min_timed_s` (and under
    `max_timed_s`). Never beyond `max_repeats`."""
    timed_s = sum(r.latency_ms for r in reps) / 1000.0
    spent = timing.max_timed_s is not None and timed_s >= timing.max_timed_s
    if len(reps) >= timing.max_repeats:
        return False
    if len(reps) < timing.repeats:
        return not spent or len(reps) < timing.min_repeats
    return timing.min_timed_s is not None and timed_s < timing.min_timed_s and not spent
