"""S_parity: the fewest diffusion steps at which the diffusion model's quality matches the AR model's.

For a metric where higher is better (BERTScore F1): the smallest K with mean >= the AR mean. For one
where lower is better (perplexity): the smallest K with mean <= the AR mean. The CI-aware variant
accepts a K as soon as the diffusion model's 95% interval reaches the AR mean. "Not reached within
the grid" is None, never an error.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from .stats import Estimate

METRICS_HIGHER_IS_BETTER = {"bertscore_f1": True, "gen_ppl": False}


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


def speedup_factor(ar_latency_ms: float, diffusion_latency_ms: float) -> float:
    """L_e2e(AR) / L_e2e(diffusion at S_parity): above 1 means the diffusion model is faster."""
    return ar_latency_ms / diffusion_latency_ms


def _estimate(record: dict, metric: str) -> Optional[Estimate]:
    cols = record.get("extra_columns") or {}
    if cols.get(f"{metric}_mean") is None:
        return None
    return Estimate(cols[f"{metric}_mean"], cols[f"{metric}_ci_low"], cols[f"{metric}_ci_high"])


def _latencies(record: dict) -> list[float]:
    return [r["latency_ms"] for r in record.get("repetitions", [])]


def parity_table(records: list[dict], resamples: int = 1000) -> list[dict]:
    """One row per (N, B, metric, AR model and decode mode, diffusion model, sampler, cache): S_parity (strict and
    CI-aware) and the Speedup Factor at each, with a bootstrap 95% CI over the timed repetitions.

    Quality does not depend on B, so each model's quality at (N, K) is taken from its smallest-B
    cell; the speedup uses the latencies of the cells at the row's own B.
    """
    from .stats import bootstrap_ratio_of_medians

    ok = [r for r in records if r.get("status") == "ok"]
    rows = []
    for n in sorted({r["seq_len"] for r in ok}):
        at_n = [r for r in ok if r["seq_len"] == n]
        ars = [r for r in at_n if r["kind"] == "autoregressive"]
        dls = [r for r in at_n if r["kind"] == "diffusion"]
        for ar_name, ar_decode in sorted({(r["model_name"], r.get("decode") or "") for r in ars}):
            ar_cells = {r["batch_size"]: r for r in ars
                        if (r["model_name"], r.get("decode") or "") == (ar_name, ar_decode)}
            ar_quality_cell = ar_cells[min(ar_cells)]
            variants = sorted({(r["model_name"], r["sampler"], r["cache"]) for r in dls})
            for dl_name, sampler, cache in variants:
                cells = [r for r in dls if (r["model_name"], r["sampler"], r["cache"]) == (dl_name, sampler, cache)]
                for metric, higher in METRICS_HIGHER_IS_BETTER.items():
                    ar_q = _estimate(ar_quality_cell, metric)
                    curve = {}
                    for k in sorted({r["steps"] for r in cells}):
                        smallest = min((r for r in cells if r["steps"] == k), key=lambda r: r["batch_size"])
                        est = _estimate(smallest, metric)
                        if est is not None:
                            curve[k] = est
                    if ar_q is None or not curve:
                        continue
                    k_strict, k_ci = s_parity(curve, ar_q, higher), s_parity_ci(curve, ar_q, higher)
                    for b, ar_cell in sorted(ar_cells.items()):
                        row = {"seq_len": n, "batch_size": b, "metric": metric, "higher_is_better": higher,
                               "ar_model": ar_name, "ar_decode": ar_decode, "diffusion_model": dl_name, "sampler": sampler, "cache": cache,
                               "ar_quality": ar_q.value, "steps_in_grid": ";".join(str(k) for k in sorted(curve)),
                               "diffusion_quality_curve": ";".join(f"{k}:{curve[k].value:.4g}" for k in sorted(curve)),
                               "weights": ",".join(sorted({ar_cell["weights"], *(c["weights"] for c in cells)})),
                               "hardware": ar_cell.get("hardware")}
                        for label, k in (("", k_strict), ("_ciaware", k_ci)):
                            row[f"s_parity{label}"] = k
                            row[f"reached{label}"] = k is not None
                            dl_cell = next((c for c in cells if c["steps"] == k and c["batch_size"] == b), None)
                            est = (bootstrap_ratio_of_medians(_latencies(ar_cell), _latencies(dl_cell), resamples)
                                   if dl_cell is not None else Estimate(math.nan, math.nan, math.nan))
                            row[f"speedup_factor{label}"] = est.value
                            row[f"speedup_factor{label}_ci_low"] = est.ci_low
                            row[f"speedup_factor{label}_ci_high"] = est.ci_high
                        rows.append(row)
    return rows
