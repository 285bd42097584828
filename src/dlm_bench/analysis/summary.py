"""Markdown tables of the headline numbers and the S_parity / Speedup Factor verdict, from the files."""

from __future__ import annotations

import math
import statistics
from typing import Optional

import pandas as pd

from ..registry import AR, DIFFUSION, IN_PROCESS
from ..config import DEFAULT_MAX_OTHER_CORES
from ..labels import ar_decoding_label, cell_label, engine_label, variant_label
from ..results import contended
from ..measure import roofline
from ..measure.benchmarks import target_from_dict
from ..selection.baseline import baseline, published_parity_rows
from ..quality.parity import NOT_REACHED, REACHED
from ..selection.parity_rule import CONFIRMED, NOT_TESTED
from ..stats import ALPHA, CV_NO_VERDICT, CV_TARGET, UNDECIDED
from .data import MAX_LOAD_CHANGE, MIN_REPEATS, Results
from ..selection.pairs import (CellRatio, alone_check, as_published_cell_id, cell_ratio, fast_path_cells,
                               ms_list, other_cores, pair_estimate, pair_lookup)
from .markdown import fmt as _f, table as _table
from .ar_tokens import ar_tokens_markdown
from .engines import engines_digest, engines_table, per_prompt_table
from .steps_trend import TREND_INTRO, steps_trend_markdown

NOT_PAIRED = "not measured in pairs: no ratio published (run the pairs step)"


def _k(r) -> str:
    return str(int(r["steps"])) if r["kind"] == DIFFUSION else "—"


def headline_table(results: Results) -> str:
    rows = []
    df = baseline(results.rows).sort_values(["seq_len", "batch_size", "kind", "model_name", "steps"])
    for _, r in df.iterrows():
        model = r["model_name"] + ("" if r["kind"] == DIFFUSION or ar_decoding_label(r) == "greedy"
                                   else f" [{ar_decoding_label(r)}]")
        if r["status"] != "ok":
            rows.append([model, str(r["seq_len"]), str(r["batch_size"]), _k(r)] + ["—"] * 7 + [r["status"]])
            continue
        mem = r["peak_mem_reserved_gib"] if not math.isnan(r["peak_mem_reserved_gib"]) else math.nan
        rows.append([model, str(r["seq_len"]), str(r["batch_size"]), _k(r),
                     f"{_f(r['latency_ms_median'], 2)} ({_f(r['latency_ms_min'], 2)}–{_f(r['latency_ms_max'], 2)})",
                     _f(r["tokens_per_s_median"]), _f(r["ttft_ms_median"], 2), _f(r["itl_ms_median"], 3),
                     f"{_f(r['step_ms_p50'], 2)} / {_f(r['step_ms_p99'], 2)}" if r["kind"] == DIFFUSION else "—",
                     _f(mem, 2), _f(r["mfu"], 3), r["status"]])
    return _table(["model", "N", "B", "K", "L_e2e ms, median (min–max)", "T_gen tok/s", "TTFT ms", "ITL ms",
                   "step p50 / p99 ms", "M_peak GiB", "MFU", "status"], rows)


def unreliable(row: pd.Series, biased: bool = False) -> list[str]:
    """Why the timing behind a ratio cannot carry a verdict at all (empty when it can): a pair taken while other
    work used the machine, too few pairs, a load average that moved (pairs from before the load guard), or a
    study whose self-pairs show its pairs are biased (`biased`)."""
    reasons = []
    if contended(row.get("contention")):
        reasons.append(f"contended ({row['contention']})")
    if row.get("fewest_repeats", MIN_REPEATS) < MIN_REPEATS:
        reasons.append(f"{int(row['fewest_repeats'])} pairs < {MIN_REPEATS}")
    change = row.get("load_change", math.nan)
    unjudged = not isinstance(row.get("contention"), str) or not row.get("contention")
    if unjudged and change is not None and not pd.isna(change) and change > MAX_LOAD_CHANGE:
        reasons.append(f"load average changed by {change:.1f} during the pair (> {MAX_LOAD_CHANGE:g})")
    if biased:
        reasons.append("a self-pair of this study excludes 1: its pairs are biased")
    return reasons


def direction_text(row: pd.Series, faster: str = "diffusion", slower: str = "AR") -> str:
    """The sign test of a pair's per-pair ratios, in words: who was faster in how many pairs, and p."""
    above, below = int(row.get("pairs_above", 0) or 0), int(row.get("pairs_below", 0) or 0)
    p_value = row.get("direction_p", math.nan)
    who, count = (faster, above) if above >= below else (slower, below)
    return f"{who} faster in {count} of {above + below} pairs, p = {p_value:.2g}"


def magnitude_text(row: pd.Series) -> str:
    """Whether a ratio's magnitude is precise (per-pair CV at most 5%) or only indicative."""
    cv = row.get("ratio_cv", math.nan)
    if cv is None or pd.isna(cv) or cv <= CV_NO_VERDICT:
        return "magnitude precise"
    return f"magnitude indicative (per-pair CV {100 * cv:.1f}% > {100 * CV_NO_VERDICT:.0f}%)"


def verdict(row: pd.Series, biased: bool = False, magnitude: bool = True) -> str:
    """A Speedup Factor's verdict: its direction from the sign test over its pairs (stats.paired_ratio_test), its
    magnitude quoted as precise or indicative (unless `magnitude` is false), and no verdict where the measurement
    cannot carry one."""
    outcome = row.get("parity_outcome", NOT_REACHED)
    if outcome != REACHED:
        return {UNDECIDED: "parity undecided within the grid: no K's CI clears the margin",
                NOT_TESTED: "parity not tested: no per-prompt scores"}.get(outcome, "parity not reached within the grid")
    if pd.isna(row.get("diffusion_cell_id")):
        return "no timed cell at S_parity"
    if not row.get("paired", False):
        return NOT_PAIRED
    reasons = unreliable(row, biased)
    if reasons:
        return "no verdict: " + "; ".join(reasons)
    p_value = row.get("direction_p", math.nan)
    if p_value is None or pd.isna(p_value) or p_value >= ALPHA:
        return f"no direction ({direction_text(row)})"
    side = "diffusion" if row.get("pairs_above", 0) > row.get("pairs_below", 0) else "autoregressive"
    held_out = row.get("confirmation", "—")
    caveat = "" if held_out == CONFIRMED else f"; parity {held_out} on the held-out prompts"
    precision = f"; {magnitude_text(row)}" if magnitude else ""
    return f"{side} faster at equal quality ({direction_text(row)}){precision}{caveat}"


def tested_parity_text(row: pd.Series) -> str:
    """The tested S_parity of a row: the K and the paired difference at it on the selection half with its CI, or
    why there is none; the margin it was tested against."""
    outcome, margin = row.get("parity_outcome", NOT_REACHED), row.get("parity_margin", math.nan)
    if outcome != REACHED:
        return f"{outcome} (margin {_f(margin, 2)})"
    return (f"{int(row['s_parity'])}: Δ {row['parity_difference']:+.3f} [{row['parity_difference_ci_low']:+.3f}, "
            f"{row['parity_difference_ci_high']:+.3f}] over {int(row['selection_prompts'])} prompts, margin "
            f"{_f(margin, 2)}")


def confirmation_text(row: pd.Series) -> str:
    """The S_parity's test on the held-out (confirmation) half of the prompts."""
    held_out = row.get("confirmation", "—")
    if held_out == "—" or pd.isna(row.get("confirmation_difference", math.nan)):
        return "—"
    return (f"{held_out}: Δ {row['confirmation_difference']:+.3f} [{row['confirmation_difference_ci_low']:+.3f}, "
            f"{row['confirmation_difference_ci_high']:+.3f}] over {int(row['confirmation_prompts'])} prompts")


def cells_consistency(row: pd.Series, results: Results) -> tuple[str, bool]:
    """The ratio of the two cells' medians beside the paired ratio, as `median [range]` ("—" where the row is not
    paired or a cell is missing), and whether it disagrees with the pair."""
    if not row.get("paired", False):
        return "—", False
    by_id = results.rows_by_id
    ar, dl = by_id.get(str(row.get("ar_cell_id"))), by_id.get(str(row.get("diffusion_cell_id")))
    if ar is None or dl is None:
        return "—", False
    cells = cell_ratio(ar, dl)
    return (f"{_f(cells.value, 2)} [{_f(cells.low, 2)}, {_f(cells.high, 2)}]",
            cells.disagrees(row["speedup_factor_ci_low"], row["speedup_factor_ci_high"]))


def alone_consistency(row: pd.Series) -> tuple[str, bool]:
    """The ratio of the pair's two arms timed alone right before it, as `median [range]`, with each arm's median
    inside the pair over its median alone ("AR ×1.02, diffusion ×0.97"), and whether that ratio disagrees with
    the pair ("—" where the pair has no runs alone)."""
    alone = CellRatio(*(float(row.get(k, math.nan)) for k in ("alone_ratio", "alone_ratio_low", "alone_ratio_high")))
    if not row.get("paired", False) or math.isnan(alone.value):
        return "—", False
    return (f"{_f(alone.value, 2)} [{_f(alone.low, 2)}, {_f(alone.high, 2)}]; in the pair AR "
            f"×{_f(row['reference_in_pair'], 2)}, diffusion ×{_f(row['contender_in_pair'], 2)}",
            alone.disagrees(row["speedup_factor_ci_low"], row["speedup_factor_ci_high"]))


def consistency_text(row: pd.Series, results: Results) -> str:
    """The ratio of the two cells' medians beside the paired ratio, flagged where they disagree."""
    text, disagrees = cells_consistency(row, results)
    return text + (" **disagrees**: the pair is published (its arms ran interleaved; the cells ran apart)"
                   if disagrees else "")


def alone_text(row: pd.Series) -> str:
    """The arms alone beside the paired ratio, flagged where they disagree."""
    text, disagrees = alone_consistency(row)
    return text + (" **disagrees**: the pair is published (its arms ran interleaved, beside the same machine "
                   "state)" if disagrees else "")


def load_text(row: pd.Series) -> str:
    """The load a pair was measured at: other processes' CPU cores during it, and the guard's judgement."""
    cores = row.get("other_cpu_cores", math.nan)
    if not row.get("paired", False) or cores is None or pd.isna(cores):
        return "—"
    return f"{_f(cores, 2)} cores" + (" (contended)" if contended(row.get("contention")) else "")


def _speedup(r: pd.Series) -> str:
    if not r["reached"] or not r.get("paired", False):
        return "—"
    return f"{_f(r['speedup_factor'], 2)} [{_f(r['speedup_factor_ci_low'], 2)}, {_f(r['speedup_factor_ci_high'], 2)}]"


def parity_markdown(results: Results, best: bool = False) -> str:
    """The parity rows as published (eager AR, reference sampler without cache), or of both sides at
    their best (`best`: the fastest decode path against the fastest sampler/cache that reaches parity)."""
    par = results.parity
    if par.empty:
        return "_No parity table: the quality pass has not run (`python src/main.py score --config ...`)._"
    par = results.best if best else published_parity_rows(par)
    if par.empty:
        return "_No row reaches parity with a timed cell._" if best else "_No as-published rows._"
    rows = []
    for _, r in par.sort_values(["seq_len", "metric", "ar_decoding", "batch_size"]).iterrows():
        point = str(int(r["s_parity_point"])) if r["reached_point"] else "not reached"
        paths = [r["ar_path"], r["diffusion_path"]] if best else []
        curve = r["diffusion_quality_curve"]
        if isinstance(r.get("degenerate_steps"), str) and r["degenerate_steps"]:
            curve += f" (degenerate at K={r['degenerate_steps'].replace(';', ', ')})"
        rows.append([str(r["seq_len"]), str(r["batch_size"]), r["metric"]] + paths
                    + [r["ar_decoding"], _f(r["ar_quality"], 3), curve, point, tested_parity_text(r),
                       confirmation_text(r), _speedup(r), consistency_text(r, results), alone_text(r),
                       load_text(r), verdict(r, results.biased)])
    return _table(["N", "B", "metric"] + (["AR path", "diffusion path"] if best else [])
                  + ["AR decoding", "AR quality", "diffusion quality by K", "S_parity, point rule",
                     "S_parity, tested on the selection half", "on the held-out half",
                     "Speedup Factor, paired [95% CI]", "cells' medians [range]",
                     "arms alone before the pair [range]", "other work during the pair", "verdict"], rows)


def paper_parity_markdown(results: Results, best: bool = False) -> str:
    """The paper's short form of `parity_markdown`: the rows where the tested S_parity is reached, each with its K,
    the held-out outcome, the paired Speedup Factor beside the cells' ratio and its direction (the magnitude's
    precision is in summary.md); the other rows are counted and left to summary.md."""
    par = results.parity
    if par.empty:
        return "_No parity table._"
    par = results.best if best else published_parity_rows(par)
    reached = par[par["parity_outcome"] == REACHED] if "parity_outcome" in par else par.iloc[0:0]
    rows = []
    for _, r in (reached.sort_values(["seq_len", "metric", "ar_decoding", "batch_size"]) if not reached.empty
                 else reached).iterrows():
        paths = [f"{r['ar_path']} / {r['diffusion_path']}"] if best else []
        cells, disagrees = cells_consistency(r, results)
        rows.append([str(r["seq_len"]), str(r["batch_size"]), r["metric"], r["ar_decoding"]] + paths
                    + [str(int(r["s_parity"])), str(r.get("confirmation", "—")), _speedup(r),
                       cells + (" (disagrees)" if disagrees else ""),
                       verdict(r, results.biased, magnitude=False)])
    others = len(par) - len(reached)
    table = _table(["N", "B", "metric", "AR decoding"] + (["AR / diffusion path"] if best else [])
                   + ["S_parity (tested)", "held-out half", "Speedup Factor, paired [95% CI]", "cells' medians",
                      "verdict"], rows) if rows else "_No row reaches parity._"
    return table + (f"\n\n{others} other rows (N, B, metric, AR decoding) do not reach parity or are undecided "
                    "(summary.md)." if others else "")


def fast_path_table(results: Results) -> str:
    """Every sampler/cache and decode path at the largest N, smallest B and largest K, against the
    as-published path of its model; the ratio only from a paired measurement."""
    table = fast_path_cells(results.ok)
    if table.empty:
        return "_No finished cells._"
    measured = pair_lookup(results.pairs)
    rows = []
    for _, part in table.groupby("model_name", sort=False):
        reference = as_published_cell_id(part)
        for _, r in part.sort_values("latency_ms_median").iterrows():
            if str(r["cell_id"]) == reference:
                ratio = "reference"
            else:
                est, quality = pair_estimate(measured.get((reference, str(r["cell_id"]))), results.resamples)
                ratio = "not paired" if math.isnan(est.value) else \
                    f"{_f(est.value, 2)} [{_f(est.ci_low, 2)}, {_f(est.ci_high, 2)}]"
                if contended(quality.get("contention")):
                    ratio += " (contended: no verdict)"
            rows.append([r["model_name"], variant_label(r), _k(r), _f(r["steps_executed"], 0),
                         _f(r["latency_ms_median"], 2), _f(r["tokens_per_s_median"]), ratio,
                         _f(r["agreement_with_uncached"], 3), _f(r["mfu"], 3), _f(r["mbu"], 3)])
    dl = table[table["kind"] == DIFFUSION]
    return (f"At N={int(table['seq_len'].iloc[0])}, B={int(table['batch_size'].iloc[0])}"
            + (f", K={int(dl['steps'].max())}" if not dl.empty else "") + ":\n\n"
            + _table(["model", "path", "K", "steps run", "L_e2e ms", "T_gen tok/s",
                      "speedup vs as-published, paired [95% CI]", "agreement with uncached", "MFU", "MBU"], rows))


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def _utilisation_target(target: str, values: pd.Series, goal: float, context: str) -> list[str]:
    """One targets row: the worst and median utilisation of the cells concerned against `goal`."""
    if values.empty:
        return [target, "no such cell", "—"]
    if values.isna().all():
        return [target, "no peak figures for this hardware", "n/a"]
    worst = values.min()
    margin = "" if worst >= goal else f" by {_f(100 * (goal - worst))} points"
    return [target, f"min {_f(100 * worst)}%, median {_f(100 * values.median())}% {context}",
            _verdict(worst >= goal) + margin]


def targets_table(results: Results) -> str:
    """The performance targets of the GPU campaign, evaluated on whatever rows exist, then the targets the
    benchmark scripts measured in pairs (the folder's benchmarks.json)."""
    ok = results.ok
    rows = []
    dl = baseline(ok[ok["kind"] == DIFFUSION])
    big = dl[dl["batch_size"] * dl["seq_len"] >= 4096]
    rows.append(_utilisation_target("vanilla LLaDA sampler, B·N ≥ 4096: MFU ≥ 70%", big["mfu"], 0.70,
                                    f"over {len(big)} cells"))
    ar = ok[(ok["kind"] == AR) & (ok["batch_size"] == 1)]
    eager = ar.loc[ar["decode"] == "eager", "mbu"]
    rows.append(_utilisation_target("AR static + compiled decode, B=1: MBU ≥ 75%",
                                    ar.loc[ar["decode"] == "static_compiled", "mbu"], 0.75,
                                    f"(eager beside it: median {_f(100 * eager.median())}%)"))
    if results.overhead:
        worst = max(c["overhead"] for c in results.overhead["cells"])
        detail = "; ".join(f"{c['cell']}: {_f(100 * c['overhead'], 2)}%" for c in results.overhead["cells"])
        rows.append(["harness overhead in the timed region < 3%", detail, _verdict(worst < 0.03)])
    else:
        rows.append(["harness overhead in the timed region < 3%", "not profiled (scripts/profile_overhead.py)", "—"])
    if not ok.empty:
        above = ok[ok["latency_ms_cv"] >= CV_TARGET]
        rows.append([f"run-to-run CV of L_e2e < {100 * CV_TARGET:.0f}% per cell",
                     f"max {_f(100 * ok['latency_ms_cv'].max(), 2)}%; {len(above)} of {len(ok)} cells at or above 2%",
                     _verdict(above.empty)])
        floor_s = sum(r.repeats * roofline.roofline_seconds(r.flops_per_generation, r.min_bytes_per_generation,
                                                             r.peak_tflops, r.peak_tbps)
                      for r in ok.itertuples())
        floor = ("" if math.isnan(floor_s) else
                 f"; the timed generations alone need ≥ {_f(floor_s, 1)} s at the roofline (FLOPs and bytes at peak)")
        rows.append(["the whole grid within the session's device time",
                     f"{len(ok)} ok / {len(results.rows)} cells; sum of cell wall time {_f(ok['wall_s'].sum(), 0)} s"
                     + floor, "—"])
    for raw in results.benchmarks:
        t = target_from_dict(raw)
        ci = "" if t.ci_low is None else f" [{_f(t.ci_low, 3)}, {_f(t.ci_high, 3)}]"
        rows.append([f"{t.name}: {t.goal_text}",
                     f"{_f(t.value, 3)}{ci} ({t.script}, {t.hardware}, {t.measured_at}, commit {t.commit}; {t.detail})",
                     t.verdict])
    return _table(["target", "measured", "verdict"], rows)


ENGINES_INTRO = ("Each engine cell ran the same prompts and token counts as the torch cells. Its per-prompt "
                 "pass timed each prompt as interleaved pairs with the torch path doing the same work (diffusion: "
                 "the same sampler and K without a cache; AR: the config's first decode mode) in one process; a "
                 "prompt's speedup is the median of its pairs' torch / engine latency ratios, and a direction is "
                 "given only where the sign test over the prompts finds one (p < 0.05). Tokens agreeing with torch: the share of the N_out answer "
                 "positions holding the same token, both answers re-encoded by the project tokenizer.")


PARITY_INTRO = (
    "S_parity, tested: the fewest diffusion steps K at which LLaDA is not worse than LLaMA by more than the margin: "
    "every prompt is scored by both, and K passes when the bootstrap 95% CI of the mean per-prompt difference "
    "(LLaDA − LLaMA, oriented so that + favours LLaDA; perplexity on the log scale) lies above −margin. K is chosen "
    "on a seeded selection half of the prompts and tested again on the held-out half. Undecided: no K passes, and "
    "some K's CI straddles −margin. The plan's point rule (the first K whose mean reaches LLaMA's) stands beside it "
    "without a test. A K whose answers degenerate (distinct-2 < 0.5) significantly more often than LLaMA's cannot "
    "reach parity. Speedup Factor = L_e2e(LLaMA) / L_e2e(LLaDA at the tested S_parity), measured in pairs: the two "
    "generations interleaved in one process in a random order per pair; its direction is the sign test over the "
    "pairs, its magnitude the median of the per-pair ratios with a bootstrap 95% CI (precise at a per-pair CV of "
    "at most 5%).")


def answer_for_n(results: Results, n: int) -> list[str]:
    """Per N and AR decoding, one line: whether LLaDA reaches LLaMA's quality (the paired test, and whether the
    held-out prompts confirm it), and at both sides' best the paired Speedup Factor at the smallest B, with its
    verdict or why there is none."""
    par, best = results.parity, results.best
    lines = []
    at_n = par[par["seq_len"] == n]
    for decoding in dict.fromkeys(at_n["ar_decoding"]):
        against = f"LLaMA {decoding}"
        reached = at_n[(at_n["ar_decoding"] == decoding) & at_n["reached"] & at_n["diffusion_cell_id"].notna()]
        chosen = best[(best["seq_len"] == n) & (best["ar_decoding"] == decoding)] if not best.empty else best
        if reached.empty or chosen.empty:
            metrics = ", ".join(sorted(at_n["metric"].unique()))
            undecided = (at_n[at_n["ar_decoding"] == decoding]["parity_outcome"] == UNDECIDED).any()
            lines.append(f"- **N = {n}**, against {against}: LLaDA "
                         + ("is not shown at parity (undecided within the margin)" if undecided
                            else "does not reach parity") + f" on {metrics} at any K and path of the grid.")
            continue
        row = chosen.sort_values(["batch_size", "s_parity"]).iloc[0]
        speed = _speedup(row)
        unmeasured = _engines_without(results, decoding)
        best_of = (f"at the best measured with this decoding ({row['ar_path']} against it; "
                   f"{', '.join(unmeasured)} did not run it)" if unmeasured
                   else f"at both sides' best ({row['ar_path']} against it)")
        line = (f"- **N = {n}**, against {against}: parity on {row['metric']} at K = {int(row['s_parity'])} "
                f"({row['diffusion_path']}; {row['confirmation']} on the held-out prompts); {best_of}, "
                f"B = {int(row['batch_size'])}, the paired Speedup Factor is "
                f"{speed if speed != '—' else 'not measured'}: {verdict(row, results.biased)}.")
        torch_only = _torch_pairing(results, row)
        lines.append(line + (f" In PyTorch on both sides ({torch_only['ar_path']} against "
                             f"{torch_only['diffusion_path']}): {_speedup(torch_only)}: "
                             f"{verdict(torch_only, results.biased)}." if torch_only is not None else ""))
    return lines


def _engines_without(results: Results, decoding: str) -> list[str]:
    """The AR engines of the study (other than torch) that ran no cell with this AR decoding."""
    every = results.every_row
    ar = every[every["kind"] == AR]
    if ar.empty:
        return []
    labels = ar.apply(engine_label, axis=1)
    decodings = ar.apply(ar_decoding_label, axis=1)
    engines = [e for e in dict.fromkeys(labels) if e != IN_PROCESS]
    return [e for e in engines if not (decodings[labels == e] == decoding).any()]


def _torch_pairing(results: Results, row: pd.Series) -> Optional[pd.Series]:
    """The PyTorch-only pairing of a best row whose side runs on another engine (None when the row is torch's)."""
    torch_ids = set(results.rows["cell_id"].astype(str))
    if {str(row["ar_cell_id"]), str(row["diffusion_cell_id"])} <= torch_ids:
        return None
    best = results.best_torch
    if best.empty:
        return None
    match = best[(best["seq_len"] == row["seq_len"]) & (best["batch_size"] == row["batch_size"])
                 & (best["metric"] == row["metric"]) & (best["ar_decoding"] == row["ar_decoding"])]
    return None if match.empty else match.iloc[0]


def _paths(rows: pd.DataFrame) -> str:
    """The generation paths of one side's rows, per engine: `torch (eager, static)` for AR, `torch (samplers
    random, low_confidence; caches none, dual)` for diffusion."""
    if rows.empty:
        return "none"
    parts = []
    for engine, group in rows.groupby(rows.apply(engine_label, axis=1), sort=False):
        if (group["kind"] == AR).all():
            paths = [", ".join(dict.fromkeys(str(d) for d in group["decode"].dropna()))] if engine == IN_PROCESS else []
        else:
            paths = [f"samplers {', '.join(dict.fromkeys(group['sampler'].dropna().astype(str)))}"]
            if engine == IN_PROCESS:
                paths.append(f"caches {', '.join(dict.fromkeys(group['cache'].dropna().astype(str)))}")
                if (group.get("forward") == "compiled").any():
                    paths.append("eager and compiled forward")
        parts.append(f"{engine} ({'; '.join(paths)})" if paths else engine)
    return ", ".join(parts)


def pairing_line(results: Results) -> str:
    """Which engines and paths each side of this study ran on: the sign of a measured answer can depend on it."""
    every = pd.concat([results.ok, results.engine_rows[results.engine_rows["status"] == "ok"]]) \
        if not results.engine_rows.empty else results.ok
    sides = [f"{name} side on {_paths(every[every['kind'] == kind])}"
             for kind, name in ((AR, "LLaMA"), (DIFFUSION, "LLaDA"))]
    return f"- Pairing measured in this study: {sides[0]}; {sides[1]}."


def fastest_path_lines(results: Results) -> list[str]:
    """The fastest path of each side at the fast-path table's point (largest N, smallest B, largest K), over the
    torch paths and every other engine's cells at the same point."""
    fast = fast_path_cells(results.ok)
    if fast.empty:
        return []
    engines = results.engine_rows
    lines = []
    for kind, name in ((AR, "LLaMA side"), (DIFFUSION, "LLaDA side")):
        part = fast[fast["kind"] == kind]
        if part.empty:
            continue
        point = part.iloc[0]
        if not engines.empty:
            same = engines[(engines["status"] == "ok") & (engines["kind"] == kind)
                           & (engines["seq_len"] == point["seq_len"]) & (engines["batch_size"] == point["batch_size"])]
            if kind == DIFFUSION:
                same = same[same["steps"] == point["steps"]]
            part = pd.concat([part, same])
        r = part.sort_values("latency_ms_median").iloc[0]
        k = f", K = {_k(r)}" if kind == DIFFUSION else ""
        lines.append(f"- Fastest path, {name} (N = {int(r['seq_len'])}, B = {int(r['batch_size'])}{k}, every engine): "
                     f"{variant_label(r)}, {_f(r['latency_ms_median'], 1)} ms.")
    return lines


def answer_lines(results: Results, fastest: bool = True) -> list[str]:
    """The summary's opening: the pairing the study measured, the answer per N, the fastest path of each side
    (`fastest`), then the answers of the studies named in `results.see_also` (the same question on other
    engines)."""
    if results.parity.empty:
        return ["**The answer so far:** no quality scores yet, so no parity (run the `score` pass)."]
    smoke = (" (synthetic weights: the quality behind it is a smoke test, not model quality)" if results.synthetic
             else "")
    lines = [f"**The answer so far**{smoke}", "", pairing_line(results)]
    if results.biased:
        lines.append("- **A self-pair of this study fails: its pairs are biased, and no ratio below carries a "
                     "verdict** (see Calibration).")
    lines += [line for n in sorted(results.parity["seq_len"].unique()) for line in answer_for_n(results, n)]
    lines += fastest_path_lines(results) if fastest else []
    for other in results.see_also:
        lines += ["", f"**The same question in [{other.name}]({other.link})** (committed results; another pairing "
                      f"can give another sign):", ""]
        if other.results.parity.empty:
            lines.append("- no quality scores there yet.")
            continue
        lines.append(pairing_line(other.results))
        lines += [line for n in sorted(other.results.parity["seq_len"].unique())
                  for line in answer_for_n(other.results, n)]
    return lines


def provenance_line(results: Results) -> str:
    """Where and when the rows were measured: the machines (CPU model, cores), the days, the commits, and the
    other processes' CPU use during the cells (where the load guard recorded it)."""
    rows = results.every_row
    rows = rows[rows["status"] == "ok"] if (rows["status"] == "ok").any() else rows

    def values(column: str) -> list[str]:
        return sorted(rows[column].dropna().astype(str).unique()) if column in rows else []

    machines = "; ".join(f"{m}, {c} cores" for m, c in sorted(set(zip(rows.get("env_cpu_model", pd.Series(dtype=str))
                                                                        .astype(str),
                                                                        rows.get("env_cpu_count", pd.Series(dtype=str))
                                                                        .astype(str))))) or "unknown"
    days = values("started_at")
    when = f"{days[0][:10]} to {days[-1][:10]}" if days else "unknown"
    commits = ", ".join(c[:12] for c in values("env_git_commit")) or "unknown"
    load = rows["other_cpu_cores"].dropna() if "other_cpu_cores" in rows else pd.Series(dtype=float)
    busy = (f"; other processes' CPU during the cells: median {load.median():.2f} cores, max {load.max():.2f}"
            if not load.empty else "; the load guard did not record these rows")
    return f"**Provenance:** {machines}; measured {when}; commit {commits}{busy}."


def summary_markdown(results: Results, title: str = "dlm-bench results") -> str:
    synthetic = results.synthetic
    parts = [f"# {title}", "", f"**Setting:** {results.caption()}", "", provenance_line(results), ""] \
        + answer_lines(results) + [""]
    if synthetic:
        parts += ["> These rows come from **random-weight (synthetic) models**: latency, throughput and memory are "
                  "measurements of the architectures at that size; quality numbers are smoke tests of the pipeline, "
                  "not model quality.", ""]
    every = results.every_row
    counts = every["status"].value_counts().to_dict()
    parts += [f"Cells: {len(every)} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}).", "",
              "## Latency, throughput and memory (as published: LLaDA reference sampler without cache, "
              "LLaMA eager `generate`)", "", headline_table(results), "",
              "## S_parity and Speedup Factor", "",
              PARITY_INTRO, "",
              parity_markdown(results), "", "## Quality against K", "", TREND_INTRO, "",
              steps_trend_markdown(results.rows, results.quality, results.resamples), "", "## Both sides at their best", "",
              "The fastest AR path (every decode path, and every engine at the sweep's precision) against the "
              "diffusion path that is fastest at its own S_parity, each ratio measured as a pair of those two cells:",
              "", parity_markdown(results, best=True), "", "Every path against its model's as-published path:", "",
              fast_path_table(results), "",
              "## AR decode: where the time per token goes", "",
              "Each AR path's median inter-token latency against the time its weights take to stream once at "
              "this machine's read bandwidth (the roofline's minimum bytes of one decode step):", "",
              ar_tokens_markdown(results), "",
              "## Performance targets", "", targets_table(results), ""]
    if not results.engine_rows.empty:
        parts += ["## Engines", "", ENGINES_INTRO, "", engines_table(results), "", "### Per prompt", "",
                  per_prompt_table(results), ""]
    parts += calibration_markdown(results) + contended_markdown(results)
    if results.warnings:
        parts += ["## Measurement warnings", ""] + [f"- {w}" for w in results.warnings[:40]]
        if len(results.warnings) > 40:
            parts.append(f"- … and {len(results.warnings) - 40} more")
        parts.append("")
    return "\n".join(parts)


def calibration_markdown(results: Results) -> list[str]:
    """The self-pairs (each engine's arm against itself, a torch arm beside an idle engine process) and the
    CPU the other side's processes used during the arms of every pair."""
    found = results.self_pairs
    lines = ["## Calibration: self-pairs", ""]
    if not found:
        lines += ["_No self-pairs measured (pairs.measure without `self`, or a study from before them): the pairs "
                  "step's own bias is not known._", ""]
    else:
        lines += ["Each engine's arm timed against itself the way every published pair is timed, and a torch arm "
                  "beside an idle engine process: an unbiased pairs step gives 1.00 with a CI that contains 1, and "
                  f"nothing beside it takes more than {DEFAULT_MAX_OTHER_CORES:g} CPU cores.", ""]
        rows = [[p.cell, p.beside or "—", str(p.pairs),
                 f"{_f(p.estimate.value, 3)} [{_f(p.estimate.ci_low, 3)}, {_f(p.estimate.ci_high, 3)}]",
                 _f(p.other_cores, 2), "passes" if p.passes else "**fails**"] for p in found]
        lines += [_table(["cell", "beside it", "pairs", "ratio [95% CI]", "other side's CPU, cores",
                          "calibration"], rows), ""]
        if results.biased:
            lines += ["**A self-pair fails: this study's pairs are biased, and none of its ratios carries a "
                      "verdict.**", ""]
    lines += arms_alone_lines(results)
    watched = [other_cores(r) for _, r in results.pairs.iterrows()] if "reference_other_cpu_ms_all" in \
        results.pairs else []
    watched = [x for x in watched if not math.isnan(x)]
    if watched:
        lines += [f"Across the {len(watched)} pairs with an engine arm (or an engine beside), the other side's "
                  f"processes used at most {_f(max(watched), 2)} CPU cores during an arm's run (median over each "
                  f"arm's runs; an engine is stopped while the other arm runs).", ""]
    return lines


ARM_TOLERANCE = 0.10  # an arm inside its pair more than 10% off itself alone is listed


def arms_alone_lines(results: Results) -> list[str]:
    """Every arm of every measured pair with runs alone: its median inside the pair over its median alone just
    before (the pairing's own cost, at one moment of the machine) and over its cell's median (the cell timed
    earlier in the sweep: that ratio also carries the machine's drift), for all arms and for the in-process arms
    paired with another engine's arm; the arms more than ARM_TOLERANCE off themselves alone, named."""
    pairs = results.pairs
    if pairs.empty or "reference_solo_ms_all" not in pairs:
        return []
    rows, by_id, solo_runs = [], results.rows_by_id, set()
    for _, pair in pairs[pairs["status"] == "ok"].iterrows():
        check = alone_check(pair)
        if check is None:
            continue
        solo_runs.add(len(ms_list(pair["reference_solo_ms_all"])))
        cells = {side: by_id.get(str(pair[f"{side}_cell_id"])) for side in ("reference", "contender")}
        engines = {side: (IN_PROCESS if cell is None else str(cell.get("engine") or IN_PROCESS))
                   for side, cell in cells.items()}
        for side, other, in_pair in (("reference", "contender", check.reference_in_pair),
                                     ("contender", "reference", check.contender_in_pair)):
            cell, arm = cells[side], ms_list(pair[f"{side}_ms_all"])
            of_cell = (statistics.median(arm) / float(cell["latency_ms_median"])
                       if cell is not None and pd.notna(cell.get("latency_ms_median")) else math.nan)
            rows.append({"arm": str(pair[side]), "pair": f"{pair['reference']} / {pair['contender']}",
                         "in_pair": in_pair, "of_cell": of_cell, "beside_engine": engines[side] == IN_PROCESS
                         and engines[other] != IN_PROCESS})
    if not rows:
        return []

    def spread(values: list[float]) -> str:
        values = [v for v in values if not math.isnan(v)]
        return (f"median {_f(statistics.median(values), 2)} ({_f(min(values), 2)}–{_f(max(values), 2)}, "
                f"{len(values)} arms)") if values else "none"

    beside = [r for r in rows if r["beside_engine"]]
    off = [r for r in rows if abs(r["in_pair"] - 1.0) > ARM_TOLERANCE]
    lines = ["## Calibration: each arm inside its pair against itself alone", "",
             f"Before its pairs, each arm of a pair is timed alone ({'/'.join(map(str, sorted(solo_runs)))} "
             "runs back to back, the other arm stopped): its cell timed again at the pair's moment. An arm's "
             "median inside the pair over its median alone is what the pairing itself costs it; over its cell's "
             "median it also carries the machine's drift between the cell's hour and the pair's.", "",
             _table(["arms", "inside the pair ÷ alone", "inside the pair ÷ its cell"],
                    [["every arm", spread([r["in_pair"] for r in rows]), spread([r["of_cell"] for r in rows])],
                     ["in-process arms paired with another engine", spread([r["in_pair"] for r in beside]),
                      spread([r["of_cell"] for r in beside])]]), ""]
    if off:
        lines += [f"{len(off)} arms ran more than {ARM_TOLERANCE:.0%} off themselves alone:", ""]
        lines += [f"- {r['arm']} (in {r['pair']}): ×{_f(r['in_pair'], 2)}" for r in off[:20]]
        lines += ([f"- … and {len(off) - 20} more"] if len(off) > 20 else []) + [""]
    else:
        lines += [f"Every arm ran within {ARM_TOLERANCE:.0%} of itself alone.", ""]
    return lines


def contended_markdown(results: Results) -> list[str]:
    """The section listing every cell and pair measured while other work used the machine (none: no section)."""
    cells = results.every_row
    lines = [f"- cell {cell_label(r)}: {r['contention']}" for _, r in cells.iterrows()
             if r.get("status") == "ok" and contended(r.get("contention"))]
    if not results.pairs.empty and "contention" in results.pairs:
        lines += [f"- pair {r['reference']} / {r['contender']}: {r['contention']}"
                  for _, r in results.pairs.iterrows() if r.get("status") == "ok" and contended(r.get("contention"))]
    if not lines:
        return []
    return ["## Contended measurements", "",
            f"{len(lines)} measurements were taken while other work used the machine (load_guard in the config); "
            "a ratio from a contended pair carries no verdict, and a contended cell's times are not the machine's. "
            "`dlm-bench run --remeasure_contended --config ...` measures them again.", ""] + lines + [""]


def paper_summary_markdown(results: Results, summary_link: str) -> str:
    """The headline of one results folder for the paper: the answer, the parity tables as published and at
    both sides' best (trained weights) and the engines table; every other table is in
    the folder's summary.md, linked."""
    parts = [f"**Setting:** {results.caption()}", "", provenance_line(results), ""]
    if results.synthetic:  # the parity tables are smoke tests, in summary.md only
        parts += answer_lines(results, fastest=False) + [""]
    else:  # trained weights: the answer is the paper's claims block, the tables below carry it
        parts += ["**S_parity and Speedup Factor, as published** (LLaMA eager `generate`, LLaDA's reference sampler):",
                  "", paper_parity_markdown(results), "", "**Both sides at their best:**", "",
                  paper_parity_markdown(results, best=True), ""]
    if not results.engine_rows.empty:
        parts += ["**Engines** (B = 1 cells with per-prompt pairs, folded per engine and N; every cell in "
                  "summary.md):", "", engines_digest(results), ""]
    parts += ["Every cell, quality against K, the fast-path table, the targets and the measurement warnings: "
              f"[summary.md]({summary_link}).", ""]
    return "\n".join(parts)
