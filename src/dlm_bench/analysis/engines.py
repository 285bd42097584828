"""Engines side by side: one row per engine cell, and one per prompt and engine cell.

Every ratio here is paired: an engine cell timed each of its per-prompt prompts as interleaved pairs
with the torch path doing the same work (engines/measure.py), and a prompt's speedup is the median of
its pairs' torch / engine ratios. A row's verdict is the sign test over its prompts (each prompt's
median ratio above or below 1, stats.sign_test): a direction only at p < 0.05.
"""

from __future__ import annotations

import math

import pandas as pd

from ..registry import AR, DIFFUSION
from ..labels import engine_label, variant_label
from ..stats import ALPHA, sign_test
from .data import Results
from .markdown import fmt, table


def _k(r) -> str:
    return str(int(r["steps"])) if r["kind"] == DIFFUSION and not pd.isna(r["steps"]) else "—"


ENGINE_FASTER, TORCH_FASTER = "engine faster", "torch faster"


def pair_verdict(above: int, below: int) -> str:
    """The direction of a cell's per-prompt speedups (torch / engine): the sign test over its prompts."""
    if above + below == 0:
        return "—"
    p_value = sign_test(above, below)
    who, count = (ENGINE_FASTER, above) if above >= below else (TORCH_FASTER, below)
    counted = f"{count} of {above + below} prompts, p = {p_value:.2g}"
    return f"{who} ({counted})" if p_value < ALPHA else f"no direction ({who.split()[0]} faster on {counted})"


def _ordered(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows sorted by those of `columns` they have (an AR-only table has no sampler)."""
    return rows.sort_values([c for c in columns if c in rows], na_position="first")


CELL_IDENTITY = ["model_name", "kind", "engine", "weights_format", "sampler", "seq_len", "steps"]


def cell_pairs(results: Results) -> pd.DataFrame:
    """Per engine cell (from its per-prompt rows): what it ran (CELL_IDENTITY), its prompts, the median over
    prompts of their speedups, the extremes of all its pairs, the prompts whose speedup is above and below 1 and the
    mean agreement with torch."""
    pp = results.per_prompt
    if pp.empty:
        return pd.DataFrame(columns=["cell_id", *CELL_IDENTITY, "prompts", "speedup", "pair_min", "pair_max",
                                     "above", "below", "agreement"])
    pp = pp.reindex(columns=list(dict.fromkeys([*pp.columns, *CELL_IDENTITY])))  # AR-only rows have no sampler
    by_cell = pp.groupby("cell_id", sort=False)
    return by_cell[CELL_IDENTITY].first().assign(
        prompts=by_cell["passage_id"].count(), speedup=by_cell["speedup_vs_torch"].median(),
        pair_min=by_cell["speedup_min"].min(), pair_max=by_cell["speedup_max"].max(),
        above=by_cell["speedup_vs_torch"].agg(lambda x: int((x > 1).sum())),
        below=by_cell["speedup_vs_torch"].agg(lambda x: int((x < 1).sum())),
        agreement=by_cell["agreement_with_torch"].mean()).reset_index()


def engines_table(results: Results) -> str:
    """One row per engine cell: timing, what ran, agreement with torch, the paired per-prompt speedup."""
    rows = results.engine_rows
    if rows.empty:
        return "_No engine cells: the grid ran torch only (`engines.engine`)._"
    pairs = cell_pairs(results).set_index("cell_id")
    out = []
    for _, r in _ordered(rows, ["model_name", "seq_len", "batch_size", "steps", "engine", "weights_format",
                                "sampler"]).iterrows():
        head = [r["model_name"], str(int(r["seq_len"])), str(int(r["batch_size"])), _k(r), variant_label(r)]
        if r["status"] != "ok":
            out.append(head + ["—"] * 8 + [f"{r['status']}: {r['error']}"])
            continue
        p = pairs.loc[r["cell_id"]] if r["cell_id"] in pairs.index else None
        speed = "—" if p is None else f"{fmt(p['speedup'], 2)} ({int(p['prompts'])} prompts; pairs {fmt(p['pair_min'], 2)}–{fmt(p['pair_max'], 2)})"
        timing = (f"{fmt(r['ttft_ms_median'], 2)} / {fmt(r['itl_ms_median'], 3)}" if r["kind"] == AR
                  else f"{fmt(r['step_ms_p50'], 2)} / {fmt(r['step_ms_p99'], 2)}")
        out.append(head + [fmt(r["latency_ms_median"], 2), fmt(r["tokens_per_s_median"]), timing,
                           str(int(r["answers_not_n_out"])) if not pd.isna(r["answers_not_n_out"]) else "—",
                           fmt(r["agreement_with_torch"], 2), speed,
                           "—" if p is None else pair_verdict(int(p["above"]), int(p["below"])),
                           fmt(r.get("bertscore_f1_mean", math.nan), 3), "ok"])
    return table(["model", "N", "B", "K", "engine", "L_e2e ms (median)", "T_gen tok/s", "TTFT / ITL ms (AR); step p50 / p99 ms",
                  "answers ≠ N_out", "tokens agreeing with torch", "speedup vs torch, paired per prompt (median)",
                  "verdict", "BERTScore F1", "status"], out)


def per_prompt_table(results: Results, limit: int = 200) -> str:
    """One row per prompt and engine cell (the first `limit`)."""
    pp = results.per_prompt
    if pp.empty:
        return "_No per-prompt rows: no engine cell ran its per-prompt pairs._"
    out = []
    ordered = _ordered(pp, ["model_name", "seq_len", "steps", "engine", "weights_format", "sampler", "passage_id"])
    for _, r in ordered.head(limit).iterrows():
        out.append([r["model_name"], str(int(r["seq_len"])), _k(r), variant_label(r), str(r["passage_id"]),
                    fmt(r["engine_tokens_per_s"]), fmt(r["torch_tokens_per_s"]),
                    f"{fmt(r['speedup_vs_torch'], 2)} ({fmt(r['speedup_min'], 2)}–{fmt(r['speedup_max'], 2)})",
                    str(int(r["steps"])), "—" if pd.isna(r["forward_passes"]) else str(int(r["forward_passes"])),
                    str(int(r["answer_tokens"])), fmt(r["agreement_with_torch"], 2)])
    text = table(["model", "N", "K", "engine", "prompt", "engine tok/s", "torch tok/s",
                  "speedup vs torch, median of pairs (min–max)", "steps", "forward passes", "answer tokens",
                  "tokens agreeing with torch"], out)
    if len(pp) > limit:
        text += f"\n\n_… {len(pp) - limit} more rows in per_prompt.csv._"
    return text


def engines_digest(results: Results) -> str:
    """The engine cells that ran per-prompt pairs, folded per model, engine path and N (the paper's view of
    the Engines table): how many cells, the median and range over them of each cell's paired speedup
    (`engines_table`'s column), how many cells every pair puts on one side, and the agreement with torch."""
    rows = results.engine_rows
    pairs = cell_pairs(results)
    if rows.empty or pairs.empty:
        return "_No engine cell ran its per-prompt pairs._"
    cells = rows[rows["status"] == "ok"].merge(pairs[["cell_id", "speedup", "pair_min", "pair_max", "above",
                                                      "below"]], on="cell_id")
    cells = cells.assign(path=cells.apply(engine_label, axis=1),
                         side=[pair_verdict(int(a), int(b)) for a, b in zip(cells["above"], cells["below"])])
    out = []
    for (model, path, n), g in cells.groupby(["model_name", "path", "seq_len"], sort=True):
        detail = "—"
        if g["kind"].iloc[0] == DIFFUSION and "sampler" in g:
            samplers = g["sampler"].nunique()
            detail = (f"K {', '.join(str(int(k)) for k in sorted(g['steps'].unique()))}; "
                      f"{samplers} sampler{'s' if samplers > 1 else ''}")
        faster = g["side"].str.startswith(ENGINE_FASTER).sum()
        slower = g["side"].str.startswith(TORCH_FASTER).sum()
        out.append([model, path, str(int(n)), detail, str(len(g)),
                    _with_range(g["speedup"].median(), g["speedup"], 2),
                    f"{faster} / {slower} / {len(g) - faster - slower}",
                    _with_range(g["agreement_with_torch"].median(), g["agreement_with_torch"], 2)])
    return table(["model", "engine", "N", "K and samplers", "cells", "speedup vs torch, median of cells (min–max)",
                  "cells with a direction (sign test over prompts): engine / torch / neither",
                  "agreement with torch, median (min–max)"], out)


def _with_range(middle: float, values: pd.Series, digits: int) -> str:
    """`middle (min–max)` over several values; one value alone."""
    if values.nunique() <= 1:
        return fmt(middle, digits)
    return f"{fmt(middle, digits)} ({fmt(values.min(), digits)}–{fmt(values.max(), digits)})"
