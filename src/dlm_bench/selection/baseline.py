"""The "as published" paths that every ratio is taken against: LLaDA's reference sampler without a
cache on the eager forward, and LLaMA's eager `generate`; and the columns that name a diffusion path."""

from __future__ import annotations

import pandas as pd

import dataclasses

from ..paths import ARPath, DiffusionPath
from ..registry import DIFFUSION, IN_PROCESS

PUBLISHED_DIFFUSION, PUBLISHED_AR = DiffusionPath.as_published(), ARPath.as_published()
DIFFUSION_PATH = [f.name for f in dataclasses.fields(DiffusionPath)]  # the columns that name a diffusion path


def quality_cells(path_cells: pd.DataFrame) -> dict[int, pd.Series]:
    """K -> the cell whose quality scores stand for one diffusion path at that K: the smallest-B one
    (quality does not depend on B: every cell's generations are made at the quality batch size)."""
    return {int(k): at_k.sort_values("batch_size").iloc[0] for k, at_k in path_cells.groupby("steps")}


def _is_published_diffusion(df: pd.DataFrame) -> pd.Series:
    return (df[DIFFUSION_PATH] == [getattr(PUBLISHED_DIFFUSION, c) for c in DIFFUSION_PATH]).all(axis=1)


def baseline(df: pd.DataFrame) -> pd.DataFrame:
    """The "as published" rows: the reference diffusion sampler without cache, eager AR generate.
    When a sweep has none of them for a model, that model's rows are kept as they are."""
    keep = []
    for _, g in df.groupby("model_name"):
        if (g["kind"] == DIFFUSION).all():
            sel = g[_is_published_diffusion(g)]
        else:
            sel = g[g["decode"] == PUBLISHED_AR.decode]
        keep.append(sel if not sel.empty else g)
    return pd.concat(keep) if keep else df


def published_parity_rows(parity: pd.DataFrame) -> pd.DataFrame:
    """Parity rows as published: eager `generate` against the reference sampler without cache."""
    if parity.empty:
        return parity
    return parity[_is_published_diffusion(parity) & (parity["ar_decode"] == PUBLISHED_AR.decode)]


def with_forward_column(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with a `forward` value on every diffusion row (rows written before the axis existed ran the
    eager forward)."""
    rows = rows.copy()
    if "forward" not in rows:
        rows["forward"] = None
    rows["forward"] = rows["forward"].astype(object)
    rows.loc[(rows["kind"] == DIFFUSION) & rows["forward"].isna(), "forward"] = PUBLISHED_DIFFUSION.forward
    return rows


def split_engines(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(torch rows, rows of other engines). Rows written before the engine axis existed are torch rows."""
    engine = rows["engine"].fillna(IN_PROCESS) if "engine" in rows else pd.Series(IN_PROCESS, index=rows.index)
    return rows[engine == IN_PROCESS], rows[engine != IN_PROCESS]
