"""S_parity and the Speedup Factor, from the merged rows, the per-prompt scores and the measured pairs.

For each (N, B, parity metric, AR model, decode path and decoding, diffusion model and sampler/cache/forward) the
diffusion quality curve over K comes from the smallest-B cells (quality does not depend on B). S_parity is found
twice (quality.parity): by the plan's point rule on the means (`s_parity_point`) and by the paired
non-inferiority test on the per-prompt scores (`s_parity`, with its outcome: reached, not reached, undecided),
on the selection half of the prompts, then tested again at that K on the confirmation half. A K whose answers
degenerate more often than the AR model's cannot reach parity. The Speedup Factor L_e2e(AR) / L_e2e(diffusion at
S_parity) at the row's own B comes only from a paired measurement of those two cells (`selection.pairs`).
"""

from __future__ import annotations

from typing import Mapping, Optional

import pandas as pd

from ..labels import ar_decoding_label
from ..metrics.quality import PARITY_METRICS
from ..registry import AR, DIFFUSION
from ..stats import RESAMPLES
from .baseline import DIFFUSION_PATH, quality_cells, with_forward_column
from .pairs import pair_estimate, pair_lookup
from .parity_rule import ParityRule, Scores, estimate_of, path_parity


def parity_table(rows: pd.DataFrame, pairs: pd.DataFrame | None = None, resamples: int = RESAMPLES,
                 quality: Optional[Mapping] = None, rule: Optional[ParityRule] = None) -> pd.DataFrame:
    """One row per (N, B, metric, AR model, decode and decoding, diffusion model and path); see module doc.
    `quality`: quality_metrics.json's per-cell per-prompt scores (without them no K can be tested)."""
    rows = with_forward_column(rows)
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    measured = pair_lookup(pairs if pairs is not None else pd.DataFrame())
    scores, rule = Scores(quality), rule or ParityRule()
    out = []
    for n in sorted(ok["seq_len"].unique()):
        at_n = ok[ok["seq_len"] == n]
        ars, dls = at_n[at_n["kind"] == AR].copy(), at_n[at_n["kind"] == DIFFUSION]
        ars["ar_decoding"] = [ar_decoding_label(r) for _, r in ars.iterrows()]
        for (ar_name, ar_decode, decoding), ar_group in ars.groupby(["model_name", "decode", "ar_decoding"]):
            ar_cells = {int(r["batch_size"]): r for _, r in ar_group.iterrows()}
            ar_quality_cell = ar_cells[min(ar_cells)]
            for (dl_name, sampler, cache, forward), cells in dls.groupby(["model_name", *DIFFUSION_PATH]):
                scored_cells = quality_cells(cells)
                for metric, spec in PARITY_METRICS.items():
                    found = path_parity(scored_cells, ar_quality_cell, metric, scores, rule, resamples)
                    if found is None:
                        continue
                    for b, ar_cell in sorted(ar_cells.items()):
                        row = {"seq_len": int(n), "batch_size": b, "metric": metric,
                               "higher_is_better": spec.higher_is_better, "ar_model": ar_name, "ar_decode": ar_decode,
                               "ar_decoding": decoding, "diffusion_model": dl_name, "sampler": sampler,
                               "cache": cache, "forward": forward,
                               "ar_quality": estimate_of(ar_quality_cell, metric).value,
                               "ar_degenerate": ar_quality_cell.get("degenerate_mean"),
                               "ar_quality_cell_id": ar_quality_cell["cell_id"],
                               "split_seed": rule.seed if rule.seed is not None else ar_quality_cell.get("setting_seed"),
                               "weights": ",".join(sorted({ar_cell["weights"], *cells["weights"]})),
                               "hardware": ar_cell["hardware"], "ar_cell_id": ar_cell["cell_id"],
                               "ar_latency_ms": ar_cell["latency_ms_median"], **found.columns()}
                        k = found.tested
                        dl_cell = cells[(cells["steps"] == k) & (cells["batch_size"] == b)]
                        dl_id = str(dl_cell["cell_id"].iloc[0]) if k is not None and not dl_cell.empty else None
                        est, quality_of_pair = pair_estimate(measured.get((str(ar_cell["cell_id"]), dl_id)), resamples)
                        row.update(quality_of_pair)
                        row.update({"diffusion_cell_id": dl_id,
                                    "diffusion_latency_ms": (float(dl_cell["latency_ms_median"].iloc[0]) if dl_id
                                                             else float("nan")),
                                    "paired": bool(quality_of_pair), "speedup_factor": est.value,
                                    "speedup_factor_ci_low": est.ci_low, "speedup_factor_ci_high": est.ci_high})
                        out.append(row)
    return pd.DataFrame(out)

