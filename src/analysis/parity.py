"""S_parity and the Speedup Factor, from the merged rows.

For each (N, B, parity metric, AR model and decode path, diffusion model and sampler/cache) the
diffusion quality curve over K is read from the smallest-B cells (quality does not depend on B), S_parity
is found on it (strict and CI-aware), and the Speedup Factor L_e2e(AR) / L_e2e(diffusion at S_parity)
at the row's own B gets a bootstrap 95% CI from resampling both cells' timed repetitions.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Sequence

import pandas as pd

from ..quality.metrics import PARITY_METRICS
from ..quality.parity import s_parity, s_parity_ci
from ..quality.stats import Estimate

NO_ESTIMATE = Estimate(math.nan, math.nan, math.nan)


def bootstrap_ratio_of_medians(numerator: Sequence[float], denominator: Sequence[float], resamples: int = 1000,
                               seed: int = 0) -> Estimate:
    """median(numerator) / median(denominator) with a 95% CI from resampling both samples."""
    if not numerator or not denominator:
        return NO_ESTIMATE
    value = statistics.median(numerator) / statistics.median(denominator)
    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(numerator, k=len(numerator)))
                    / statistics.median(rng.choices(denominator, k=len(denominator))) for _ in range(resamples))
    return Estimate(value, ratios[int(0.025 * resamples)], ratios[min(resamples - 1, int(0.975 * resamples))])


def latencies(row: pd.Series) -> list[float]:
    """The timed repetitions of a row, ms."""
    text = row.get("latency_ms_all")
    return [float(x) for x in str(text).split(";")] if isinstance(text, str) and text else []


def _estimate(row: pd.Series, metric: str) -> Estimate | None:
    if f"{metric}_mean" not in row or pd.isna(row[f"{metric}_mean"]):
        return None
    return Estimate(float(row[f"{metric}_mean"]), float(row[f"{metric}_ci_low"]), float(row[f"{metric}_ci_high"]))


def measurement_quality(a: pd.Series, b: pd.Series) -> dict:
    """The spread and load of the two cells behind a ratio: the larger run-to-run CV, the fewer
    repetitions, and the larger change of the load average across either cell."""
    def load_change(r: pd.Series) -> float:
        before, after = r.get("load_1m_before"), r.get("load_1m_after")
        return abs(float(after) - float(before)) if pd.notna(before) and pd.notna(after) else math.nan

    changes = [c for c in (load_change(a), load_change(b)) if not math.isnan(c)]
    return {"worst_cv": max(float(a["latency_ms_cv"]), float(b["latency_ms_cv"])),
            "fewest_repeats": int(min(a["repeats"], b["repeats"])),
            "load_change": max(changes) if changes else math.nan}


def parity_table(rows: pd.DataFrame, resamples: int = 1000) -> pd.DataFrame:
    """One row per (N, B, metric, AR model and decode, diffusion model, sampler, cache); see module doc."""
    ok = rows[rows["status"] == "ok"]
    out = []
    for n in sorted(ok["seq_len"].unique()):
        at_n = ok[ok["seq_len"] == n]
        ars, dls = at_n[at_n["kind"] == "autoregressive"], at_n[at_n["kind"] == "diffusion"]
        for (ar_name, ar_decode), ar_group in ars.groupby(["model_name", "decode"]):
            ar_cells = {int(r["batch_size"]): r for _, r in ar_group.iterrows()}
            ar_quality_cell = ar_cells[min(ar_cells)]
            for (dl_name, sampler, cache), cells in dls.groupby(["model_name", "sampler", "cache"]):
                for metric, spec in PARITY_METRICS.items():
                    ar_q = _estimate(ar_quality_cell, metric)
                    curve = {}
                    for k, at_k in cells.groupby("steps"):
                        est = _estimate(at_k.sort_values("batch_size").iloc[0], metric)
                        if est is not None:
                            curve[int(k)] = est
                    if ar_q is None or not curve:
                        continue
                    found = {"": s_parity(curve, ar_q, spec.higher_is_better),
                             "_ciaware": s_parity_ci(curve, ar_q, spec.higher_is_better)}
                    for b, ar_cell in sorted(ar_cells.items()):
                        row = {"seq_len": int(n), "batch_size": b, "metric": metric,
                               "higher_is_better": spec.higher_is_better, "ar_model": ar_name, "ar_decode": ar_decode,
                               "diffusion_model": dl_name, "sampler": sampler, "cache": cache,
                               "ar_quality": ar_q.value, "steps_in_grid": ";".join(str(k) for k in sorted(curve)),
                               "diffusion_quality_curve": ";".join(f"{k}:{curve[k].value:.4g}" for k in sorted(curve)),
                               "weights": ",".join(sorted({ar_cell["weights"], *cells["weights"]})),
                               "hardware": ar_cell["hardware"]}
                        for label, k in found.items():
                            dl_cell = cells[(cells["steps"] == k) & (cells["batch_size"] == b)]
                            est = (bootstrap_ratio_of_medians(latencies(ar_cell), latencies(dl_cell.iloc[0]), resamples)
                                   if k is not None and not dl_cell.empty else NO_ESTIMATE)
                            if label == "" and not dl_cell.empty:  # how far the strict pair's timing can be trusted
                                row.update(measurement_quality(ar_cell, dl_cell.iloc[0]))
                            row.update({f"s_parity{label}": k, f"reached{label}": k is not None,
                                        f"speedup_factor{label}": est.value,
                                        f"speedup_factor{label}_ci_low": est.ci_low,
                                        f"speedup_factor{label}_ci_high": est.ci_high})
                        out.append(row)
    return pd.DataFrame(out)
