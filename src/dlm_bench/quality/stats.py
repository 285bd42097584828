"""Bootstrap confidence intervals for means (quality over prompts)."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Estimate:
    """A mean (or ratio) with its bootstrap 95% interval."""

    value: float
    ci_low: float
    ci_high: float


def bootstrap_mean(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> Estimate:
    """Mean with a percentile-bootstrap 95% CI; a single value has a zero-width interval."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return Estimate(math.nan, math.nan, math.nan)
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return Estimate(mean, mean, mean)
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(vals, k=len(vals))) for _ in range(resamples))
    return Estimate(mean, means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))])
