"""S_parity: the fewest diffusion steps at which the diffusion model's quality matches the AR model's.

For a metric where higher is better (BERTScore F1): the smallest K with mean >= the AR mean. For one
where lower is better (perplexity): the smallest K with mean <= the AR mean. The CI-aware variant
accepts a K as soon as the diffusion model's 95% interval reaches the AR mean. "Not reached within
the grid" is None, never an error. The analysis applies these to the rows (see analysis.parity).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from ..stats import Estimate


def more_degenerate(diffusion_share, ar_share) -> bool:
    """Whether a diffusion K's outputs are degenerate (repetitive; the share of answers with distinct-2 < 0.5)
    more often than the AR model's: such a K cannot reach parity, since a low perplexity is also what
    repeating one phrase earns. Unknown shares (None, NaN) exclude nothing."""
    if diffusion_share is None or ar_share is None:
        return False
    d, a = float(diffusion_share), float(ar_share)
    return not (math.isnan(d) or math.isnan(a)) and d > a


def _matches(value: float, target: float, higher_is_better: bool) -> bool:
    if math.isnan(value) or math.isnan(target):
        return False
    return value >= target if higher_is_better else value <= target


def s_parity(curve: Mapping[int, Estimate], ar: Estimate, higher_is_better: bool) -> Optional[int]:
    """Smallest K whose mean quality matches the AR mean; None when no K in the grid does."""
    for k in sorted(curve):
        if _matches(curve[k].value, ar.value, higher_is_better):
            return k
    return None


def s_parity_ci(curve: Mapping[int, Estimate], ar: Estimate, higher_is_better: bool) -> Optional[int]:
    """Smallest K whose 95% CI reaches the AR mean (upper bound for higher-is-better, lower otherwise)."""
    for k in sorted(curve):
        bound = curve[k].ci_high if higher_is_better else curve[k].ci_low
        if _matches(bound, ar.value, higher_is_better):
            return k
    return None
