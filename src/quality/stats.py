"""Bootstrap confidence intervals for means and for ratios of medians."""

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


def bootstrap_ratio_of_medians(numerator: Sequence[float], denominator: Sequence[float], resamples: int = 1000,
                               seed: int = 0) -> Estimate:
    """median(numerator) / median(denominator) with a 95% CI from resampling both samples."""
    if not numerator or not denominator:
        return Estimate(math.nan, math.nan, math.nan)
    value = statistics.median(numerator) / statistics.median(denominator)
    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(numerator, k=len(numerator)))
                    / statistics.median(rng.choices(denominator, k=len(denominator))) for _ in range(resamples))
    return Estimate(value, ratios[int(0.025 * resamples)], ratios[min(resamples - 1, int(0.975 * resamples))])
