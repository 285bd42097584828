"""Does quality move with a setting? Rank correlation and paired differences with bootstrap CIs.

Both resample prompts: the same resampled prompts are used at every setting (the scores are paired
by prompt), so the interval reflects how much the conclusion depends on which passages were drawn.
"""

from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence

from ..stats import RESAMPLES, Estimate, bootstrap


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's r of the ranks); NaN when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def rank_correlation(scores: Mapping[float, Sequence[float]], resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """Spearman correlation between the setting (the mapping's keys, e.g. K) and the mean score over
    prompts at each setting; `scores[k][i]` is prompt i's score at setting k."""
    keys = sorted(scores)
    n = len(scores[keys[0]])

    def corr(idx: list[int]) -> float:
        return spearman(keys, [statistics.fmean(scores[k][i] for i in idx) for k in keys])

    return bootstrap(n, corr, resamples, seed)


def paired_difference(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """mean(a - b) over prompts (a[i] and b[i] scored on the same prompt), with a bootstrap 95% CI."""
    diffs = [x - y for x, y in zip(a, b)]
    return bootstrap(len(diffs), lambda idx: statistics.fmean(diffs[i] for i in idx), resamples, seed)
