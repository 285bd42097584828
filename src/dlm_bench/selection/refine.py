"""A finer K where parity changes: the steps to add between the last K that is not at parity and the first that
is, by bisection down to a resolution.

For every published parity row (as published, and both sides at their best) whose tested S_parity was reached:
the largest K of its path below S_parity whose test did not pass, and S_parity itself, bound the true S_parity;
while they lie more than `resolution` steps apart, the valid K nearest their middle (a multiple of the number of
blocks, strictly between them) is added as a new cell of that path at every B. The sweep measures and scores the
new cells and asks again, so each round halves the bracket (4 -> 8 -> 12 -> 16 at resolution 4). Torch-free.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Optional

import pandas as pd

from .baseline import DIFFUSION_PATH, published_parity_rows

PathKey = tuple[str, int, str, str, str]  # diffusion model, N, sampler, cache, forward


def parse_tests(text) -> dict[int, str]:
    """A parity row's `parity_tests` column ("4:fail;16:pass") as {K: outcome}."""
    if not isinstance(text, str) or not text:
        return {}
    out = {}
    for item in text.split(";"):
        k, _, outcome = item.partition(":")
        out[int(k)] = outcome
    return out


def middle_step(low: int, high: int, blocks: int) -> Optional[int]:
    """The multiple of `blocks` strictly between `low` and `high` nearest their middle (the lower one on a tie),
    or None when there is none."""
    candidates = [k for k in range(low + 1, high) if k % blocks == 0]
    if not candidates:
        return None
    middle = (low + high) / 2
    return min(candidates, key=lambda k: (abs(k - middle), k))


def refinement(rows: Iterable[pd.Series], resolution: int, block_length: int) -> dict[PathKey, set[int]]:
    """The K to add per diffusion path (see the module doc) for these parity rows."""
    extra: dict[PathKey, set[int]] = defaultdict(set)
    for row in rows:
        if not row.get("reached", False) or pd.isna(row.get("s_parity")):
            continue
        found = int(row["s_parity"])
        below = [k for k, outcome in parse_tests(row.get("parity_tests")).items() if k < found and outcome != "pass"]
        if not below or found - max(below) <= resolution:
            continue
        n = int(row["seq_len"])
        blocks = max(1, (n - n // 2) // block_length)
        k = middle_step(max(below), found, blocks)
        if k is not None:
            extra[(str(row["diffusion_model"]), n, *(str(row[c]) for c in DIFFUSION_PATH))].add(k)
    return dict(extra)


def published_rows(parity: pd.DataFrame, best: pd.DataFrame, torch_cells: set[str]) -> list[pd.Series]:
    """The parity rows whose S_parity is published: as published, and both sides at their best where the diffusion
    side is a torch cell (`torch_cells`: their ids; an engine's diffusion path is not a grid of this sweep)."""
    rows = [r for _, r in published_parity_rows(parity).iterrows()] if not parity.empty else []
    if not best.empty:
        rows += [r for _, r in best.iterrows() if str(r.get("diffusion_cell_id")) in torch_cells]
    return rows


def steps_beyond_the_grid(rows: pd.DataFrame, grid_steps) -> dict[PathKey, set[int]]:
    """The K of finished torch diffusion cells that their N's grid does not have (`grid_steps(N)`: the grid's K),
    per path: the cells a refinement added, found again from the rows (a resumed sweep, the pairs step)."""
    extra: dict[PathKey, set[int]] = defaultdict(set)
    if rows.empty:
        return {}
    for _, r in rows[(rows["kind"] == "diffusion") & (rows["status"] == "ok")].iterrows():
        n, k = int(r["seq_len"]), int(r["steps"])
        if k not in grid_steps(n):
            forward = r.get("forward")
            extra[(str(r["model_name"]), n, str(r["sampler"]), str(r["cache"]),
                   str(forward) if isinstance(forward, str) else "eager")].add(k)
    return dict(extra)
