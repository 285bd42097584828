"""The paper's figures, each from result tables only. Every function returns the PNG path.

Each figure carries the hardware, precision, attention kernel and weights label in its caption.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..registry import AR, DIFFUSION, IN_PROCESS  # noqa: E402
from .. import registry  # noqa: E402
from ..labels import ar_decoding_label, engine_label, variant_label  # noqa: E402
from ..fileio import atomic_write_bytes  # noqa: E402
from ..metrics.quality import PARITY_METRICS  # noqa: E402
from ..selection.baseline import DIFFUSION_PATH, baseline, published_parity_rows  # noqa: E402
from .data import PALETTE, Results  # noqa: E402
from .engines import cell_pairs  # noqa: E402


plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 7, "figure.dpi": 100})


def _save(fig, results: Results, out: Path) -> Path:
    """Caption the figure and write its PNG atomically (an interrupted analysis leaves the old figure)."""
    fig.suptitle(results.caption(), fontsize=8)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out, png.getvalue())
    return out


MIN_TICK_RATIO = 1.2  # labels of ticks closer than this factor would overlap on a log axis


def tick_labels(values: list[int]) -> list[str]:
    """Labels of integer ticks on a log axis: a tick within MIN_TICK_RATIO of the last labelled one keeps its mark
    but no label; the largest is always labelled (in place of a crowding neighbour)."""
    labels, last = [], None
    for v in values:
        keep = last is None or v >= last * MIN_TICK_RATIO
        labels.append(str(v) if keep else "")
        last = v if keep else last
    if values and not labels[-1]:
        labels[-1] = str(values[-1])
        for i in range(len(values) - 2, -1, -1):
            if labels[i]:
                if values[-1] < int(labels[i]) * MIN_TICK_RATIO and i > 0:
                    labels[i] = ""
                break
    return labels


def _int_ticks(ax, values, axis="x") -> None:
    values = sorted({int(v) for v in values})
    (ax.set_xticks if axis == "x" else ax.set_yticks)(values, tick_labels(values))
    ax.minorticks_off()


# one look per generation path in every figure: colour = diffusion sampler (or AR decode path),
# line style and marker = KV cache; Okabe-Ito colours, distinguishable in grey and by colour-blind readers
SAMPLER_COLORS = {name: s.colour for name, s in registry.SAMPLERS.items()}
CACHE_STYLES = {"none": ("-", "o"), "prefix": ("--", "s"), "dual": (":", "^")}
DECODE_STYLES = {name: (d.colour, d.marker) for name, d in registry.DECODE_PATHS.items()}


def _label(r) -> str:
    return f"{r['model_name']} ({variant_label(r)})"



ENGINE_COLOUR = "#7F7F7F"  # another engine's cells: grey, an open marker


def series_style(r) -> dict:
    """Plot keyword arguments of a row's generation path (see SAMPLER_COLORS, CACHE_STYLES, DECODE_STYLES); another
    engine's cells are grey with open markers; a sampled AR decoding has an open marker."""
    if engine_label(r) != IN_PROCESS:
        marker = "D" if r["kind"] != DIFFUSION else "o"
        return {"color": ENGINE_COLOUR, "linestyle": "-" if r["kind"] == DIFFUSION else "", "marker": marker,
                "markersize": 7, "markerfacecolor": "none"}
    if r["kind"] == DIFFUSION:
        linestyle, marker = CACHE_STYLES.get(r["cache"], ("-", "o"))
        return {"color": SAMPLER_COLORS.get(r["sampler"], "#000000"), "linestyle": linestyle, "marker": marker,
                "markersize": 5}
    color, marker = DECODE_STYLES.get(r["decode"], ("#000000", "*"))
    style = {"color": color, "linestyle": "", "marker": marker, "markersize": 11}
    return style if ar_decoding_label(r) == "greedy" else {**style, "markerfacecolor": "none"}


def _latency_spread(g: pd.DataFrame) -> np.ndarray:
    """Error bars [2, n] from the median down to the fastest and up to the slowest repetition (ms)."""
    return np.vstack([g["latency_ms_median"] - g["latency_ms_min"], g["latency_ms_max"] - g["latency_ms_median"]])


def _rate_spread(g: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A rate measured at the median latency (T_gen, TFLOP/s) and its error bars [2, n] from the slowest
    and the fastest repetition: the same work divided by those latencies."""
    rate = g[column]
    low, high = rate * g["latency_ms_median"] / g["latency_ms_max"], rate * g["latency_ms_median"] / g["latency_ms_min"]
    return rate.to_numpy(), np.vstack([rate - low, high - rate])


def latency_and_throughput(results: Results, out: Path) -> Path:
    """L_e2e vs K per N (smallest B; AR as levels with their spread) and T_gen vs B (largest N); every
    point is the median with bars from the fastest to the slowest repetition."""
    df = baseline(results.ok)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4), constrained_layout=True)
    b_ref, n_ref = df["batch_size"].min(), df["seq_len"].max()
    for i, n in enumerate(sorted(df["seq_len"].unique())):
        color = PALETTE[i % len(PALETTE)]
        sub = df[(df["seq_len"] == n) & (df["batch_size"] == b_ref)]
        for _, g in sub[sub["kind"] == DIFFUSION].groupby("model_name"):
            g = g.sort_values("steps")
            ax1.errorbar(g["steps"], g["latency_ms_median"], yerr=_latency_spread(g), marker="o", color=color,
                         capsize=3, label=f"{_label(g.iloc[0])}, N={n}")
        for _, r in sub[sub["kind"] == AR].iterrows():
            ax1.axhline(r["latency_ms_median"], color=color, linestyle="--", label=f"{_label(r)}, N={n}")
            ax1.axhspan(r["latency_ms_min"], r["latency_ms_max"], color=color, alpha=0.12)
    if df["steps"].notna().any():
        _int_ticks(ax1, df["steps"].dropna().unique())
    ax1.set(xlabel="diffusion steps K", ylabel="L_e2e (ms): median, bars from fastest to slowest repetition",
            title=f"Latency vs steps (B={b_ref}; AR: dashed, band = its spread)", yscale="log")
    ax1.legend(fontsize=6)
    at_n = df[df["seq_len"] == n_ref]
    for c, ((name, k), g) in enumerate(at_n.groupby(["model_name", at_n["steps"].fillna(-1)])):
        g = g.sort_values("batch_size")
        label = f"{_label(g.iloc[0])}, K={int(k)}" if k >= 0 else _label(g.iloc[0])
        median, spread = _rate_spread(g, "tokens_per_s_median")
        ax2.errorbar(g["batch_size"], median, yerr=spread, marker="s", capsize=3, color=PALETTE[c % len(PALETTE)],
                     linestyle="-" if k >= 0 else "--", label=label)
    ax2.set(xlabel="batch size B", ylabel="T_gen = B*N_out/L_e2e (tokens/s)",
            title=f"Throughput vs batch size (N={n_ref}, every B)", xscale="log", yscale="log")
    _int_ticks(ax2, df["batch_size"].unique())
    ax2.legend(fontsize=6)
    return _save(fig, results, out)


def _pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """Points not dominated by another with lower latency and better quality, by latency."""
    front, best = [], -math.inf
    for lat, q in sorted(points):
        value = q if higher_is_better else -q
        if value > best:
            front.append((lat, q))
            best = value
    return front


def _scored(df: pd.DataFrame) -> tuple[list[str], list[int]]:
    """The quality metrics present in `df` and the N values that have scores for them."""
    metrics = [m for m in PARITY_METRICS if f"{m}_mean" in df and df[f"{m}_mean"].notna().any()]
    if not metrics:
        raise ValueError("no quality columns: run the scoring pass first")
    return metrics, sorted(df.loc[df[[f"{m}_mean" for m in metrics]].notna().any(axis=1), "seq_len"].unique())


def _perplexity_scale(ax, metric: str, rows: pd.DataFrame) -> None:
    """A log y axis for perplexities whose intervals span more than a factor of 10 (across K they often
    span orders of magnitude)."""
    values = pd.concat([rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"]]).dropna()
    if metric == "gen_ppl" and not values.empty and (values > 0).all() and values.max() > 10 * values.min():
        ax.set_yscale("log")


def pareto(results: Results, out: Path) -> Path:
    """Quality vs L_e2e per N (rows) and metric (columns) at the smallest B: every diffusion variant over K
    (colour = sampler, line and marker = cache), every AR decode path and decoding, and every other engine's
    cells (llama.cpp, an endpoint: grey, their quality from their per-prompt answers); bars: repetition spread
    (x) and the quality's 95% CI (y); K is written at the points on the Pareto frontier."""
    b_ref = results.ok["batch_size"].min()
    every = results.every_row
    df = every[(every["status"] == "ok") & (every["batch_size"] == b_ref)]
    metrics, ns = _scored(df)
    fig, axes = plt.subplots(len(ns), len(metrics), figsize=(6.4 * len(metrics), 4.0 * len(ns) + 2.4), squeeze=False,
                             layout="constrained")
    for i, n in enumerate(ns):
        for j, metric in enumerate(metrics):
            ax, label, higher = axes[i][j], PARITY_METRICS[metric].label, PARITY_METRICS[metric].higher_is_better
            sub = df[(df["seq_len"] == n) & df[f"{metric}_mean"].notna()]
            points = {}
            sub = sub.assign(series=[variant_label(r) for _, r in sub.iterrows()])
            for _, g in sub.groupby(["model_name", "series"], dropna=False):
                g = g.sort_values("steps")
                first = g.iloc[0]
                yerr = np.vstack([g[f"{metric}_mean"] - g[f"{metric}_ci_low"], g[f"{metric}_ci_high"] - g[f"{metric}_mean"]])
                ax.errorbar(g["latency_ms_median"], g[f"{metric}_mean"], xerr=_latency_spread(g), yerr=yerr,
                            elinewidth=0.6, capsize=0, label=_label(first), **series_style(first))
                for _, r in g.iterrows():
                    points[(r["latency_ms_median"], r[f"{metric}_mean"])] = r
            front = _pareto_front(list(points), higher)
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", linewidth=1,
                    linestyle=":", label="Pareto frontier")
            for p in front:
                r = points[p]
                tag = f"K={int(r['steps'])}" if r["kind"] == DIFFUSION else str(r["series"])
                ax.annotate(tag, p, fontsize=6, xytext=(3, -9 if higher else 4), textcoords="offset points")
            ax.set(xscale="log", xlabel="L_e2e, median (ms)", ylabel=label, title=f"N={n}, B={b_ref}: {metric}")
            _perplexity_scale(ax, metric, sub)
    legend: dict[str, Any] = {}  # one legend for every panel, each series once
    for ax in axes.flat:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(text, handle)
    fig.legend(list(legend.values()), list(legend), fontsize=6, loc="outside lower center", ncol=4)
    return _save(fig, results, out)


def throughput_bars(results: Results, out: Path) -> Path:
    """T_gen by B for each model (diffusion per K, as-published path), one panel per N, on a linear axis;
    bars from the slowest to the fastest repetition."""
    df = baseline(results.ok)
    ns = sorted(df["seq_len"].unique())
    fig, axes = plt.subplots(1, len(ns), figsize=(5.2 * len(ns), 3.9), squeeze=False, constrained_layout=True)
    for ax, n in zip(axes[0], ns):
        sub = df[df["seq_len"] == n].assign(series=lambda d: [
            f"{_label(r)}, K={int(r['steps'])}" if r["kind"] == DIFFUSION else _label(r) for _, r in d.iterrows()])
        series = list(dict.fromkeys(sub.sort_values(["kind", "steps"])["series"]))
        bs = sorted(sub["batch_size"].unique())
        width = 0.8 / max(1, len(series))
        for s_i, label in enumerate(series):
            g = sub[sub["series"] == label].set_index("batch_size").reindex(bs)
            median, spread = _rate_spread(g, "tokens_per_s_median")
            ax.bar(np.arange(len(bs)) + s_i * width, median, width, yerr=np.nan_to_num(spread), capsize=2, label=label,
                   color=PALETTE[s_i % len(PALETTE)])
        ax.set_xticks(np.arange(len(bs)) + 0.4 - width / 2, [str(b) for b in bs])
        ax.set(xlabel="batch size B", ylabel="T_gen (output tokens/s)", title=f"Throughput, N={n}")
        ax.legend(fontsize=6)
    return _save(fig, results, out)


def memory_heatmaps(results: Results, out: Path) -> Path:
    """Peak memory over B x N per model (max over K and variants); OOM cells are marked OOM.

    All panels share one colour scale from 0 GiB, so equal colours mean equal memory across models."""
    rows = results.rows
    column, what = "peak_mem_reserved_gib", "peak reserved GPU memory over the timed repetitions (GiB)"
    ok_rows = rows[rows["status"] == "ok"]
    if ok_rows[column].isna().all():
        # CPU runs: the resident peak of the cell's timed repetitions where it was kept; in older rows only the
        # process's max RSS, which never goes down (the peak of the run up to that cell, model load included)
        column, what = ("cell_peak_rss_gib", "CPU: peak RSS over the cell's timed repetitions (GiB)")
        if "cell_peak_rss_gib" not in ok_rows or ok_rows[column].isna().all():
            column, what = "process_max_rss_gib", "CPU: process peak RSS so far, not per cell (GiB)"
    models = sorted(rows["model_name"].unique())
    bs, ns = sorted(rows["batch_size"].unique()), sorted(rows["seq_len"].unique())
    grids, ooms = {}, {}
    for model in models:
        grid = np.full((len(bs), len(ns)), np.nan)
        oom = np.zeros_like(grid, dtype=bool)
        for i, b in enumerate(bs):
            for j, n in enumerate(ns):
                cell = rows[(rows["model_name"] == model) & (rows["batch_size"] == b) & (rows["seq_len"] == n)]
                ok = cell[cell["status"] == "ok"][column]
                if ok.notna().any():
                    grid[i, j] = ok.max()
                oom[i, j] = (cell["status"] == "oom").any()
        grids[model], ooms[model] = grid, oom
    top = max([np.nanmax(g) for g in grids.values() if not np.isnan(g).all()], default=1.0)
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False, constrained_layout=True)
    for ax, model in zip(axes[0], models):
        grid, oom = grids[model], ooms[model]
        im = ax.imshow(np.ma.masked_invalid(grid), cmap="cividis", origin="lower", aspect="auto", vmin=0.0, vmax=top)
        for i in range(len(bs)):
            for j in range(len(ns)):
                text = "OOM" if oom[i, j] else ("—" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}")
                dark = oom[i, j] or np.isnan(grid[i, j]) or grid[i, j] < 0.5 * top  # cividis is dark below mid-scale
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black",
                        bbox=dict(facecolor="#D55E00", edgecolor="none") if oom[i, j] else None)
        ax.set_xticks(range(len(ns)), [str(n) for n in ns])
        ax.set_yticks(range(len(bs)), [str(b) for b in bs])
        ax.set(xlabel="sequence length N", ylabel="batch size B", title=f"{model}: every B x N (max over K, paths)")
        fig.colorbar(im, ax=ax, label=what)
    return _save(fig, results, out)


def quality_vs_steps(results: Results, out: Path) -> Path:
    """Diffusion quality vs K for every sampler/cache (95% CIs as bars) at the smallest B, the AR level of each
    decoding (eager; every decode path gives the same tokens at T = 0; dashed greedy, dash-dotted sampled) as a
    line with its CI band, the as-published sampler's tested S_parity against each decoding marked. A hollow
    marker is a K whose outputs degenerate more often than the AR model's."""
    ok = results.ok
    df = ok[ok["batch_size"] == ok["batch_size"].min()]
    metrics, ns = _scored(df)
    fig, axes = plt.subplots(len(metrics), len(ns), figsize=(4.8 * len(ns), 3.6 * len(metrics) + 1.2), squeeze=False,
                             layout="constrained")
    par = results.parity
    legend: dict = {}  # label -> handle, one legend for the figure
    for i, metric in enumerate(metrics):
        label = PARITY_METRICS[metric].label
        for j, n in enumerate(ns):
            ax = axes[i][j]
            sub = df[(df["seq_len"] == n) & df[f"{metric}_mean"].notna()]
            ax.set(xlabel="diffusion steps K", ylabel=label, title=f"N={n}, B={int(df['batch_size'].min())}: mean, 95% CI")
            if sub.empty:
                ax.text(0.5, 0.5, f"{metric} not scored at N={n}", transform=ax.transAxes, ha="center", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            ar = baseline(sub[sub["kind"] == AR])
            ar_degenerate = ar["degenerate_mean"].max() if "degenerate_mean" in ar and not ar.empty else np.nan
            for _, g in sub[sub["kind"] == DIFFUSION].groupby(["model_name", *DIFFUSION_PATH]):
                g = g.sort_values("steps")
                style = series_style(g.iloc[0])
                err = np.vstack([g[f"{metric}_mean"] - g[f"{metric}_ci_low"], g[f"{metric}_ci_high"] - g[f"{metric}_mean"]])
                ax.errorbar(g["steps"], g[f"{metric}_mean"], yerr=err, capsize=2, linewidth=1, elinewidth=0.7,
                            label=_label(g.iloc[0]), **style)
                if "degenerate_mean" in g and not np.isnan(ar_degenerate):
                    bad = g[g["degenerate_mean"] > ar_degenerate]
                    ax.plot(bad["steps"], bad[f"{metric}_mean"], linestyle="", marker=style["marker"], markersize=9,
                            markerfacecolor="white", markeredgecolor=style["color"], markeredgewidth=1.5, zorder=5)
            for _, r in ar.iterrows():
                dashes = "--" if ar_decoding_label(r) == "greedy" else "-."
                ax.axhline(r[f"{metric}_mean"], color="#000000", linestyle=dashes, linewidth=1, label=_label(r))
                ax.axhspan(r[f"{metric}_ci_low"], r[f"{metric}_ci_high"], color="#000000", alpha=0.08)
            if not par.empty:
                published = published_parity_rows(par)
                hits = published[(published["seq_len"] == n) & (published["metric"] == metric)]
                for line, (decoding, hit) in enumerate(hits.groupby("ar_decoding", sort=False)):
                    if hit["reached"].iloc[0]:
                        k = hit["s_parity"].iloc[0]
                        ax.axvline(k, color="black", linewidth=1, linestyle=":" if line == 0 else (0, (1, 4)),
                                   label=f"S_parity (as published, tested) against {decoding} = {int(k)}")
                    else:
                        ax.text(0.02, 0.02 + 0.06 * line, f"as published against {decoding}: parity "
                                f"{hit['parity_outcome'].iloc[0]}", transform=ax.transAxes, fontsize=7)
            ax.set_xscale("log")
            _perplexity_scale(ax, metric, sub)
            _int_ticks(ax, sub["steps"].dropna().unique())
            legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(list(legend.values()), list(legend.keys()), loc="outside lower center", ncol=min(4, len(legend)),
               fontsize=7, title="hollow marker: outputs degenerate more often than the AR model's (not eligible "
                                 "for parity)", title_fontsize=7)
    return _save(fig, results, out)


def latency_breakdown(results: Results, out: Path) -> Path:
    """AR: TTFT vs decode time stacked per (N, B); diffusion: per-step p50 and p99 per (N, K)."""
    df = baseline(results.ok)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ar = df[df["kind"] == AR].sort_values(["seq_len", "batch_size"])
    labels = [f"N={r.seq_len}\nB={r.batch_size}" for r in ar.itertuples()]
    x = np.arange(len(ar))
    ax1.bar(x, ar["ttft_ms_median"], color=PALETTE[0], label="TTFT (prefill)")
    ax1.bar(x, ar["latency_ms_median"] - ar["ttft_ms_median"], bottom=ar["ttft_ms_median"], color=PALETTE[1],
            yerr=np.nan_to_num(_latency_spread(ar)), capsize=2, label="decode (L_e2e - TTFT); bar: L_e2e spread")
    ax1.set_xticks(x, labels, fontsize=6)
    ax1.set(ylabel="ms (medians)", title="Autoregressive: TTFT vs decode, every N and B")
    ax1.legend()
    dl = df[df["kind"] == DIFFUSION]
    dl = dl[dl["batch_size"] == dl["batch_size"].min()].sort_values(["seq_len", "steps"])
    x = np.arange(len(dl))
    ax2.bar(x - 0.2, dl["step_ms_p50"], 0.4, color=PALETTE[2], label="per-step p50")
    ax2.bar(x + 0.2, dl["step_ms_p99"], 0.4, color=PALETTE[3], label="per-step p99")
    ax2.set_xticks(x, [f"N={r.seq_len}\nK={int(r.steps)}" for r in dl.itertuples()], fontsize=6)
    ax2.set(ylabel="ms per denoising step (median over repetitions)",
            title=f"Diffusion: step latency (B={dl['batch_size'].min() if len(dl) else '-'})")
    ax2.legend()
    return _save(fig, results, out)


def roofline_plot(results: Results, out: Path) -> Path:
    """Achieved TFLOP/s vs arithmetic intensity (FLOPs per minimum byte), with the peaks when known."""
    df = results.ok.dropna(subset=["flops_per_generation", "min_bytes_per_generation"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for c, ((kind, name), g) in enumerate(df.groupby(["kind", "model_name"])):
        intensity = g["flops_per_generation"] / g["min_bytes_per_generation"]
        achieved, spread = _rate_spread(g, "achieved_tflops")  # bars: at the slowest and fastest repetition
        ax.errorbar(intensity, achieved, yerr=spread, fmt="o", markersize=3.5, elinewidth=0.7, color=PALETTE[c % len(PALETTE)], label=f"{name} ({kind})")
    peak_f, peak_b = df["peak_tflops"].dropna(), df["peak_tbps"].dropna()
    roof = not peak_f.empty and not peak_b.empty
    if roof:
        xs = np.logspace(-1, 4, 100)
        ax.plot(xs, np.minimum(peak_f.iloc[0], xs * peak_b.iloc[0]), color="black", linewidth=1,
                label=f"roofline ({df['peak_source'].dropna().iloc[0]})")
    else:
        ax.text(0.02, 0.95, "no peak figures for this hardware (run scripts/calibrate.py): points only",
                transform=ax.transAxes, fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per minimum byte)",
           ylabel="achieved TFLOP/s (at the median L_e2e)",
           title="Every cell (all B, N, K) against the hardware roofline" if roof
           else "Achieved TFLOP/s vs arithmetic intensity, all B, N, K (no peaks known: no roof)")
    ax.legend(fontsize=6)
    return _save(fig, results, out)


ENGINE_MARKERS = ("o", "D", "s", "^", "v")  # one marker per engine path (engine and weights format)


def _engine_groups(cells: pd.DataFrame) -> list[str]:
    """The x positions of one model's engine cells: N (AR) or N and K (diffusion), in grid order."""
    keys = cells.sort_values(["seq_len", "steps"]).apply(_engine_group, axis=1)
    return list(dict.fromkeys(keys))


def _engine_group(c) -> str:
    k = f"\nK={int(c['steps'])}" if c["kind"] == DIFFUSION else ""
    return f"N={int(c['seq_len'])}{k}"


def engines_plot(results: Results, out: Path) -> Path:
    """Engine cells against the torch path doing the same work, one row of panels per model: left, each
    cell's paired speedup (the median over its prompts of each prompt's median pair, as the Engines table;
    bars from its slowest to its fastest pair; log axis, 1 = as fast); right, the share of answer tokens
    agreeing with torch.
    x: the cell's N (and K); colour: the diffusion sampler (AR: black); marker: the engine path."""
    cells = cell_pairs(results)
    if cells.empty:
        raise ValueError("no per-prompt rows: no engine cell ran its per-prompt pairs")
    cells["path"] = cells.apply(engine_label, axis=1)
    paths = sorted(cells["path"].unique())
    markers = {p: ENGINE_MARKERS[i % len(ENGINE_MARKERS)] for i, p in enumerate(paths)}
    kind_of = cells.groupby("model_name")["kind"].first()
    models = sorted(kind_of.index, key=lambda m: (kind_of[m], m))  # AR models first
    widest = max(len(_engine_groups(cells[cells["model_name"] == m])) for m in models)
    fig, axes = plt.subplots(len(models), 2, figsize=(max(7.0, 1.1 * widest + 4.5), 3.3 * len(models)), squeeze=False,
                             width_ratios=[2.2, 1], layout="constrained")
    for (speed_ax, agree_ax), model in zip(axes, models):
        mine = cells[cells["model_name"] == model]
        groups = _engine_groups(mine)
        series = list(mine.groupby(["sampler", "path"], dropna=False, sort=True))
        offsets = np.linspace(-0.3, 0.3, len(series)) if len(series) > 1 else np.zeros(1)
        for offset, ((sampler, path), g) in zip(offsets, series):
            x = np.array([groups.index(_engine_group(c)) for _, c in g.iterrows()]) + offset
            colour = SAMPLER_COLORS.get(sampler, "#000000") if isinstance(sampler, str) else "#000000"
            label = f"{sampler} · {path}" if isinstance(sampler, str) else path
            style = {"color": colour, "marker": markers[path], "markersize": 4.5, "linestyle": ""}
            spread = np.vstack([g["speedup"] - g["pair_min"], g["pair_max"] - g["speedup"]])
            speed_ax.errorbar(x, g["speedup"], yerr=spread, elinewidth=0.7, label=label, **style)
            agree_ax.plot(x, g["agreement"], **style)
        for ax in (speed_ax, agree_ax):
            ax.set_xticks(range(len(groups)), groups, fontsize=7)
            ax.set_xlim(-0.6, len(groups) - 0.4)
        speed_ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        speed_ax.set_yscale("log")
        low, high = speed_ax.get_ylim()
        speed_ax.set_ylim(low, high * 1.5)  # headroom for the legend above the points
        speed_ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        speed_ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        speed_ax.set(ylabel="speedup vs torch\n(torch / engine L_e2e)",
                     title=f"{model}: paired speedup per cell ({int(mine['prompts'].max())} prompts, B = 1)")
        speed_ax.legend(fontsize=6, ncol=2 if len(series) > 4 else 1, loc="upper right")
        agree_ax.set(ylabel="tokens agreeing with torch", ylim=(-0.03, 1.05), title=f"{model}: agreement with torch")
    return _save(fig, results, out)


FIGURES = {"latency_throughput": latency_and_throughput, "pareto": pareto, "throughput_bars": throughput_bars,
           "memory_heatmap": memory_heatmaps, "quality_vs_steps": quality_vs_steps,
           "latency_breakdown": latency_breakdown, "roofline": roofline_plot, "engines": engines_plot}
