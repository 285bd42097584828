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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..registry import AR, DIFFUSION
from ..models.architecture import Architecture, architecture_of_config
from .cost_model import Ceilings, Efficiency, Generation, Overhead, predict_latency, predict_memory
from .gemm_bounds import SOURCE, TILE_ROWS, bandwidth_shares, compute_shares

GPU_PEAKS = Path(__file__).resolve().parent.parent / "measure" / "gpu_peaks.json"
DEVICES = ("A100-SXM4-80GB", "H100", "H200")  # names in gpu_peaks.json: A100 80GB SXM, H100 SXM, H200
BF16 = 2  # bytes per parameter of the paper's precision
GIB = 1024 ** 3


@dataclass(frozen=True)
class Band:
    """A range [low, high], and for a projected figure its central estimate: the value with every factor at the
    centre of its range (not a middle of the two ends)."""

    low: float
    high: float
    central: Optional[float] = None

    def text(self, digits: int = 0) -> str:
        ends = f"[{self.low:,.{digits}f}, {self.high:,.{digits}f}]"
        return ends if self.central is None else f"{self.central:,.{digits}f} {ends}"


@dataclass(frozen=True)
class PathBounds:
    """A path's factors on a datacenter GPU, each a range, and the published measurements behind them."""

    e_f: Band  # share of the bf16 matmul peak its forwards reach
    e_b: Band  # share of the memory bandwidth
    overhead_ms: Band  # per forward call (dispatch, launch, the sampler's own work)
    basis: str


GEMM_BANDWIDTH, GEMM_COMPUTE = bandwidth_shares(), compute_shares()  # analysis.gemm_bounds: published GEMMs
E_B = Band(round(GEMM_BANDWIDTH.low, 2), round(GEMM_BANDWIDTH.high, 2))  # every path streams its weights alike
E_F_TOP = round(GEMM_COMPUTE.high, 2)  # no forward reaches more of the matmul peak than its GEMMs alone
GEMM_BASIS = (f"favourable ends of e_f and e_b from GEMMs at the forward's shapes ({SOURCE}): weight streaming at "
              f"{E_B.low:g}-{E_B.high:g} of the bandwidth over {GEMM_BANDWIDTH.shapes} memory-bound shapes of 64 and 128 "
              f"rows, at most {E_F_TOP:g} of the tensor-core peak over {GEMM_COMPUTE.shapes} compute-bound shapes of "
              "4096 rows (inner width 2048 and more); a matmul of fewer rows than a 64-row tile pays for the whole "
              "tile. ")

PUBLISHED: dict[str, PathBounds] = {
    "ar:eager": PathBounds(
        Band(0.30, E_F_TOP), E_B, Band(7.0, 12.0),
        "transformers' eager generate of a 7-8B model at batch 1 runs about 50-57 tok/s on A100 and H100 "
        "(17.5-20 ms per token) against a bf16 weight-streaming floor of 4.8 ms (H100) to 7.9 ms (A100): "
        "7-12 ms of each token is per-forward overhead at the e_b of the compiled path"),
    "ar:static_compiled": PathBounds(
        Band(0.30, E_F_TOP), E_B, Band(0.0, 0.3),
        "gpt-fast's compiled static-cache decode of Llama-3-8B: 94 tok/s on an A100-80GB at 330 W, 1.41 TB/s "
        "achieved of 2.04 (e_b 0.69, inside the GEMMs' range); optimised engines at 100-110 tok/s on H100 against a "
        "223 tok/s bf16 roofline (0.45-0.49 with their overheads); CUDA graphs leave well under 0.3 ms per step"),
    "diffusion:none": PathBounds(
        Band(0.25, E_F_TOP), E_B, Band(0.0, 5.0),
        "Fast-dLLM's vanilla LLaDA-8B-Instruct on an A100-80GB, gen length 256, one token per step: 6.7 tok/s, "
        "about 149 ms per whole-canvas forward, 0.26-0.40 of the bf16 peak for 5-shot GSM8K prompts of 600-1000 "
        "tokens (the prompt length is not given in the source): e_f's unfavourable end"),
    "diffusion:dual": PathBounds(
        Band(0.25, E_F_TOP), E_B, Band(0.0, 5.0),
        "as the uncached sampler (the same forwards, fewer positions after each block's first step); "
        "Fast-dLLM's dual cache with parallel decoding reaches 54.4 tok/s on the same A100 setting (8.1x)"),
}

# the pairings a K* is computed for: (name, LLaMA's path, LLaDA's path)
PAIRINGS = (("as published", "ar:eager", "diffusion:none"), ("both at their best", "ar:static_compiled",
                                                              "diffusion:dual"))


def device_ceilings(name: str) -> Ceilings:
    """A GPU's datasheet bf16 dense TFLOP/s and TB/s (measure/gpu_peaks.json), its matmuls computed in tiles of
    TILE_ROWS rows (a forward of fewer rows pays for a whole tile)."""
    for entry in json.loads(GPU_PEAKS.read_text())["peaks"]:
        if entry["name"] == name:
            return Ceilings(name, entry["tflops"], entry["tbps"], f"datasheet: {name}", tile_rows=TILE_ROWS)
    raise KeyError(f"{name}: not in {GPU_PEAKS.name}")


FACTORS = ("e_f", "e_b", "c")  # a path's factors on a GPU: shares of the two peaks, and the per-forward overhead
FAVOURABLE, CENTRAL, UNFAVOURABLE = "favourable", "central", "unfavourable"  # where in its range a factor sits


def factor_value(path: str, factor: str, where: str) -> float:
    """One factor of a path at the favourable (fast) end of its published range, the unfavourable end, or its
    centre (the middle of the range)."""
    b = PUBLISHED[path]
    band = {"e_f": b.e_f, "e_b": b.e_b, "c": b.overhead_ms}[factor]
    if where == CENTRAL:
        return (band.low + band.high) / 2
    high_is_fast = factor != "c"  # higher shares of the peaks are faster; a higher overhead is slower
    return band.high if (where == FAVOURABLE) == high_is_fast else band.low


def efficiency_of(path: str, where: dict[str, str]) -> Efficiency:
    """A path's Efficiency with each factor where `where` puts it (a factor it does not name: central)."""
    e_f, e_b, c = (factor_value(path, f, where.get(f, CENTRAL)) for f in FACTORS)
    return Efficiency(e_f, e_b, {path: Overhead(c, 0.0)})


def efficiency_at(path: str, favourable: bool) -> Efficiency:
    """The path's factors at the favourable (fast) or unfavourable end of their published ranges."""
    return efficiency_of(path, dict.fromkeys(FACTORS, FAVOURABLE if favourable else UNFAVOURABLE))


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
    return Band(fast, slow, predict_latency(gen, arch, BF16, device, efficiency_of(path, {})).latency_ms)


def k_star(ar: str, diffusion: str, llama: Architecture, llada: Architecture, device: Ceilings, batch: int,
           seq_len: int, block_length: int, ar_eff: Efficiency, diffusion_eff: Efficiency) -> float:
    """The diffusion steps at which LLaDA's projected L_e2e equals LLaMA's, for given factors. L(K) is linear in K
    (a whole-canvas forward per step without a cache; with one, a whole-canvas forward per block and a cheaper
    one for each further step), so K* comes from L at one and two steps per block."""
    n_blocks = (seq_len - seq_len // 2) // block_length
    target = predict_latency(_generation(ar, batch, seq_len, None, block_length), llama, BF16, device,
                             ar_eff).latency_ms
    at = [predict_latency(_generation(diffusion, batch, seq_len, k, block_length), llada, BF16, device,
                          diffusion_eff).latency_ms for k in (n_blocks, 2 * n_blocks)]
    return n_blocks + (target - at[0]) / ((at[1] - at[0]) / n_blocks)


@dataclass(frozen=True)
class BreakEven:
    """A K* band (every factor at its unfavourable end for LLaDA and favourable for LLaMA, then the reverse) and
    its central estimate (every factor at the centre of its range): not a middle of the two ends."""

    low: float
    high: float
    central: float

    def outcome(self, n_blocks: int, n_out: int) -> str:
        """NONE when even the band's high end is below one step per block (LLaDA's cheapest generation is
        slower at every K); UNDETERMINED when the band spans every K the sampler can take, from one step per
        block to one step per token (no value of K* is projected); else INSIDE."""
        if self.high < n_blocks:
            return NONE
        if self.low <= n_blocks and self.high >= n_out:
            return UNDETERMINED
        return INSIDE


NONE, UNDETERMINED, INSIDE = "none", "undetermined", "inside"  # what a K* band says (BreakEven.outcome)


def break_even_steps(ar: str, diffusion: str, llama: Architecture, llada: Architecture, device: Ceilings,
                     batch: int, seq_len: int, block_length: int = 32) -> BreakEven:
    """K*: its band (the low end pairs LLaMA at its fastest with LLaDA at its slowest, the high end the reverse)
    and its central estimate."""
    args = (ar, diffusion, llama, llada, device, batch, seq_len, block_length)
    low = k_star(*args, efficiency_at(ar, True), efficiency_at(diffusion, False))
    high = k_star(*args, efficiency_at(ar, False), efficiency_at(diffusion, True))
    return BreakEven(low, high, k_star(*args, efficiency_of(ar, {}), efficiency_of(diffusion, {})))


@dataclass(frozen=True)
class Swing:
    """How far one factor moves K* with every other factor central: K* at the factor's two ends."""

    path: str
    factor: str
    at_favourable: float  # the factor at the end that favours its own side
    at_unfavourable: float

    @property
    def size(self) -> float:
        return abs(self.at_favourable - self.at_unfavourable)


def sensitivity(ar: str, diffusion: str, llama: Architecture, llada: Architecture, device: Ceilings, batch: int,
                seq_len: int, block_length: int = 32) -> list[Swing]:
    """K* at each factor's two ends with the others central, largest swing first: which published measurement
    on a GPU would settle the answer."""
    args = (ar, diffusion, llama, llada, device, batch, seq_len, block_length)
    out = []
    for path in (ar, diffusion):
        for factor in FACTORS:
            ends = []
            for where in (FAVOURABLE, UNFAVOURABLE):
                moved = efficiency_of(path, {factor: where})
                ends.append(k_star(*args, moved if path == ar else efficiency_of(ar, {}),
                                   moved if path == diffusion else efficiency_of(diffusion, {})))
            out.append(Swing(path, factor, *ends))
    return sorted(out, key=lambda s: -s.size)


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
    break_even: dict[tuple, BreakEven]  # (device, pairing name, N, B) -> K*


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
            "block_length": p.grid.block_length,
            "bounds": {k: {"e_f": [v.e_f.low, v.e_f.high], "e_b": [v.e_b.low, v.e_b.high],
                           "overhead_ms": [v.overhead_ms.low, v.overhead_ms.high], "basis": v.basis}
                       for k, v in PUBLISHED.items()},
            "gemm_bounds": GEMM_BASIS.strip(), "tile_rows": TILE_ROWS,
            "latency_ms": [{"device": d, "path": path, "seq_len": n, "batch_size": b, "steps": k,
                            "projected_low": v.low, "projected_high": v.high, "projected_central": v.central}
                           for (d, path, n, b, k), v in p.latency.items()],
            "break_even_steps": [{"device": d, "pairing": name, "seq_len": n, "batch_size": b,
                                  "projected_low": v.low, "projected_high": v.high, "projected_central": v.central}
                                 for (d, name, n, b), v in p.break_even.items()]}


def k_star_text(be: BreakEven, n_out: int, n_blocks: int) -> str:
    """K* as a table prints it: the central estimate and the band's two ends (as shares of N_out); `none` when even
    the band's high end is below one step per block (LLaDA's cheapest generation is slower); `undetermined` when
    the band runs from below one step per block to above one step per token."""
    def k(value: float) -> str:
        return f"<{n_blocks}" if value < n_blocks else f"{value:.0f}"

    ends = f"[{k(be.low)}, {k(be.high)}]"
    outcome = be.outcome(n_blocks, n_out)
    if outcome == NONE:
        return f"none: even K = {n_blocks} is slower {ends}"
    if outcome == UNDETERMINED:
        return f"undetermined {ends}"
    central = k(be.central) + (f" ({be.central / n_out:.2f} N_out)" if be.central >= n_blocks else "")
    return f"{central} {ends} ({max(be.low, n_blocks) / n_out:.2f}–{be.high / n_out:.2f} N_out)"


def k_star_share_text(be: BreakEven, n_out: int, n_blocks: int) -> str:
    """K* in the paper's short form, as shares of N_out: `central [low, high]`, a value under one step per block
    written as `<` that floor; `none` and `undetermined` as in `k_star_text`."""
    floor = n_blocks / n_out

    def share(value: float) -> str:
        return f"<{floor:.2f}" if value < n_blocks else f"{value / n_out:.2f}"

    outcome = be.outcome(n_blocks, n_out)
    return outcome if outcome != INSIDE else f"{share(be.central)} [{share(be.low)}, {share(be.high)}]"


def markdown(p: Projection, validation: Optional[dict], measured: list[str], latency_table: bool = True) -> str:
    """The projection's tables: K* per device, N and B for both pairings; L_e2e on the H100, the sources of the
    factors' bounds and the sensitivity tables (unless `latency_table` is false, as in the paper, which links
    them); memory against the LLaDA paper's; GPU rows beside their projections when there are any."""
    g = p.grid
    lines = ["Every number in this section is **projected** by the cost model (`src/dlm_bench/analysis/cost_model.py`), "
             "not measured: a central estimate (every factor at the centre of the range that published "
             "measurements bound, below) and, in brackets, its band (every factor at the two ends of its range). "
             "Where a K\* band runs from below one step per block to above one step per token it is "
             "undetermined, and no value is given. Datasheet peaks, bf16 dense: "
             + "; ".join(f"{d} {device_ceilings(d).tflops:g} TFLOP/s, {device_ceilings(d).tbps:g} TB/s" for d in DEVICES)
             + ". LLaMA-3-8B and LLaDA-8B architectures from `config/architectures/`, prompt = output = N/2, "
             f"block length {g.block_length}."]
    if validation:
        s = validation["summary"]
        lines.append(f"The model's form was validated on a 2-core CPU across four sizes (3.3 M to 325 M parameters; "
                     f"`results/cost_validation.md`): median absolute L_e2e error on the held-out sizes "
                     f"{100 * s['latency_median_abs_error']:.1f}%, worst {100 * s['latency_worst_abs_error']:.1f}% "
                     f"({s['worst_cell']}); its GPU factors are bounded, not fitted.")
    lines += ["", "Bounds on the factors, per path" + ("" if latency_table else " (the measurements that bound them: "
              "`results/projection/projection.md`)") + ":", "",
              "| path | e_f | e_b | c per forward, ms |" + (" bounded by |" if latency_table else ""),
              "|---|---|---|---|" + ("---|" if latency_table else "")]
    for path, b in PUBLISHED.items():
        lines.append(f"| {path} | {b.e_f.low:g}-{b.e_f.high:g} | {b.e_b.low:g}-{b.e_b.high:g} | "
                     f"{b.overhead_ms.low:g}-{b.overhead_ms.high:g} |" + (f" {b.basis} |" if latency_table else ""))
    if latency_table:
        lines += ["", "Where the ends come from: the " + GEMM_BASIS + "The unfavourable ends of e_f and every overhead "
                  "come from end-to-end measurements of whole generations (the last column): a forward also runs "
                  "attention, norms and the sampler, which its GEMMs do not."]
    lines += ["", "**Projected break-even steps K\\*** (LLaDA's L_e2e equals LLaMA's; diffusion wins at equal quality "
              "only if the steps it needs, S_parity, are fewer; " + ("in brackets K\\* as a share of N_out):"
                                                                    if latency_table else
                                                                    "K\\* / N_out, central [band]; none: slower even "
                                                                    "at one step per block):"), ""]
    cell_text = k_star_text if latency_table else k_star_share_text
    for name, ar, diffusion in PAIRINGS:
        lines += [f"*{name}* ({ar} against {diffusion}):", "",
                  "| device | N | " + " | ".join(f"B = {b}" for b in g.batch_sizes) + " |",
                  "|---|---|" + "---|" * len(g.batch_sizes)]
        for d in DEVICES:
            for n in g.seq_lens:
                n_out = n - n // 2
                lines.append(f"| {d} | {n} | " + " | ".join(
                    cell_text(p.break_even[(d, name, n, b)], n_out, n_out // g.block_length)
                    for b in g.batch_sizes) + " |")
        lines.append("")
    lines += sensitivity_markdown(g, tables=latency_table)
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


def sensitivity_markdown(g: Grid, batch: int = 1, tables: bool = True) -> list[str]:
    """What moves K* most: per device, both sides at their best at B = `batch`, K* at each factor's two ends with
    every other factor central, per N; the factor with the largest swing named (`tables` false, as in the paper:
    the widest swings only, the tables linked)."""
    name, ar, diffusion = PAIRINGS[1]
    lines = [f"**What moves K\* most** ({name}, B = {batch}): K\* with one factor at each end of its range "
             "(first the end that favours its own side) and every other factor central; the factor with the "
             "widest swing is the published measurement on a GPU that would settle the answer.", ""]
    for d in DEVICES:
        device = device_ceilings(d)
        swings = {n: sensitivity(ar, diffusion, g.llama, g.llada, device, batch, n, g.block_length)
                  for n in g.seq_lens}
        top = {n: swings[n][0] for n in g.seq_lens}
        widest = "; ".join(f"N = {n}: {s.path} {s.factor} ({s.size:.0f} steps)" for n, s in top.items())
        if not tables:
            lines.append(f"- *{d}*, widest swing: {widest}.")
            continue
        lines += [f"*{d}*:", "", "| factor | " + " | ".join(f"N = {n}" for n in g.seq_lens) + " |",
                  "|---|" + "---|" * len(g.seq_lens)]
        for path in (ar, diffusion):
            for factor in FACTORS:
                cells = []
                for n in g.seq_lens:
                    s = next(x for x in swings[n] if x.path == path and x.factor == factor)
                    cells.append(f"{s.at_favourable:.0f} / {s.at_unfavourable:.0f}")
                lines.append(f"| {path} {factor} | " + " | ".join(cells) + " |")
        lines += ["", f"Widest swing: {widest}.", ""]
    if not tables:
        lines += ["", "Each factor at both ends, per device and N: `results/projection/projection.md`.", ""]
    return lines


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


def draw_break_even(p: Projection, out: Path) -> Path:
    """K* / N_out against B, one panel per device: for each N the central estimate of both sides at their best
    with its band (drawn once), and the as-published pairing's central estimate dashed; per N the floor of one
    step per block, and one step per token (K = N_out, LLaDA's recommended setting)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio import atomic_write_bytes
    from .data import PALETTE

    g = p.grid
    best, published = PAIRINGS[1][0], PAIRINGS[0][0]
    fig, axes = plt.subplots(1, len(DEVICES), figsize=(4.4 * len(DEVICES), 4.4), sharey=True)
    for ax, d in zip(axes, DEVICES):
        for colour, n in zip(PALETTE, g.seq_lens):
            n_out = n - n // 2
            floor = (n_out // g.block_length) / n_out
            ks = [p.break_even[(d, best, n, b)] for b in g.batch_sizes]
            ax.fill_between(g.batch_sizes, [max(k.low / n_out, floor / 4) for k in ks],
                            [max(k.high / n_out, floor / 4) for k in ks], color=colour, alpha=0.15, lw=0)
            ax.plot(g.batch_sizes, [max(k.central / n_out, floor / 4) for k in ks], "-", color=colour, marker="o",
                    ms=3, label=f"N = {n}, {best}")
            ax.plot(g.batch_sizes, [max(p.break_even[(d, published, n, b)].central / n_out, floor / 4)
                                    for b in g.batch_sizes], "--", color=colour, lw=0.9, label=f"N = {n}, {published}")
            ax.axhline(floor, color=colour, lw=0.7, ls=":")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.text(g.batch_sizes[-1], 1.06, "K = N_out: one token per step", fontsize=6, ha="right")
        ax.set(xscale="log", yscale="log", xticks=g.batch_sizes, xlabel="batch size B", title=d)
        ax.set_xticklabels([str(b) for b in g.batch_sizes])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("projected K* / N_out (break-even steps per output token)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.13))
    fig.suptitle("PROJECTED (cost model, published bounds): LLaDA-8B vs LLaMA-3-8B, bf16. Lines: central estimate; "
                 "shaded: band; dotted: one step per block (below it no K wins, values below it drawn at a quarter "
                 "of it); diffusion is faster only below its line", fontsize=7.5)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out, png.getvalue())
    return out
