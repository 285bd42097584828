"""Accuracy on a task, its paired comparison between two models, tokens per forward, and AUP.

- Accuracy: the share of problems answered correctly, with its bootstrap 95% interval (stats.bootstrap_mean).
- Paired comparison: both models answer the same problems, so per problem the difference of outcomes
  (diffusion - AR, each 0 or 1) is paired. Direction is the exact sign test over the discordant problems
  (McNemar's exact test: problems only diffusion solved against problems only AR solved); non-inferiority is
  quality.parity's test of the paired differences at the task's margin (accuracy points), so S_parity on a task
  is decided by the same rule as on every other metric.
- Tokens per forward: answer tokens over model forward calls actually run (AR: 1; a diffusion sampler that
  commits several tokens per step: more; adaptive samplers change it per problem).
- AUP, accuracy under parallelism (Qian et al., 2026, "d3LLM", arXiv:2601.07568, Sec. on AUP): over one
  method's (tokens per forward rho, accuracy y in %) points sorted by rho, keeping those within `offset`
  points of the accuracy at the smallest rho, AUP = rho_1 y_1 + sum_i (rho_i - rho_{i-1}) (y_i W(y_i) +
  y_{i-1} W(y_{i-1})) / 2 with W(y) = min(exp(-alpha (1 - y / y_max)), 1), y_max the best accuracy of any
  method on the task, alpha = 3 and offset = 5 points as the paper sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from ..quality.parity import ParityTest, parity_test
from ..stats import RESAMPLES, Estimate, bootstrap_mean, sign_test

AUP_ALPHA, AUP_OFFSET = 3.0, 5.0


def accuracy(outcomes: Sequence[bool], resamples: int = RESAMPLES) -> Estimate:
    """The share correct, with its bootstrap 95% interval (NaN without outcomes)."""
    return bootstrap_mean([float(o) for o in outcomes], resamples)


def tokens_per_forward(tokens: int, forwards: int) -> float:
    """Answer tokens per model forward call; NaN without forwards."""
    return tokens / forwards if forwards > 0 else math.nan


@dataclass(frozen=True)
class AccuracyComparison:
    """Diffusion against AR on the problems both answered: the accuracy difference (diffusion - AR, points
    0-1) with its CI and non-inferiority outcome at the margin, and the direction test: problems only diffusion
    solved, only AR solved, and the exact two-sided p-value."""

    test: ParityTest
    only_diffusion: int
    only_ar: int
    p_value: float


def compare(diffusion: Mapping[str, bool], ar: Mapping[str, bool], margin: float,
            problems: Optional[frozenset[str]] = None, resamples: int = RESAMPLES) -> AccuracyComparison:
    """The paired comparison over the problems both answered (and in `problems`, when given)."""
    shared = sorted(p for p in set(diffusion) & set(ar) if problems is None or p in problems)
    differences = [float(diffusion[p]) - float(ar[p]) for p in shared]
    only_d = sum(d > 0 for d in differences)
    only_a = sum(d < 0 for d in differences)
    return AccuracyComparison(parity_test(differences, margin, resamples), only_d, only_a, sign_test(only_d, only_a))


def aup_weight(y: float, y_max: float, alpha: float = AUP_ALPHA) -> float:
    """W(y) = min(exp(-alpha (1 - y / y_max)), 1)."""
    return min(math.exp(-alpha * (1.0 - y / y_max)), 1.0)


def aup(points: Sequence[tuple[float, float]], y_max: float, alpha: float = AUP_ALPHA,
        offset: float = AUP_OFFSET) -> float:
    """AUP of one method's (tokens per forward, accuracy in %) points; NaN without points or with y_max <= 0."""
    valid = sorted((rho, y) for rho, y in points if rho > 0 and not math.isnan(y))
    if not valid or y_max <= 0:
        return math.nan
    floor = valid[0][1] - offset
    kept = [(rho, y) for rho, y in valid if y >= floor]
    total = kept[0][0] * kept[0][1]
    for (rho0, y0), (rho1, y1) in zip(kept, kept[1:]):
        total += (rho1 - rho0) * (y1 * aup_weight(y1, y_max, alpha) + y0 * aup_weight(y0, y_max, alpha)) / 2
    return total
