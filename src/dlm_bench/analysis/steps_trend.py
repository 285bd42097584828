"""Does the diffusion model's quality move with the number of steps K? One row per (model, N, sampler,
cache, forward): for each parity metric, Spearman's rank correlation between K and the mean score over
prompts, with a bootstrap 95% interval that resamples prompts (quality.trend.rank_correlation), read from
the per-prompt scores in quality_metrics.json of each K's quality cell (baseline.quality_cells). A reading is printed only when the interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from ..registry import DIFFUSION
from ..labels import variant_label
from ..metrics.quality import PARITY_METRICS
from ..quality.trend import rank_correlation
from ..stats import FAIL, PASS, RESAMPLES, Estimate, verdict as interval_verdict
from ..selection.baseline import DIFFUSION_PATH, quality_cells, with_forward_column
from .markdown import fmt, table

NO_TREND = "no trend the prompts can carry"


@dataclass
class StepsTrend:
    model: str
    seq_len: int
    path: str  # sampler/cache (and forward mode when not eager)
    metric: str
    means: dict[int, float]  # K -> mean score over the prompts scored at every K
    correlation: Estimate  # Spearman's rho between K and the mean score, with its bootstrap 95% CI
    prompts: int
    distinct_2: dict[int, float]  # K -> mean distinct-2 over the same prompts (below 0.5: repetitive text)


def best_k(trend: StepsTrend) -> int:
    """The K with the best mean score (the smallest such K on a tie)."""
    sign = 1 if PARITY_METRICS[trend.metric].higher_is_better else -1
    return max(trend.means, key=lambda k: (sign * trend.means[k], -k))


def reading(trend: StepsTrend) -> str:
    """'improves' / 'worsens' with K when the interval excludes 0 (in the metric's own direction), else NO_TREND."""
    est, higher_is_better = trend.correlation, PARITY_METRICS[trend.metric].higher_is_better
    outcome = interval_verdict(est.ci_low, est.ci_high, 0.0, bound_passes=False)  # PASS: rises with K
    if outcome in (PASS, FAIL):
        return "improves" if (outcome == PASS) == higher_is_better else "worsens"
    return NO_TREND


def _per_prompt(quality: dict, cell_id: str, metric: str) -> dict[str, float]:
    """passage id -> score of one cell (empty when the cell was not scored on the metric)."""
    entry = quality.get(str(cell_id)) or {}
    return {p["passage_id"]: p[metric] for p in entry.get("per_prompt", [])
            if metric in p and p[metric] is not None and not math.isnan(p[metric])}


def steps_trends(rows: pd.DataFrame, quality: dict, resamples: int = RESAMPLES) -> list[StepsTrend]:
    """Every (model, N, path, metric) with scores at two or more K; see the module doc."""
    ok = with_forward_column(rows)
    ok = ok[(ok["status"] == "ok") & (ok["kind"] == DIFFUSION)]
    out = []
    for (model, n, *path), cells in ok.groupby(["model_name", "seq_len", *DIFFUSION_PATH]):
        cell_ids = {k: cell["cell_id"] for k, cell in quality_cells(cells).items()}
        for metric in PARITY_METRICS:
            scores = {k: _per_prompt(quality, cid, metric) for k, cid in cell_ids.items()}
            scores = {k: s for k, s in scores.items() if s}
            shared = sorted(set.intersection(*(set(s) for s in scores.values()))) if scores else []
            if len(scores) < 2 or len(shared) < 2:
                continue
            by_k = {k: [s[p] for p in shared] for k, s in scores.items()}
            diversity = {k: _per_prompt(quality, cell_ids[k], "distinct_2") for k in sorted(by_k)}
            out.append(StepsTrend(model, int(n), variant_label({"kind": DIFFUSION, **dict(zip(DIFFUSION_PATH, path))}),
                                  metric, {k: sum(v) / len(v) for k, v in sorted(by_k.items())},
                                  rank_correlation(by_k, resamples), len(shared),
                                  {k: sum(d[p] for p in shared) / len(shared) for k, d in diversity.items()
                                   if all(p in d for p in shared)}))
    return out


TREND_INTRO = ("How the diffusion model's quality moves with the number of steps K, per path without a cache (the "
               "cached paths approximate these): Spearman's rank correlation between K and the mean score over the "
               "prompts, with a bootstrap 95% interval over prompts (the same resampled prompts at every K). A "
               "direction is read only when the interval excludes 0. With three K, ρ can only be ±0.5 or ±1. "
               "Distinct-2 beside it: below 0.5 the text repeats itself, which a judge also rewards with a low "
               "perplexity.")


def steps_trend_markdown(rows: pd.DataFrame, quality: Optional[dict], resamples: int = RESAMPLES) -> str:
    """The table of the summary's 'Quality against K' section: the paths without a cache."""
    uncached = rows[rows["cache"].fillna("none").astype(str) == "none"] if "cache" in rows else rows
    trends = steps_trends(uncached, quality or {}, resamples)
    if not trends:
        return "_No diffusion path without a cache was scored at two or more K._"
    body = [[t.model, str(t.seq_len), t.path, t.metric, "; ".join(f"{k}: {v:.3g}" for k, v in t.means.items()),
             f"{fmt(t.correlation.value, 2)} [{fmt(t.correlation.ci_low, 2)}, {fmt(t.correlation.ci_high, 2)}]",
             reading(t), str(best_k(t)), "; ".join(f"{k}: {v:.2f}" for k, v in t.distinct_2.items()) or "—",
             str(t.prompts)]
            for t in sorted(trends, key=lambda t: (t.metric, t.seq_len, t.model, t.path))]
    return table(["model", "N", "sampler/cache", "metric", "mean by K", "Spearman ρ(K, mean) [95% CI]",
                  "quality with K", "best K", "distinct-2 by K", "prompts"], body)
