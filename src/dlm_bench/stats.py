"""The harness's statistics, in one place: one bootstrap, one verdict, the named CV thresholds.

Every interval of the project is a percentile-bootstrap 95% interval from `bootstrap`: a mean quality
over prompts, the median of per-pair latency ratios, a paired quality difference, a rank correlation
with K. Every "does the interval clear the bound" question is answered by `verdict` with one of
three outcomes. Imports neither torch nor pandas.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from .metrics.timing import coefficient_of_variation

RESAMPLES = 1000  # default bootstrap resamples (config field quality.bootstrap_resamples)

# Run-to-run coefficient of variation (metrics.timing.coefficient_of_variation of a cell's repetitions, or
# of a pair's per-pair ratios)
CV_NO_VERDICT = 0.05  # above it a cell is flagged and a ratio built on it carries no verdict
CV_TARGET = 0.02  # the measurement-quality target a summary reports met or missed per cell

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"


@dataclass(frozen=True)
class Estimate:
    """A statistic (mean, median ratio, correlation) with its bootstrap 95% interval."""

    value: float
    ci_low: float
    ci_high: float


NO_ESTIMATE = Estimate(math.nan, math.nan, math.nan)


def bootstrap(n: int, statistic: Callable[[list[int]], float], resamples: int = RESAMPLES,
              seed: int = 0) -> Estimate:
    """`statistic` of items 0..n-1 with a percentile-bootstrap 95% interval.

    `statistic` takes a list of item indices (with repeats): the point value is its value on every item
    once; each of `resamples` draws picks n indices with replacement (`random.Random(seed)`). Draws
    whose statistic is NaN are left out of the percentiles. No items: NaN everywhere.
    """
    if n == 0:
        return NO_ESTIMATE
    point = statistic(list(range(n)))
    rng = random.Random(seed)
    items = range(n)
    draws = sorted(v for v in (statistic(rng.choices(items, k=n)) for _ in range(resamples)) if not math.isnan(v))
    if not draws:
        return Estimate(point, math.nan, math.nan)
    return Estimate(point, draws[int(0.025 * len(draws))], draws[min(len(draws) - 1, int(0.975 * len(draws)))])


def bootstrap_mean(values: Sequence[Optional[float]], resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """Mean of the values (None and NaN left out), with its bootstrap 95% interval."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return bootstrap(len(vals), lambda idx: statistics.fmean(vals[i] for i in idx), resamples, seed)


def bootstrap_median(values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """Median of the values, with its bootstrap 95% interval."""
    vals = list(values)
    return bootstrap(len(vals), lambda idx: statistics.median(vals[i] for i in idx), resamples, seed)


def verdict(low: float, high: float, bound: float, higher_is_better: bool = True,
            bound_passes: bool = True) -> Optional[str]:
    """PASS when the whole interval [low, high] is on the good side of `bound`, FAIL when the whole
    interval is strictly on the bad side, else UNDECIDED; None when an end is NaN (no interval).

    `bound_passes`: an end exactly on the bound still passes (a goal "at least x"); False for a claim
    that needs the interval to exclude the bound ("faster", a ratio strictly above 1)."""
    if math.isnan(low) or math.isnan(high):
        return None
    if not higher_is_better:
        low, high, bound = -high, -low, -bound
    if low > bound or (bound_passes and low == bound):
        return PASS
    return FAIL if high < bound else UNDECIDED



ALPHA = 0.05  # the level of every direction test


def sign_test(above: int, below: int) -> float:
    """Two-sided exact sign test: the probability, were each pair equally likely to fall either side of 1, of a
    split at least as lopsided as `above` : `below` (ties left out before counting). 1.0 with no pairs."""
    n = above + below
    if n == 0:
        return 1.0
    k = min(above, below)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class RatioTest:
    """A paired ratio's two answers, kept apart. Direction: how many per-pair ratios lie above and below 1 and
    the sign test's p-value. Magnitude: the median ratio with its bootstrap 95% CI, and the per-pair ratios'
    CV, which says whether that magnitude is precise (at most CV_NO_VERDICT) or only indicative."""

    estimate: Estimate
    above: int  # per-pair ratios > 1 (the contender faster, for reference / contender latencies)
    below: int  # per-pair ratios < 1
    p_value: float
    cv: float

    @property
    def pairs(self) -> int:
        return self.above + self.below

    @property
    def direction(self) -> Optional[str]:
        """PASS: above 1 (the contender faster), FAIL: below 1, UNDECIDED: the sign test cannot tell at ALPHA;
        None without pairs."""
        if self.pairs == 0:
            return None
        if self.p_value >= ALPHA:
            return UNDECIDED
        return PASS if self.above > self.below else FAIL

    @property
    def precise(self) -> bool:
        """Whether the magnitude may be quoted as a measurement (the per-pair ratios spread by at most 5%)."""
        return not math.isnan(self.cv) and self.cv <= CV_NO_VERDICT


def paired_ratio_test(reference: Sequence[float], contender: Sequence[float], resamples: int = RESAMPLES,
                      seed: int = 0) -> RatioTest:
    """Direction and magnitude of the per-pair ratios reference / contender (pairs with a zero contender left
    out; a ratio of exactly 1 counts for neither side of the sign test)."""
    ratios = [r / c for r, c in zip(reference, contender) if c > 0]
    above, below = sum(x > 1 for x in ratios), sum(x < 1 for x in ratios)
    cv = coefficient_of_variation(ratios) if ratios else math.nan
    return RatioTest(bootstrap_median(ratios, resamples, seed), above, below, sign_test(above, below), cv)
