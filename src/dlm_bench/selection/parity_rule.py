"""The parity test of one diffusion path against one AR path on one metric (quality.parity's rules applied to the
rows and the per-prompt scores), shared by the parity table and the choice of an engine's diffusion path."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pandas as pd

from ..metrics.quality import PARITY_METRICS
from ..quality.parity import (REACHED, ParityTest, more_degenerate, paired_differences, parity_test, s_parity,
                              s_parity_tested, split_passages)
from ..stats import FAIL, PASS, RESAMPLES, Estimate

NOT_TESTED = "not tested"  # no per-prompt scores to test with (a study from before they were kept)
CONFIRMED, NOT_CONFIRMED = "confirmed", "not confirmed"  # the confirmation half's outcomes, with undecided


@dataclass(frozen=True)
class ParityRule:
    """How parity is tested: each parity metric's non-inferiority margin (metrics.quality's defaults, which
    `quality.parity_margin` overrides) and the seed of the prompts' split (None: the rows' own seed)."""

    margins: Mapping[str, float] = field(default_factory=dict)
    seed: Optional[int] = None

    def margin(self, metric: str) -> float:
        return self.margins.get(metric, PARITY_METRICS[metric].margin)


class Scores:
    """Per-prompt scores by cell, from quality_metrics.json: `of(cell id, metric)` -> {passage id: score}."""

    def __init__(self, quality: Optional[Mapping] = None):
        self.quality = quality or {}

    def of(self, cell_id, metric: str) -> dict[str, float]:
        entry = self.quality.get(str(cell_id)) or {}
        return {str(r["passage_id"]): r[metric] for r in entry.get("per_prompt", [])
                if r.get(metric) is not None}


def estimate_of(row: pd.Series, metric: str) -> Estimate | None:
    """A row's mean score on a metric with its CI, or None when it has none."""
    if f"{metric}_mean" not in row or pd.isna(row[f"{metric}_mean"]):
        return None
    return Estimate(float(row[f"{metric}_mean"]), float(row.get(f"{metric}_ci_low", math.nan)),
                    float(row.get(f"{metric}_ci_high", math.nan)))


@dataclass
class PathParity:
    """One diffusion path's parity against one AR path on one metric: the curve of means, the K excluded as
    degenerate, both S_parity rules, the tests per K on the selection half and the confirmation at S_parity."""

    curve: dict[int, Estimate]
    degenerate: list[int]
    point: Optional[int]
    tested: Optional[int]
    outcome: str
    tests: dict[int, ParityTest]
    confirmation: Optional[ParityTest]
    margin: float

    @property
    def confirmation_outcome(self) -> str:
        """confirmed, not confirmed (inferior on the held-out prompts), undecided, or — (nothing to confirm)."""
        if self.confirmation is None or self.confirmation.outcome is None:
            return "—"
        return {PASS: CONFIRMED, FAIL: NOT_CONFIRMED}.get(self.confirmation.outcome, "undecided")

    def columns(self) -> dict:
        """The parity columns of a table row."""
        at = self.tests.get(self.tested) if self.tested is not None else None
        conf = self.confirmation
        return {"s_parity_point": self.point, "reached_point": self.point is not None,
                "s_parity": self.tested, "reached": self.outcome == REACHED, "parity_outcome": self.outcome,
                "parity_margin": self.margin,
                "parity_tests": ";".join(f"{k}:{t.outcome or '-'}" for k, t in sorted(self.tests.items())),
                "parity_difference": at.difference.value if at else math.nan,
                "parity_difference_ci_low": at.difference.ci_low if at else math.nan,
                "parity_difference_ci_high": at.difference.ci_high if at else math.nan,
                "selection_prompts": at.prompts if at else 0,
                "confirmation": self.confirmation_outcome,
                "confirmation_difference": conf.difference.value if conf else math.nan,
                "confirmation_difference_ci_low": conf.difference.ci_low if conf else math.nan,
                "confirmation_difference_ci_high": conf.difference.ci_high if conf else math.nan,
                "confirmation_prompts": conf.prompts if conf else 0,
                "steps_in_grid": ";".join(str(k) for k in sorted(self.curve)),
                "diffusion_quality_curve": ";".join(f"{k}:{self.curve[k].value:.4g}" for k in sorted(self.curve)),
                "degenerate_steps": ";".join(str(k) for k in self.degenerate)}


def path_parity(cells_by_k: Mapping[int, pd.Series], ar_cell: pd.Series, metric: str, scores: Scores,
                rule: ParityRule, resamples: int = RESAMPLES) -> Optional[PathParity]:
    """Parity of one diffusion path (its quality cell per K) against one AR quality cell on one metric; None when
    neither has a mean score on it."""
    spec = PARITY_METRICS[metric]
    ar_est = estimate_of(ar_cell, metric)
    curve = {k: e for k, e in ((k, estimate_of(c, metric)) for k, c in cells_by_k.items()) if e is not None}
    if ar_est is None or not curve:
        return None
    ar_flags = scores.of(ar_cell["cell_id"], "degenerate")
    degenerate = []
    for k in sorted(curve):
        flags = scores.of(cells_by_k[k]["cell_id"], "degenerate")
        common = sorted(set(flags) & set(ar_flags))
        worse = (more_degenerate([flags[p] for p in common], [ar_flags[p] for p in common], resamples) if common
                 else more_degenerate(cells_by_k[k].get("degenerate_mean"), ar_cell.get("degenerate_mean")))
        if worse:
            degenerate.append(k)
    eligible = {k: e for k, e in curve.items() if k not in degenerate}
    ar_scores = scores.of(ar_cell["cell_id"], metric)
    seed = rule.seed if rule.seed is not None else int(ar_cell.get("setting_seed", 0) or 0)
    selection, confirmation = split_passages(list(ar_scores), seed)
    margin = rule.margin(metric)

    def test(k: int, half) -> ParityTest:
        d = paired_differences(scores.of(cells_by_k[k]["cell_id"], metric), ar_scores, spec.higher_is_better,
                               spec.log_scale, half)
        return parity_test(d, margin, resamples)

    tests = {k: test(k, selection) for k in sorted(eligible)}
    testable = {k: t for k, t in tests.items() if t.outcome is not None}
    if testable:
        tested, outcome = s_parity_tested(testable)
    else:
        tested, outcome = None, NOT_TESTED
    return PathParity(curve, degenerate, s_parity(eligible, ar_est, spec.higher_is_better), tested, outcome, tests,
                      test(tested, confirmation) if tested is not None else None, margin)
