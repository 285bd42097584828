"""The "as published" paths that every ratio is taken against: LLaDA's reference sampler without a
cache, and LLaMA's eager `generate`."""

from __future__ import annotations

import pandas as pd

BASELINE_SAMPLER, BASELINE_CACHE, BASELINE_DECODE = "low_confidence", "none", "eager"


def baseline(df: pd.DataFrame) -> pd.DataFrame:
    """The "as published" rows: the reference diffusion sampler without cache, eager AR generate.
    When a sweep has none of them for a model, that model's rows are kept as they are."""
    keep = []
    for _, g in df.groupby("model_name"):
        if (g["kind"] == "diffusion").all():
            sel = g[(g["sampler"] == BASELINE_SAMPLER) & (g["cache"] == BASELINE_CACHE)]
        else:
            sel = g[g["decode"] == BASELINE_DECODE]
        keep.append(sel if not sel.empty else g)
    return pd.concat(keep) if keep else df
