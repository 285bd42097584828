"""S_parity and the Speedup Factor, from the merged rows and the measured pairs.

For each (N, B, parity metric, AR model and decode path, diffusion model and sampler/cache/forward) the
diffusion quality curve over K is read from the smallest-B cells (quality does not depend on B), and
S_parity is found on it (strict and CI-aware), among the K whose outputs are not degenerate (distinct-2 < 0.5)
more often than the AR model's. The Speedup Factor L_e2e(AR) / L_e2e(diffusion at
S_parity) at the row's own B comes only from a paired measurement of those two cells (see
`selection.pairs`); a row whose pair was not measured has no Speedup Factor.
"""

from __future__ import annotations

import pandas as pd

from ..registry import AR, DIFFUSION
from ..metrics.quality import PARITY_METRICS
from ..quality.parity import more_degenerate, s_parity, s_parity_ci
from ..stats import RESAMPLES, Estimate
from .baseline import DIFFUSION_PATH, quality_cells, with_forward_column
from .pairs import pair_estimate, pair_lookup


def _estimate(row: pd.Series, metric: str) -> Estimate | None:
    if f"{metric}_mean" not in row or pd.isna(row[f"{metric}_mean"]):
        return None
    return Estimate(float(row[f"{metric}_mean"]), float(row[f"{metric}_ci_low"]), float(row[f"{metric}_ci_high"]))


def parity_table(rows: pd.DataFrame, pairs: pd.DataFrame | None = None, resamples: int = RESAMPLES) -> pd.DataFrame:
    """One row per (N, B, metric, AR model and decode, diffusion model and path); see module doc."""
    rows = with_forward_column(rows)
    ok = rows[rows["status"] == "ok"]
    measured = pair_lookup(pairs if pairs is not None else pd.DataFrame())
    out = []
    for n in sorted(ok["seq_len"].unique()):
        at_n = ok[ok["seq_len"] == n]
        ars, dls = at_n[at_n["kind"] == AR], at_n[at_n["kind"] == DIFFUSION]
        for (ar_name, ar_decode), ar_group in ars.groupby(["model_name", "decode"]):
            ar_cells = {int(r["batch_size"]): r for _, r in ar_group.iterrows()}
            ar_quality_cell = ar_cells[min(ar_cells)]
            for (dl_name, sampler, cache, forward), cells in dls.groupby(["model_name", *DIFFUSION_PATH]):
                scored_cells = quality_cells(cells)
                for metric, spec in PARITY_METRICS.items():
                    ar_q = _estimate(ar_quality_cell, metric)
                    curve, degenerate = {}, []
                    for k, quality_cell in scored_cells.items():
                        est = _estimate(quality_cell, metric)
                        if est is not None:
                            curve[k] = est
                            if more_degenerate(quality_cell.get("degenerate_mean"),
                                               ar_quality_cell.get("degenerate_mean")):
                                degenerate.append(k)
                    if ar_q is None or not curve:
                        continue
                    eligible = {k: e for k, e in curve.items() if k not in degenerate}
                    found = {"": s_parity(eligible, ar_q, spec.higher_is_better),
                             "_ciaware": s_parity_ci(eligible, ar_q, spec.higher_is_better)}
                    for b, ar_cell in sorted(ar_cells.items()):
                        row = {"seq_len": int(n), "batch_size": b, "metric": metric,
                               "higher_is_better": spec.higher_is_better, "ar_model": ar_name, "ar_decode": ar_decode,
                               "diffusion_model": dl_name, "sampler": sampler, "cache": cache,
                               "forward": forward,
                               "ar_quality": ar_q.value, "ar_degenerate": ar_quality_cell.get("degenerate_mean"),
                               "steps_in_grid": ";".join(str(k) for k in sorted(curve)),
                               "diffusion_quality_curve": ";".join(f"{k}:{curve[k].value:.4g}" for k in sorted(curve)),
                               "degenerate_steps": ";".join(str(k) for k in degenerate),
                               "weights": ",".join(sorted({ar_cell["weights"], *cells["weights"]})),
                               "hardware": ar_cell["hardware"], "ar_cell_id": ar_cell["cell_id"],
                               "ar_latency_ms": ar_cell["latency_ms_median"]}
                        for label, k in found.items():
                            dl_cell = cells[(cells["steps"] == k) & (cells["batch_size"] == b)]
                            dl_id = str(dl_cell["cell_id"].iloc[0]) if k is not None and not dl_cell.empty else None
                            est, quality = pair_estimate(measured.get((str(ar_cell["cell_id"]), dl_id)), resamples)
                            if label == "":  # how far the strict pair's timing can be trusted
                                row.update(quality)
                            row.update({f"s_parity{label}": k, f"reached{label}": k is not None,
                                        f"diffusion_cell_id{label}": dl_id,
                                        f"diffusion_latency_ms{label}": (float(dl_cell["latency_ms_median"].iloc[0])
                                                                         if dl_id else float("nan")),
                                        f"paired{label}": bool(quality),
                                        f"speedup_factor{label}": est.value,
                                        f"speedup_factor{label}_ci_low": est.ci_low,
                                        f"speedup_factor{label}_ci_high": est.ci_high})
                        out.append(row)
    return pd.DataFrame(out)
