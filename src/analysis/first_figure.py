"""First look at a sweep: latency vs diffusion steps per N, and throughput vs batch size.

Reads only raw_metrics.csv. Rows from several GPUs, precisions or attention kernels are refused.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

# Okabe-Ito, colour-blind safe
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


class MixedRowsError(ValueError):
    """Rows from different hardware/precision/attention would be put into one comparison."""


def comparable_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Finished rows only; refuse a mix of hardware, precision or attention kernel."""
    ok = df[df["status"] == "ok"].copy()
    for column in ("hardware", "precision", "attention_kernel"):
        values = sorted(ok[column].dropna().astype(str).unique())
        if len(values) > 1:
            raise MixedRowsError(f"rows from different {column} values {values} cannot share one figure; "
                                 f"filter the CSV or facet by {column}")
    return ok


def caption(df: pd.DataFrame) -> str:
    weights = sorted(df["weights"].dropna().unique())
    label = "SYNTHETIC (random-init) weights: timing only, not model quality" if "synthetic" in weights else "pretrained weights"
    hw = ", ".join(sorted(df["hardware"].dropna().astype(str).unique()))
    kern = ", ".join(sorted(df["attention_kernel"].dropna().astype(str).unique()))
    prec = ", ".join(sorted(df["precision"].dropna().astype(str).unique()))
    return f"{hw} | {prec} | attention: {kern} | {label}"


def plot_first_figure(csv_path: str | Path, out_path: str | Path) -> Path:
    """Two panels: L_e2e vs K (one line per N, AR as dashed level) and T_gen vs B per model."""
    df = comparable_rows(pd.read_csv(csv_path))
    if df.empty:
        raise ValueError(f"{csv_path}: no finished rows to plot")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    b_ref = df["batch_size"].min()
    for i, n in enumerate(sorted(df["seq_len"].unique())):
        color = PALETTE[i % len(PALETTE)]
        sub = df[(df["seq_len"] == n) & (df["batch_size"] == b_ref)]
        for j, (name, g) in enumerate(sub[sub["kind"] == "diffusion"].groupby("model_name")):
            g = g.groupby("steps")["latency_ms_median"].median().sort_index()
            ax1.plot(g.index, g.values, marker="o", color=color, linestyle=["-", ":", "-."][j % 3],
                     label=f"{name}, N={n}")
        for name, g in sub[sub["kind"] == "autoregressive"].groupby("model_name"):
            ax1.axhline(g["latency_ms_median"].median(), color=color, linestyle="--", label=f"{name} (AR), N={n}")
    steps = sorted(int(k) for k in df["steps"].dropna().unique())
    if steps:
        ax1.set_xticks(steps, [str(k) for k in steps])
    ax1.set(xlabel="diffusion steps K", ylabel="L_e2e, median (ms)", title=f"Latency vs steps (B={b_ref})",
            yscale="log")
    ax1.legend(fontsize=7)
    series = 0
    n_ref = df["seq_len"].max()
    for name, g in df[df["seq_len"] == n_ref].groupby("model_name"):
        if (g["kind"] == "diffusion").any():
            groups = g.groupby("steps")
            labels = {k: f"{name}, K={int(k)}" for k, _ in groups}
        else:
            groups = [(None, g)]
            labels = {None: f"{name} (AR)"}
        for key, gg in groups:
            t = gg.groupby("batch_size")["tokens_per_s_median"].median().sort_index()
            ax2.plot(t.index, t.values, marker="s", color=PALETTE[series % len(PALETTE)], label=labels[key])
            series += 1
    ax2.set(xlabel="batch size B", ylabel="T_gen = B*N_out/L_e2e (tokens/s)",
            title=f"Throughput vs batch size (N={n_ref})", xscale="log", yscale="log")
    batch_sizes = sorted(df["batch_size"].unique())
    ax2.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax2.minorticks_off()
    ax2.legend(fontsize=7)
    fig.suptitle(caption(df), fontsize=9)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=150)
    plt.close(fig)
    return out_path
