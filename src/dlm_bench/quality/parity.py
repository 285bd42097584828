"""S_parity: the fewest diffusion steps K at which the diffusion model's quality is not worse than the AR model's.

Two rules, kept apart:
- the plan's point rule (`s_parity`): the smallest K whose mean quality reaches the AR mean (higher is better:
  mean >= AR mean; lower is better: mean <= AR mean). No test: a tie by chance counts as parity.
- the test (`parity_test`, `s_parity_tested`): every prompt is scored by both models, so at each K the per-prompt
  paired difference (diffusion - AR, oriented so that above 0 favours diffusion; perplexities on the log scale)
  gets a bootstrap 95% CI, and K is non-inferior when the CI's low end lies above -margin (a margin declared per
  metric). The smallest non-inferior K is S_parity: reached; none, and some K undecided (the CI straddles
  -margin): undecided; every K inferior (the whole CI below -margin): not reached. One `stats.verdict` decides.

Prompts are split, seeded, into a selection half and a confirmation half (`split_passages`): K (and the path
"at its best") is chosen on the selection half and its parity tested again on the confirmation half, so a
parity found by choosing among many paths and steps is confirmed on prompts it was not chosen on.

A K whose answers degenerate (repetitive: distinct-2 < 0.5) more often than the AR model's cannot reach parity,
since a low perplexity is what repeating one phrase earns: `more_degenerate` tests the paired per-prompt
difference of the degeneracy flags (excluded only when its CI lies above 0), or, without per-prompt flags, the
two shares.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from ..stats import FAIL, PASS, RESAMPLES, UNDECIDED, Estimate, bootstrap_mean, verdict

REACHED, NOT_REACHED = "reached", "not reached"  # S_parity's outcomes, with stats.UNDECIDED
OUTCOME_OF = {PASS: REACHED, FAIL: NOT_REACHED, UNDECIDED: UNDECIDED}


def more_degenerate(diffusion, ar, resamples: int = RESAMPLES) -> bool:
    """Whether a diffusion K's answers are degenerate more often than the AR model's. With per-prompt flags
    (two sequences of 0/1 over the same prompts): when the bootstrap CI of the paired difference lies wholly
    above 0. With two shares (numbers): when the diffusion share is larger. Unknown values exclude nothing."""
    if isinstance(diffusion, Sequence) and isinstance(ar, Sequence):
        pairs = [(d, a) for d, a in zip(diffusion, ar) if d is not None and a is not None]
        if not pairs:
            return False
        est = bootstrap_mean([d - a for d, a in pairs], resamples)
        return verdict(est.ci_low, est.ci_high, 0.0, bound_passes=False) == PASS
    if diffusion is None or ar is None:
        return False
    d, a = float(diffusion), float(ar)
    return not (math.isnan(d) or math.isnan(a)) and d > a


def _matches(value: float, target: float, higher_is_better: bool) -> bool:
    if math.isnan(value) or math.isnan(target):
        return False
    return value >= target if higher_is_better else value <= target


def s_parity(curve: Mapping[int, Estimate], ar: Estimate, higher_is_better: bool) -> Optional[int]:
    """The plan's point rule: the smallest K whose mean quality matches the AR mean; None when no K does."""
    for k in sorted(curve):
        if _matches(curve[k].value, ar.value, higher_is_better):
            return k
    return None


def split_passages(passage_ids: Sequence[str], seed: int) -> tuple[frozenset[str], frozenset[str]]:
    """(selection half, confirmation half) of the prompts: ordered by a seeded hash of each passage id, the first
    half (rounded up) selects, the rest confirms. Disjoint, and the same for the same ids and seed."""
    ordered = sorted(set(passage_ids), key=lambda p: hashlib.sha1(f"{seed}:{p}".encode()).hexdigest())
    half = (len(ordered) + 1) // 2
    return frozenset(ordered[:half]), frozenset(ordered[half:])


def paired_differences(diffusion: Mapping[str, float], ar: Mapping[str, float], higher_is_better: bool,
                       log_scale: bool, passages: Optional[frozenset[str]] = None) -> list[float]:
    """Per prompt scored by both (and in `passages`, when given), diffusion - AR, oriented so that above 0 favours
    diffusion; on the log scale for a ratio metric (perplexity). Missing and non-finite scores are left out."""
    out = []
    for passage in sorted(set(diffusion) & set(ar)):
        if passages is not None and passage not in passages:
            continue
        d, a = diffusion[passage], ar[passage]
        if d is None or a is None or not (math.isfinite(d) and math.isfinite(a)):
            continue
        if log_scale:
            if d <= 0 or a <= 0:
                continue
            d, a = math.log(d), math.log(a)
        out.append(d - a if higher_is_better else a - d)
    return out


@dataclass(frozen=True)
class ParityTest:
    """One K's non-inferiority test: the mean paired difference (above 0 favours diffusion) with its CI, the
    outcome (PASS: not worse by more than the margin; FAIL: worse by more; UNDECIDED) and the prompts it used."""

    difference: Estimate
    outcome: Optional[str]  # None: no prompt scored by both
    prompts: int


def parity_test(differences: Sequence[float], margin: float, resamples: int = RESAMPLES,
                seed: int = 0) -> ParityTest:
    """Non-inferiority of the paired differences at `margin`: PASS when the CI's low end lies above -margin."""
    est = bootstrap_mean(list(differences), resamples, seed)
    return ParityTest(est, verdict(est.ci_low, est.ci_high, -margin, bound_passes=False), len(differences))


def s_parity_tested(tests: Mapping[int, ParityTest]) -> tuple[Optional[int], str]:
    """The smallest non-inferior K and the outcome: (K, reached), (None, undecided) when no K passes but some K
    is undecided, (None, not reached) when every K is inferior (or nothing could be tested)."""
    for k in sorted(tests):
        if tests[k].outcome == PASS:
            return k, REACHED
    if any(t.outcome == UNDECIDED for t in tests.values()):
        return None, UNDECIDED
    return None, NOT_REACHED
