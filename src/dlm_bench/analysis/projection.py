"""The paper's grid projected onto datacenter GPUs with the cost model (torch-free). Projections, not
measurements: every number here is "projected", carries a band, and names what bounds it.

The form of the model (roofline per forward plus a per-forward overhead, `analysis.cost_model`) is
the one validated on the CPU across model sizes (`scripts/validate_cost_model.py`). Its factors on a
GPU are not fitted here (no GPU has been measured): each path's e_f, e_b and overhead c are ranges
bounded by published measurements (`PUBLISHED`), and a cell's band runs from all factors at their
favourable ends to all at their unfavourable ends.

The break-even step count K* of a pair of paths at (device, N, B) is the number of denoising steps
at which LLaDA's projected L_e2e equals LLaMA's; diffusion can win at equal quality only where the
steps it needs for that quality (S_parity) are fewer than K*.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..registry import AR, DIFFUSION
from ..models.architecture import Architecture, architecture_of_config
from .cost_model import Ceilings, Efficiency, Generation, Overhead, predict_latency, predict_memory

GPU_PEAKS = Path(__file__).resolve().parent.parent / "measure" / "gpu_peaks.json"
DEVICES = ("A100-SXM4-80GB", "H100", "H200")  # names in gpu_peaks.json: A100 80GB SXM, H100 SXM, H200
BF16 = 2  # bytes per parameter of the paper's precision
GIB = 1024 ** 3


@dataclass(frozen=True)
class Band:
    """A range [low, high] and its geometric middle (what a table prints beside the range)."""

    low: float
    high: float

    @property
    def mid(self) -> float:
        return math.sqrt(self.low * self.high) if self.low > 0 and self.high > 0 else (self.low + self.high) / 2

    def text(self, digits: int = 0) -> str:
        return f"{self.mid:,.{digits}f} [{self.low:,.{digits}f}, {self.high:,.{digits}f}]"


@dataclass(frozen=True)
class PathBounds:
    """A path's factors on a datacenter GPU, each a range, and the published measurements behind them."""

    e_f: Band  # share of the bf16 matmul peak its forwards reach
    e_b: Band  # share of the memory bandwidth
    overhead_ms: Band  # per forward call (dispatch, launch, the sampler's own work)
    basis: str


PUBLISHED: dict[str, PathBounds] = {
    "ar:eager": PathBounds(
        Band(0.30, 0.60), Band(0.45, 0.75), Band(7.0, 12.0),
        "transformers' eager generate of a 7-8B model at batch 1 runs about 50-57 tok/s on A100 and H100 "
        "(17.5-20 ms per token) against a bf16 weight-streaming floor of 4.8 ms (H100) to 7.9 ms (A100): "
        "7-12 ms of each token is per-forward overhead at the e_b of the compiled path"),
    "ar:static_compiled": PathBounds(
        Band(0.30, 0.60), Band(0.45, 0.75), Band(0.0, 0.3),
        "gpt-fast's compiled static-cache decode of Llama-3-8B: 94 tok/s on an A100-80GB at 330 W, 1.41 TB/s "
        "achieved of 2.04 (e_b 0.69); optimised engines at 100-110 tok/s on H100 against a 223 tok/s bf16 "
        "roofline (0.45-0.49 with their overheads); CUDA graphs leave well under 0.3 ms per step"),
    "diffusion:none": PathBounds(
        Band(0.25, 0.60), Band(0.45, 0.75), Band(0.0, 5.0),
        "Fast-dLLM's vanilla LLaDA-8B-Instruct on an A100-80GB, gen length 256, one token per step: 6.7 tok/s, "
        "about 149 ms per whole-canvas forward, 0.26-0.40 of the bf16 peak for 5-shot GSM8K prompts of 600-1000 "
        "tokens (the prompt length is not given in the source); at most 0.6, three quarters of the 0.81 a bf16 "
        "matmul reached on an H100 (REFERENCE: 798 of 989 TFLOP/s)"),
    "diffusion:dual": PathBounds(
        Band(0.25, 0.60), Band(0.45, 0.75), Band(0.0, 5.0),
        "as the uncached sampler (the same forwards, fewer positions after each block's first step); "
        "Fast-dLLM's dual cache with parallel decoding reaches 54.4 tok/s on the same A100 setting (8.1x)"),
}

# the pairings a K* is computed for: (name, LLaMA's path, LLaDA's path)
PAIRINGS = (("as published", "ar:eager", "diffusion:none"), ("both at their best", "ar:static_compiled",
                                                              "diffusion:dual"))


def device_ceilings(name: str) -> Ceilings:
    """A GPU's datasheet bf16 dense TFLOP/s and TB/s (measure/gpu_peaks.json)."""
    for entry in json.loads(GPU_PEAKS.read_text())["peaks"]:
        if entry["name"] == name:
            return Ceilings(name, entry["tflops"], entry["tbps"], f"datasheet: {name}")
    raise KeyError(f"{name}: not in {GPU_PEAKS.name}")


def efficiency_at(path: str, favourable: bool) -> Efficiency:
    """The path's factors at the favourable (fast) or unfavourable end of their published ranges."""
    b = PUBLISHED[path]
    pick = (lambda band: band.high) if favourable else (lambda band: band.low)
    c = b.overhead_ms.low if favourable else b.overhead_ms.high
    return Efficiency(pick(b.e_f), pick(b.e_b), {path: Overhead(c, 0.0)})


def _generation(path: str, batch: int, seq_len: int, steps: Optional[int], block_length: int) -> Generation:
    kind, name = path.split(":")
    if kind == "ar":
        return Generation(AR, name, batch, seq_len // 2, seq_len - seq_len // 2)
    return Generation(DIFFUSION, name, batch, seq_len // 2, seq_len - seq_len // 2, steps, block_length)


def projected_latency_ms(path: str, arch: Architecture, device: Ceilings, batch: int, seq_len: int,
                         steps: Optional[int] = None, block_length: int = 32) -> Band:
    """The projected L_e2e band of one cell, ms."""
    gen = _generation(path, batch, seq_len, steps, block_length)
    fast, slow = (predict_latency(gen, arch, BF16, device, efficiency_at(path, f)).latency_ms for f in (True, False))
    return Band(fast, slow)


def projected_memory_gib(path: str, arch: Architecture, batch: int, seq_len: int, steps: Optional[int] = None,
                         block_length: int = 32) -> float:
    """Weights, KV cache and the largest transient of one cell, GiB (no process base: a GPU's allocator
    counts tensors only)."""
    return predict_memory(_generation(path, batch, seq_len, steps, block_length), arch, BF16, 0.0).total / GIB


def break_even_steps(ar: str, diffusion: str, llama: Architecture, llada: Architecture, device: Ceilings,
                     batch: int, seq_len: int, block_length: int = 32) -> Band:
    """K* band: the diffusion steps at which LLaDA's projected L_e2e equals LLaMA's. L(K) is linear in K
    (a whole-canvas forward per step without a cache; with one, a whole-canvas forward per block and a
    cheaper one for each further step), so K* comes from L at one and two steps per block. The low end
    pairs LLaMA at its fastest with LLaDA at its slowest; the high end the reverse."""
    n_blocks = (seq_len - seq_len // 2) // block_length
    ends = []
    for ar_fast, diff_fast in ((True, False), (False, True)):
        target = predict_latency(_generation(ar, batch, seq_len, None, block_length), llama, BF16, device,
                                 efficiency_at(ar, ar_fast)).latency_ms
        at = [predict_latency(_generation(diffusion, batch, seq_len, k, block_length), llada, BF16, device,
                              efficiency_at(diffusion, diff_fast)).latency_ms for k in (n_blocks, 2 * n_blocks)]
        slope = (at[1] - at[0]) / n_blocks
        ends.append(n_blocks + (target - at[0]) / slope)
    return Band(*ends)


@dataclass(frozen=True)
class Grid:
    """The paper's grid and its two architectures (from config/experiments.yaml and config/architectures)."""

    batch_sizes: list[int]
    seq_lens: list[int]
    steps: list[int]
    block_length: int
    llama: Architecture
    llada: Architecture


def paper_grid(root: Path) -> Grid:
    from ..config import load_experiment

    exp = load_experiment(root / "config" / "experiments.yaml", base_dir=root)
    archs = {f: architecture_of_config(json.loads((root / "config" / "architectures" / f"{f}.json").read_text()))
             for f in ("llama3_8b", "llada_8b")}
    return Grid(list(exp.grid.batch_size), list(exp.grid.seq_len), list(exp.grid.steps), exp.diffusion.block_length,
                archs["llama3_8b"], archs["llada_8b"])


# --------------------------------------------------------------------------- the report

# LLaDA paper (arXiv 2502.09992, appendix B.7): A100-80GB, bf16, batch 1, peak memory in GB
PUBLISHED_MEMORY = {(512, 512): (17.03, 16.32), (1024, 1024): (18.01, 16.41), (1024, 2048): (19.02, 16.74)}


@dataclass(frozen=True)
class Projection:
    """Every projected figure of the grid, by device: L_e2e bands per path and cell, K* bands per pairing."""

    grid: Grid
    latency: dict[tuple, Band]  # (device, path, N, B, K or None) -> ms
    break_even: dict[tuple, Band]  # (device, pairing name, N, B) -> K*


def project(grid: Grid) -> Projection:
    latency, k_star = {}, {}
    for device_name in DEVICES:
        device = device_ceilings(device_name)
        for n in grid.seq_lens:
            for b in grid.batch_sizes:
                for path in ("ar:eager", "ar:static_compiled"):
                    latency[(device_name, path, n, b, None)] = projected_latency_ms(path, grid.llama, device, b, n)
                for path in ("diffusion:none", "diffusion:dual"):
                    for k in grid.steps:
                        latency[(device_name, path, n, b, k)] = projected_latency_ms(path, grid.llada, device, b, n, k,
                                                                                    grid.block_length)
                for name, ar, diffusion in PAIRINGS:
                    k_star[(device_name, name, n, b)] = break_even_steps(ar, diffusion, grid.llama, grid.llada, device,
                                                                         b, n, grid.block_length)
    return Projection(grid, latency, k_star)


def to_json(p: Projection) -> dict:
    return {"note": "PROJECTED by the cost model with published bounds on its factors; not measured",
            "bounds": {k: {"e_f": [v.e_f.low, v.e_f.high], "e_b": [v.e_b.low, v.e_b.high],
                           "overhead_ms": [v.overhead_ms.low, v.overhead_ms.high], "basis": v.basis}
                       for k, v in PUBLISHED.items()},
            "latency_ms": [{"device": d, "path": path, "seq_len": n, "batch_size": b, "steps": k,
                            "projected_low": v.low, "projected_high": v.high}
                           for (d, path, n, b, k), v in p.latency.items()],
            "break_even_steps": [{"device": d, "pairing": name, "seq_len": n, "batch_size": b,
                                  "projected_low": v.low, "projected_high": v.high}
                                 for (d, name, n, b), v in p.break_even.items()]}


def clipped(band: Band, n_blocks: int) -> Band:
    """A K* band with both ends raised to one step per block (`n_blocks`, the fewest steps the sampler takes):
    below it no K exists; the table and the figure print this band's middle."""
    return Band(max(band.low, n_blocks), max(band.high, n_blocks))


def _k_star_text(band: Band, n_out: int, n_blocks: int) -> str:
    """K* with its band; when even its high end is below one step per block no K wins: even the cheapest
    generation LLaDA can make is slower than LLaMA's."""
    if band.high < n_blocks:
        return f"none (even K = {n_blocks} is slower)"
    low = f"<{n_blocks}" if band.low < n_blocks else f"{band.low:.0f}"
    mid = clipped(band, n_blocks).mid
    return f"{mid:.0f} [{low}, {band.high:.0f}] ({mid / n_out:.2f} N_out)"


def markdown(p: Projection, validation: Optional[dict], measured: list[str], latency_table: bool = True) -> str:
    """The projection's tables: K* per device, N and B for both pairings; L_e2e on the H100 (unless
    `latency_table` is false, as in the paper, which links it); memory against the LLaDA paper's; GPU rows
    beside their projections when there are any."""
    g = p.grid
    lines = ["Every number in this section is **projected** by the cost model (`src/dlm_bench/analysis/cost_model.py`), "
             "not measured: a middle value and, in brackets, its band, from each path's factors at the two ends "
             "of the ranges that published measurements bound (below). Datasheet peaks, bf16 dense: "
             + "; ".join(f"{d} {device_ceilings(d).tflops:g} TFLOP/s, {device_ceilings(d).tbps:g} TB/s" for d in DEVICES)
             + ". LLaMA-3-8B and LLaDA-8B architectures from `config/architectures/`, prompt = output = N/2, "
             f"block length {g.block_length}."]
    if validation:
        s = validation["summary"]
        lines.append(f"The model's form was validated on a 2-core CPU across four sizes (3.3 M to 325 M parameters; "
                     f"`results/cost_validation.md`): median absolute L_e2e error on the held-out sizes "
                     f"{100 * s['latency_median_abs_error']:.1f}%, worst {100 * s['latency_worst_abs_error']:.1f}% "
                     f"({s['worst_cell']}); its GPU factors are bounded, not fitted.")
    lines += ["", "Bounds on the factors, per path:", "", "| path | e_f | e_b | c per forward, ms | bounded by |",
              "|---|---|---|---|---|"]
    for path, b in PUBLISHED.items():
        lines.append(f"| {path} | {b.e_f.low:g}-{b.e_f.high:g} | {b.e_b.low:g}-{b.e_b.high:g} | "
                     f"{b.overhead_ms.low:g}-{b.overhead_ms.high:g} | {b.basis} |")
    lines += ["", "**Projected break-even steps K\\*** (LLaDA's L_e2e equals LLaMA's; diffusion wins at equal quality "
              "only if the steps it needs, S_parity, are fewer; in brackets K\\* as a share of N_out):", ""]
    for name, ar, diffusion in PAIRINGS:
        lines += [f"*{name}* ({ar} against {diffusion}):", "",
                  "| device | N | " + " | ".join(f"B = {b}" for b in g.batch_sizes) + " |",
                  "|---|---|" + "---|" * len(g.batch_sizes)]
        for d in DEVICES:
            for n in g.seq_lens:
                n_out = n - n // 2
                lines.append(f"| {d} | {n} | " + " | ".join(
                    _k_star_text(p.break_even[(d, name, n, b)], n_out, n_out // g.block_length)
                    for b in g.batch_sizes) + " |")
        lines.append("")
    device = "H100"
    if latency_table:
        lines += [f"**Projected L_e2e on the {device}, ms** (LLaDA at each K of the grid):", "",
                  "| N | B | LLaMA eager | LLaMA compiled | " + " | ".join(
                      f"LLaDA K={k} {c}" for c in ("none", "dual") for k in g.steps) + " |",
                  "|---|---|---|---|" + "---|" * (2 * len(g.steps))]
        for n in g.seq_lens:
            for b in g.batch_sizes:
                cells = [p.latency[(device, "ar:eager", n, b, None)],
                         p.latency[(device, "ar:static_compiled", n, b, None)]]
                cells += [p.latency[(device, f"diffusion:{c}", n, b, k)] for c in ("none", "dual") for k in g.steps]
                lines.append(f"| {n} | {b} | " + " | ".join(c.text() for c in cells) + " |")
        lines.append("")
    else:
        lines += [f"Projected L_e2e of every path on the {device} at every B, N and K, with its band: "
                  "`results/projection/projection.md`; every device's numbers: `results/projection/projection.json`.",
                  ""]
    lines += ["**Peak memory, GB (10^9 bytes), batch 1**: the LLaDA paper's A100 measurements (its reference "
              "sampler, logits over the whole canvas) beside this harness's projected weights + KV cache + largest "
              "transient (logits of the current block only):", "",
              "| prompt + output | LLaDA published | LLaDA projected (no cache) | LLaMA-3 published (KV cache) | "
              "LLaMA-3 projected (static) |", "|---|---|---|---|---|"]
    for (prompt, out), (llada_pub, llama_pub) in PUBLISHED_MEMORY.items():
        n = prompt + out
        llada = _bytes_gb(predict_memory(Generation(DIFFUSION, "none", 1, prompt, out, out, g.block_length),
                                         g.llada, BF16, 0.0).total)
        llama = _bytes_gb(predict_memory(Generation(AR, "static", 1, prompt, out), g.llama, BF16, 0.0).total)
        lines.append(f"| {prompt} + {out} | {llada_pub:.2f} | {llada:.2f} (projected) | {llama_pub:.2f} | "
                     f"{llama:.2f} (projected) |")
    if measured:
        lines += ["", "**Measured GPU rows beside their projections:**", ""] + measured
    return "\n".join(lines) + "\n"


def _bytes_gb(nbytes: float) -> float:
    return nbytes / 1e9


def measured_beside_projected(rows, grid: Grid) -> list[str]:
    """Markdown rows for every ok GPU row of a results folder on one of DEVICES: measured L_e2e and the
    projected band of the same cell (empty when no such row exists)."""
    out = []
    ok = rows[rows["status"] == "ok"] if len(rows) else rows
    for _, r in ok.iterrows():
        device = next((d for d in DEVICES if d.lower() in str(r["hardware"]).lower()), None)
        if device is None:
            continue
        diffusion = r["kind"] == DIFFUSION
        path = f"diffusion:{r['cache']}" if diffusion else f"ar:{r['decode']}"
        if path not in PUBLISHED:
            continue
        band = projected_latency_ms(path, grid.llada if diffusion else grid.llama, device_ceilings(device),
                                    int(r["batch_size"]), int(r["seq_len"]), int(r["steps"]) if diffusion else None,
                                    grid.block_length)
        inside = "inside" if band.low <= r["latency_ms_median"] <= band.high else "outside"
        out.append(f"| {r['hardware']} | {path} | B={int(r['batch_size'])} N={int(r['seq_len'])}"
                   f"{' K=' + str(int(r['steps'])) if diffusion else ''} | measured {r['latency_ms_median']:,.0f} ms | "
                   f"projected {band.text()} ms | {inside} the band |")
    if out:
        out = ["| hardware | path | cell | measured | projected | |", "|---|---|---|---|---|---|"] + out
    return out


def draw_break_even(p: Projection, out: Path, parity_marks: list[tuple[float, str]]) -> Path:
    """K* / N_out against B, one panel per N, a line per device and pairing with its band; horizontal
    lines for measured or published step counts at equal quality (as shares of N_out)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio import atomic_write_bytes
    from .data import PALETTE

    g = p.grid
    fig, axes = plt.subplots(1, len(g.seq_lens), figsize=(4.2 * len(g.seq_lens), 4.2), sharey=True)
    for ax, n in zip(axes, g.seq_lens):
        n_out = n - n // 2
        n_blocks = n_out // g.block_length
        floor = n_blocks / n_out  # one step per block: the fewest steps the sampler takes
        for colour, d in zip(PALETTE, DEVICES):
            for (name, _, _), style in zip(PAIRINGS, ("--", "-")):
                bands = [clipped(p.break_even[(d, name, n, b)], n_blocks) for b in g.batch_sizes]
                ax.plot(g.batch_sizes, [x.mid / n_out for x in bands], style, color=colour, marker="o", ms=3,
                        label=f"{d}, {name}")
                ax.fill_between(g.batch_sizes, [x.low / n_out for x in bands], [x.high / n_out for x in bands],
                                color=colour, alpha=0.10 if style == "-" else 0.05)
        ax.axhline(floor, color="grey", lw=0.8)
        ax.text(g.batch_sizes[-1], floor * 1.08, "one step per block: below it no K wins", fontsize=6, ha="right")
        for value, text in parity_marks:
            ax.axhline(value, color="black", lw=0.8, ls=":")
            ax.text(g.batch_sizes[-1], value * 1.05, text, fontsize=5.5, ha="right")
        ax.set(xscale="log", yscale="log", xticks=g.batch_sizes, xlabel="batch size B",
               title=f"N = {n} (N_out = {n_out})")
        ax.set_xticklabels([str(b) for b in g.batch_sizes])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("projected K* / N_out (break-even steps per output token)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.1))
    fig.suptitle("PROJECTED (cost model, published bounds; bands shaded): LLaDA-8B vs LLaMA-3-8B, bf16 — diffusion "
                 "is faster only below the line", fontsize=8)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out, png.getvalue())
    return out
