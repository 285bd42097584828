"""Where the AR decode's time per token goes: weight streaming against the rest, per AR path.

For each AR path at the smallest B (torch decode paths, and other engines' rows at the sweep's own
precision), at each N: its median inter-token latency (ms), the time the roofline's minimum bytes of
one decode step take at this machine's measured read bandwidth (`calibration.json` of the results
folder, scripts/calibrate.py), and the rest (dispatch, kernels below the bandwidth, sampling). An
engine row streams the same weights as the torch row of its model at that (N, B).
"""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from ..config import PRECISIONS
from ..labels import variant_label
from ..registry import AR, IN_PROCESS
from .data import Results
from .markdown import fmt, table


def read_bandwidth_bps(results: Results, hardware: str) -> Optional[float]:
    """The measured read bandwidth of `hardware` (bytes/s), or None when the folder has no calibration of it."""
    entry = results.calibration.get(hardware) or {}
    value = entry.get("read_tbps")
    return float(value) * 1e12 if value else None


def token_split(itl_ms: float, bytes_per_step: float, read_bps: float) -> tuple[float, float, float]:
    """(streaming ms, rest ms, streaming share) of one decode step that took `itl_ms`."""
    streaming = bytes_per_step / read_bps * 1000.0
    return streaming, itl_ms - streaming, streaming / itl_ms if itl_ms > 0 else math.nan


def ar_token_rows(results: Results) -> pd.DataFrame:
    """The AR rows the table shows: torch rows and same-precision engine rows at the smallest B."""
    every = pd.concat([results.ok, results.engine_rows[results.engine_rows["status"] == "ok"]]) \
        if not results.engine_rows.empty else results.ok
    ar = every[every["kind"] == AR]
    if ar.empty:
        return ar
    ar = ar[ar["batch_size"] == ar["batch_size"].min()]
    engine = ar["engine"].fillna(IN_PROCESS) if "engine" in ar else pd.Series(IN_PROCESS, index=ar.index)
    same = [PRECISIONS[p].gguf if p in PRECISIONS else None for p in ar["precision"]]
    formats = ar["weights_format"] if "weights_format" in ar else pd.Series(None, index=ar.index, dtype=object)
    return ar[(engine == IN_PROCESS) | (formats == pd.Series(same, index=ar.index, dtype=object))]


def ar_tokens_markdown(results: Results) -> str:
    rows = ar_token_rows(results)
    if rows.empty:
        return "_No AR cells._"
    hardware = str(rows["hardware"].iloc[0])
    read_bps = read_bandwidth_bps(results, hardware)
    if read_bps is None:
        return (f"_No read bandwidth measured for {hardware} in this folder (`scripts/calibrate.py --output "
                f"<folder>/calibration.json`), so no split of the time per token._")
    body = []
    for (model, n), part in rows.groupby(["model_name", "seq_len"], sort=True):
        torch_rows = part[part["min_bytes_per_generation"].notna()] if "min_bytes_per_generation" in part else part[:0]
        if torch_rows.empty:
            continue
        per_step = float(torch_rows["min_bytes_per_generation"].iloc[0]) / (int(n) // 2)
        for _, r in part.sort_values("itl_ms_median").iterrows():
            streaming, rest, share = token_split(float(r["itl_ms_median"]), per_step, read_bps)
            body.append([model, str(int(n)), str(int(r["batch_size"])), variant_label(r), fmt(r["itl_ms_median"], 3),
                         fmt(streaming, 3), fmt(rest, 3), f"{share:.0%}"])
    if not body:
        return "_No AR cell with a roofline byte count._"
    return (f"Read bandwidth {read_bps / 1e9:.1f} GB/s (measured, `calibration.json`). Cell medians, not "
            f"ratios:\n\n" + table(["model", "N", "B", "path", "ms per token (median ITL)", "weight streaming ms",
                                    "the rest ms", "streaming share"], body))
