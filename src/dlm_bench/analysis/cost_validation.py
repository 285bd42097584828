"""The cost model against measured cells: its factors fitted on some model sizes, the others predicted.

Reads a results folder's rows (raw_metrics.csv) and the architecture file each row names, builds each
cell's `Generation`, and fits, on the cells of the fit sizes only:
- e_f and e_b on a log grid (the same for every path: they are the hardware's), and for each (e_f,
  e_b) each path's overhead (c_call, c_layer >= 0) by least squares on relative errors, keeping the
  (e_f, e_b) with the smallest total squared relative error;
- the memory model's resident base, the median of (measured peak RSS - weights - KV - transient).
Then every cell is predicted, and the error of the held-out sizes is the model's test.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..registry import DIFFUSION
from ..config import PRECISIONS
from ..measure.roofline import forward_flops, forward_min_bytes
from ..models.architecture import Architecture, architecture_of_config
from .cost_model import Ceilings, Efficiency, Generation, Overhead, predict_latency, predict_memory

GIB = 1024 ** 3
GRID = np.logspace(-2.5, 0.3, 57)  # e_f and e_b candidates: 0.3% to 200% of the measured ceilings


@dataclass(frozen=True)
class MeasuredCell:
    """One ok row of the validation study, with what the cost model needs to predict it."""

    cell_id: str
    model: str
    n_params: int
    arch: Architecture
    generation: Generation
    bytes_per_param: int
    latency_ms: float  # median L_e2e
    latency_cv: float
    peak_rss_gib: float  # the cell's own resident peak


def measured_cells(rows: pd.DataFrame, root: Path) -> list[MeasuredCell]:
    """The ok rows as MeasuredCells (architecture files are read relative to `root`, the project)."""
    out = []
    for _, r in rows[rows["status"] == "ok"].iterrows():
        arch = architecture_of_config(json.loads((root / r["model_source"]).read_text()))
        diffusion = r["kind"] == DIFFUSION
        gen = Generation(r["kind"], r["cache"] if diffusion else r["decode"], int(r["batch_size"]),
                         int(r["prompt_len"]), int(r["n_out"]), int(r["steps"]) if diffusion else None,
                         int(r["block_length"]) if diffusion else None,
                         bool(diffusion and (r.get("cfg_scale") or 0) > 0))
        out.append(MeasuredCell(r["cell_id"], r["model_name"], arch.n_params, arch, gen,
                                PRECISIONS[r["precision"]].bytes_per_element, float(r["latency_ms_median"]),
                                float(r["latency_ms_cv"]), float(r.get("cell_peak_rss_gib", math.nan))))
    return out


@dataclass(frozen=True)
class Fit:
    """The fitted factors, the ceilings they multiply, and the sizes (parameters) they were fitted on."""

    ceilings: Ceilings
    efficiency: Efficiency
    memory_base_gib: float
    fit_sizes: tuple[int, ...]
    fit_cells: int
    fit_rms_relative_error: float

    def to_json(self) -> dict:
        return {"ceilings": asdict(self.ceilings), "e_f": self.efficiency.e_f, "e_b": self.efficiency.e_b,
                "overheads_ms": {k: asdict(v) for k, v in sorted(self.efficiency.overheads.items())},
                "memory_base_gib": self.memory_base_gib, "fit_sizes_params": list(self.fit_sizes),
                "fit_cells": self.fit_cells, "fit_rms_relative_error": self.fit_rms_relative_error}


def fit_from_json(data: dict) -> Fit:
    """A Fit as `Fit.to_json` wrote it (cost_fit.json's `fit`)."""
    c = data["ceilings"]
    by_shape = tuple((int(w), tuple((int(m), float(t)) for m, t in rows)) for w, rows in c.get("by_shape", ()))
    ceilings = Ceilings(c["name"], c["tflops"], c["tbps"], c["source"], by_shape)
    overheads = {k: Overhead(v["call_ms"], v["layer_ms"]) for k, v in data["overheads_ms"].items()}
    return Fit(ceilings, Efficiency(data["e_f"], data["e_b"], overheads), data["memory_base_gib"],
               tuple(data["fit_sizes_params"]), data["fit_cells"], data["fit_rms_relative_error"])


def shape_text(ceilings: Ceilings) -> str:
    """The matmul ceiling as the report states it: the square matmul's rate, and where the rate by shape was
    measured, its range at one row and at the most rows (each forward's compute term divides by its own)."""
    text = f"{1e3 * ceilings.tflops:.1f} GFLOP/s matmul"
    if not ceilings.by_shape:
        return text
    first = [table[0] for _, table in ceilings.by_shape]
    last = [table[-1] for _, table in ceilings.by_shape]
    widths = ", ".join(str(w) for w, _ in ceilings.by_shape)
    return (f"{text} (square); by shape, (rows x width) @ (width x width) at widths {widths}: "
            f"{1e3 * min(t for _, t in first):.0f}–{1e3 * max(t for _, t in first):.0f} GFLOP/s at {first[0][0]} "
            f"row, {1e3 * min(t for _, t in last):.0f}–{1e3 * max(t for _, t in last):.0f} at {last[0][0]} rows; each "
            "forward's compute term divides by the rate of its own rows (B x query tokens) and width")


def _bound_ms(cell: MeasuredCell, ceilings: Ceilings) -> np.ndarray:
    """Sum over the cell's forwards of max(compute, memory) ms, for every (e_f, e_b) of GRID x GRID."""
    work = cell.generation.work()
    flops = np.array([forward_flops(w, cell.arch) for w in work])
    nbytes = np.array([forward_min_bytes(w, cell.arch, cell.bytes_per_param) for w in work])
    peaks = np.array([ceilings.tflops_at(cell.arch.d_model, w.batch * w.query_tokens) for w in work])
    compute = 1e3 * flops[None, :] / (GRID[:, None] * peaks[None, :] * 1e12)  # [e_f, forward]
    memory = 1e3 * nbytes[None, :] / (GRID[:, None] * ceilings.tbps * 1e12)  # [e_b, forward]
    return np.maximum(compute[:, None, :], memory[None, :, :]).sum(axis=2)


def _nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """min |a x - b|^2 over x >= 0 for two unknowns: the unconstrained solution if it is feasible, else the
    best of the solutions with one or both unknowns at 0."""
    candidates = []
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    if (x >= 0).all():
        candidates.append(x)
    for keep in (0, 1):
        col = a[:, keep]
        value = max(0.0, float(col @ b / (col @ col))) if col @ col > 0 else 0.0
        candidates.append(np.array([value, 0.0]) if keep == 0 else np.array([0.0, value]))
    candidates.append(np.zeros(2))
    best = min(candidates, key=lambda c: float(((a @ c - b) ** 2).sum()))
    return best, float(((a @ best - b) ** 2).sum())


def fit(cells: Sequence[MeasuredCell], ceilings: Ceilings) -> Fit:
    """e_f, e_b, each path's overhead and the resident base from `cells` (see module docstring)."""
    bounds = np.stack([_bound_ms(c, ceilings) for c in cells])  # [cell, e_f, e_b]
    groups = {}
    for path in sorted({c.generation.path_key for c in cells}):
        idx = np.array([k for k, c in enumerate(cells) if c.generation.path_key == path])
        m = np.array([cells[k].latency_ms for k in idx])
        n = np.array([len(cells[k].generation.work()) for k in idx], dtype=float)
        layers = np.array([cells[k].arch.n_layers for k in idx], dtype=float)
        groups[path] = (idx, m, np.stack([n / m, n * layers / m], axis=1))
    best: Optional[tuple[float, int, int, dict]] = None
    for i in range(len(GRID)):
        for j in range(len(GRID)):
            total, overheads = 0.0, {}
            for path, (idx, m, a) in groups.items():
                # relative residual (bound + n (c_call + c_layer L) - m) / m, linear in (c_call, c_layer)
                x, sq = _nonnegative_lstsq(a, 1 - bounds[idx, i, j] / m)
                overheads[path] = Overhead(float(x[0]), float(x[1]))
                total += sq
            if best is None or total < best[0]:
                best = (total, i, j, overheads)
    total, i, j, overheads = best
    eff = Efficiency(float(GRID[i]), float(GRID[j]), overheads)
    residue = [c.peak_rss_gib * GIB - (m.total - m.base) for c in cells
               for m in [predict_memory(c.generation, c.arch, c.bytes_per_param, 0.0)] if not math.isnan(c.peak_rss_gib)]
    base = statistics.median(residue) / GIB if residue else math.nan
    return Fit(ceilings, eff, base, tuple(sorted({c.n_params for c in cells})), len(cells),
               math.sqrt(total / len(cells)))


@dataclass(frozen=True)
class Checked:
    """One cell predicted by a fit: measured and predicted latency and peak RSS, relative errors."""

    cell: MeasuredCell
    held_out: bool
    predicted_ms: float
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    predicted_rss_gib: float

    @property
    def error(self) -> float:
        """(predicted - measured) / measured latency."""
        return self.predicted_ms / self.cell.latency_ms - 1

    @property
    def rss_error(self) -> float:
        return self.predicted_rss_gib / self.cell.peak_rss_gib - 1


def check(cells: Sequence[MeasuredCell], result: Fit) -> list[Checked]:
    out = []
    for c in cells:
        p = predict_latency(c.generation, c.arch, c.bytes_per_param, result.ceilings, result.efficiency)
        mem = predict_memory(c.generation, c.arch, c.bytes_per_param, result.memory_base_gib * GIB)
        out.append(Checked(c, c.n_params not in result.fit_sizes, p.latency_ms, p.compute_bound_ms, p.memory_bound_ms,
                           p.overhead_ms, mem.total / GIB))
    return out


@dataclass(frozen=True)
class Summary:
    """Median and worst absolute relative error of the held-out cells, latency and peak RSS."""

    held_out_cells: int
    latency_median_abs_error: float
    latency_worst_abs_error: float
    worst_cell: str
    rss_median_abs_error: float
    rss_worst_abs_error: float


def summarise(checked: Sequence[Checked]) -> Summary:
    held = [c for c in checked if c.held_out]
    lat = [abs(c.error) for c in held]
    rss = [abs(c.rss_error) for c in held if not math.isnan(c.rss_error)]
    worst = max(held, key=lambda c: abs(c.error))
    return Summary(len(held), statistics.median(lat), max(lat), label(worst.cell),
                   statistics.median(rss) if rss else math.nan, max(rss) if rss else math.nan)


def label(cell: MeasuredCell) -> str:
    g = cell.generation
    k = f" K={g.steps}" if g.kind == DIFFUSION else ""
    return f"{cell.model} B={g.batch} N={g.prompt_len + g.n_out}{k} {g.path}"


# --------------------------------------------------------------------------- report

GOAL = 0.15  # the held-out cells' median absolute latency error the model should stay within


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:+.1f}%"


def report_markdown(result: Fit, checked: Sequence[Checked], summary: Summary, hardware: str) -> str:
    """The validation table: the fit, the held-out errors against the goal, and every cell."""
    eff = result.efficiency
    verdict = "met" if summary.latency_median_abs_error <= GOAL else "missed"
    fit_sizes = ", ".join(f"{n / 1e6:.1f} M" for n in result.fit_sizes)
    held = sorted({c.cell.n_params for c in checked if c.held_out})
    lines = [
        f"# The cost model on {hardware}", "",
        "Generated by `scripts/validate_cost_model.py` from `results/raw_data/cpu_cost_validation/` (synthetic "
        "weights: timing and memory only). Predicted L_e2e = sum over forwards of max(FLOPs / (e_f peak), "
        "bytes / (e_b bandwidth)) + forwards x (c_call + c_layer x layers); peak RSS = base + weights + KV cache + "
        "largest transient (`src/dlm_bench/analysis/cost_model.py`).", "",
        f"Ceilings ({result.ceilings.source}): {shape_text(result.ceilings)}, "
        f"{1e3 * result.ceilings.tbps:.1f} GB/s read. Fitted on the {result.fit_cells} cells of the models of "
        f"{fit_sizes} parameters: e_f = {eff.e_f:.3f}, e_b = {eff.e_b:.3f}, resident base "
        f"{result.memory_base_gib:.2f} GiB (RMS relative latency error of the fit {100 * result.fit_rms_relative_error:.1f}%).", "",
        "| path | c_call ms | c_layer ms |", "|---|---|---|"]
    lines += [f"| {k} | {v.call_ms:.3f} | {v.layer_ms:.4f} |" for k, v in sorted(eff.overheads.items())]
    lines += ["", f"**Held out** ({', '.join(f'{n / 1e6:.1f} M' for n in held)} parameters, {summary.held_out_cells} "
              f"cells): median absolute latency error **{100 * summary.latency_median_abs_error:.1f}%** (goal "
              f"{100 * GOAL:.0f}%: {verdict}), worst {100 * summary.latency_worst_abs_error:.1f}% "
              f"({summary.worst_cell}); peak RSS median {100 * summary.rss_median_abs_error:.1f}%, worst "
              f"{100 * summary.rss_worst_abs_error:.1f}%.", ""]
    lines += held_out_by_path(checked) + [
              "| model | path | B | N | measured ms (CV) | predicted ms | compute / memory / overhead ms | error | "
              "RSS GiB measured / predicted | RSS error | held out |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(checked, key=lambda c: (c.cell.n_params, c.cell.generation.kind, c.cell.generation.path,
                                            c.cell.generation.prompt_len, c.cell.generation.batch)):
        g = c.cell.generation
        lines.append(f"| {c.cell.model} | {g.path} | {g.batch} | {g.prompt_len + g.n_out} | "
                     f"{c.cell.latency_ms:.1f} ({100 * c.cell.latency_cv:.1f}%) | {c.predicted_ms:.1f} | "
                     f"{c.compute_ms:.1f} / {c.memory_ms:.1f} / {c.overhead_ms:.1f} | {_pct(c.error)} | "
                     f"{c.cell.peak_rss_gib:.2f} / {c.predicted_rss_gib:.2f} | {_pct(c.rss_error)} | "
                     f"{'yes' if c.held_out else ''} |")
    return "\n".join(lines) + "\n"


def held_out_by_path(checked: Sequence[Checked]) -> list[str]:
    """The held-out cells' median absolute L_e2e error per path and B, each against the goal: which path misses
    and by how much."""
    groups: dict[tuple[str, int], list[float]] = {}
    for c in checked:
        if c.held_out:
            groups.setdefault((c.cell.generation.path_key, c.cell.generation.batch), []).append(abs(c.error))
    lines = ["Held out, per path and B:", "", "| path | B | cells | median absolute L_e2e error | goal |",
             "|---|---|---|---|---|"]
    for (path, batch), errors in sorted(groups.items()):
        median = statistics.median(errors)
        lines.append(f"| {path} | {batch} | {len(errors)} | {100 * median:.1f}% | "
                     + ("met" if median <= GOAL else f"missed by {100 * (median - GOAL):.1f} points") + " |")
    return lines + [""]


def draw_validation(checked: Sequence[Checked], out: Path, hardware: str) -> Path:
    """Predicted against measured L_e2e and peak RSS, log-log, identity line, a marker per path; fit cells
    hollow, held-out cells filled; and the L_e2e residual (predicted / measured - 1) against model size, on a
    linear scale where a 30% miss is as visible as it is."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    from ..fileio import atomic_write_bytes
    from .data import PALETTE

    paths = sorted({c.cell.generation.path_key for c in checked})
    markers = dict(zip(paths, "osD^v<>p"))
    colours = dict(zip(paths, PALETTE))
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 4.8))
    for ax, (what, measured, predicted) in zip(axes[:2], (
            ("L_e2e (ms)", lambda c: c.cell.latency_ms, lambda c: c.predicted_ms),
            ("peak RSS (GiB)", lambda c: c.cell.peak_rss_gib, lambda c: c.predicted_rss_gib))):
        values = [v for c in checked for v in (measured(c), predicted(c)) if v > 0 and not math.isnan(v)]
        lo, hi = min(values) / 1.5, max(values) * 1.5
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="predicted = measured")
        ax.fill_between([lo, hi], [lo * (1 - GOAL), hi * (1 - GOAL)], [lo * (1 + GOAL), hi * (1 + GOAL)],
                        color="grey", alpha=0.15, label=f"±{100 * GOAL:.0f}%")
        for path in paths:
            for held in (False, True):
                pts = [c for c in checked if c.cell.generation.path_key == path and c.held_out == held
                       and not math.isnan(measured(c))]
                if pts:
                    ax.scatter([measured(c) for c in pts], [predicted(c) for c in pts], marker=markers[path],
                               s=36, facecolors=colours[path] if held else "none", edgecolors=colours[path],
                               label=f"{path} ({'held out' if held else 'fit'})")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel=f"measured {what}",
               ylabel=f"predicted {what}", title=f"{what}: cost model against the CPU")
        ax.grid(True, which="both", alpha=0.3)
        if hi / lo < 100:  # a narrow range (the memory panel): plain numbers at round values, no crowded minor labels
            ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64) if lo <= t <= hi]
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(FixedLocator(ticks))
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_formatter(NullFormatter())
    ax = axes[2]
    sizes = sorted({c.cell.n_params for c in checked})
    for path in paths:
        for held in (False, True):
            pts = [c for c in checked if c.cell.generation.path_key == path and c.held_out == held]
            if pts:  # a small spread along x so that cells of one size do not hide one another
                offset = 1 + 0.04 * (paths.index(path) - len(paths) / 2)
                ax.scatter([c.cell.n_params * offset for c in pts], [100 * c.error for c in pts],
                           marker=markers[path], s=30, facecolors=colours[path] if held else "none",
                           edgecolors=colours[path])
    ax.axhspan(-100 * GOAL, 100 * GOAL, color="grey", alpha=0.15)
    ax.axhline(0, color="grey", lw=1)
    ax.set(xscale="log", xticks=sizes, xlabel="model parameters (fit sizes hollow, held-out filled)",
           ylabel="L_e2e residual, predicted / measured - 1 (%)", title="L_e2e residual against model size")
    ax.set_xticklabels([f"{n / 1e6:.3g} M" for n in sizes])
    ax.minorticks_off()
    ax.grid(True, alpha=0.3)
    fig.subplots_adjust(wspace=0.3)
    axes[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(f"{hardware} | fp32 | synthetic weights: timing and memory only", fontsize=8)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out, png.getvalue())
    return out
