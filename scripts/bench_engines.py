"""The torch AR decode against llama.cpp on the same weights, per token at B = 1, as interleaved pairs.

    python scripts/bench_engines.py --config config/experiments_austen.yaml --seq_len 128 \\
        --output results/bench_engines_cpu.md --record results/raw_data/cpu_austen_trained/benchmarks.json

The config's AR model at N (prompt N/2 tokens, N/2 generated), B = 1: its torch `--decode` cell and its
llama-server cell at the sweep's precision (f32 for fp32), built from the config's grid as the pairs
step builds them (pairs.ArmMaker), are timed as `--pairs` interleaved pairs (order drawn per pair, an
idle gap before every run, both on the config's `cpu_threads`). Target: torch / llama.cpp latency for
the same N_out, i.e. per token, below 2 (the median of the per-pair ratios with its bootstrap 95% CI;
met only when the whole CI is below). Per arm, its median inter-token latency is split into weight
streaming (the roofline's minimum bytes per decode step / the read bandwidth measured here) and the
rest (dispatch, kernels below the bandwidth, sampling).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from dlm_bench.config import PRECISIONS, ConfigError, expand_cells, load_experiment
from dlm_bench.engines.measure import IDLE_GAP_S
from dlm_bench.engines.pool import EnginePool
from dlm_bench.generation.work import ar_work
from dlm_bench.measure.benchmarks import TargetResult, record_targets, write_report
from dlm_bench.measure.calibration import measure_ceilings
from dlm_bench.measure.clock import clock_for
from dlm_bench.measure.environment import git_commit, hardware_name
from dlm_bench.measure.loop import time_pair
from dlm_bench.measure.roofline import generation_min_bytes
from dlm_bench.metrics.timing import mean_finite, mean_itl_ms
from dlm_bench.sweep.pairs import ArmMaker
from dlm_bench.registry import AR
from dlm_bench.selection.pairs import paired_ratio

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "scripts/bench_engines.py"
GOAL = 2.0  # torch / llama.cpp per token, at most


def arm_itl_ms(runs) -> float:
    """Median over an arm's timed runs of the mean inter-token latency: from the clock marks (torch) or the
    engine's streamed chunks (llama-server)."""
    per_run = [mean_itl_ms(r.mark_offsets_ms) if r.trace.report is None
               else mean_finite([a.itl_ms for a in r.trace.report.answers]) for r in runs]
    return statistics.median(per_run)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "config" / "experiments_austen.yaml")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--decode", default="static_compiled", help="the torch arm's decode path")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--copy_mib", type=int, default=512, help="buffer of the read-bandwidth measurement (MiB)")
    p.add_argument("--output", type=Path, help="write the table here (Markdown)")
    p.add_argument("--record", type=Path, help="write the result into this targets file (JSON)")
    args = p.parse_args()
    try:
        exp = load_experiment(args.config, {"seq_len": [args.seq_len], "batch_size": [1], "decode": [args.decode],
                                            "engine": ["torch", "llamacpp"]})
        gguf = PRECISIONS[exp.precision].gguf
        ar = [c for c in expand_cells(exp) if c.kind == AR]
        torch_cell = next(c for c in ar if c.engine in (None, "torch"))
        llama_cell = next((c for c in ar if c.engine == "llamacpp" and c.weights_format == gguf), None)
        if llama_cell is None:
            raise ConfigError(f"engines.llamacpp.weights_format: {gguf} (the sweep's precision) is needed")
    except (ConfigError, StopIteration) as exc:
        print(f"config error: {exc or 'the config has no AR model'}", file=sys.stderr)
        return 2
    device = torch.device("cpu")
    if exp.cpu_threads is not None:
        torch.set_num_threads(exp.cpu_threads)
    hardware, clock = hardware_name(device), clock_for(device)
    read_bps = measure_ceilings(device, copy_mib=args.copy_mib)["read_tbps"] * 1e12
    with tempfile.TemporaryDirectory() as logs, EnginePool(exp, device, Path(logs)) as pool, torch.inference_mode():
        maker = ArmMaker(exp, device, pool, {}, hardware)
        torch_arm, llama_arm = maker(torch_cell), maker(llama_cell)
        timing = time_pair(torch_arm.arm, llama_arm.arm, args.pairs, args.warmup, clock, random.Random(args.seq_len),
                           IDLE_GAP_S)
        torch_ms, llama_ms = timing.reference_ms, timing.contender_ms
        arch = maker.loaded[torch_cell.model.name].architecture
    per_step = generation_min_bytes(ar_work(1, torch_cell.prompt_len, torch_cell.n_out), arch,
                                    PRECISIONS[exp.precision].bytes_per_element) / torch_cell.n_out
    streaming_ms = per_step / read_bps * 1000
    est = paired_ratio(torch_ms, llama_ms)
    rows, split = [], []
    for label, side, threads in ((f"torch {args.decode}", torch_arm.arm, torch_arm.threads),
                                 (f"llama.cpp {gguf}", llama_arm.arm, llama_arm.threads)):
        itl = arm_itl_ms(side.runs)
        latency = statistics.median(r.latency_ms for r in side.runs)
        rows.append(f"| {label} | {threads} | {latency:.1f} | {itl:.3f} | {streaming_ms:.3f} | {itl - streaming_ms:.3f} | {streaming_ms / itl:.0%} |")
        split.append(f"{label} {itl:.3f} ms/token = {streaming_ms:.3f} streaming + {itl - streaming_ms:.3f} rest")
    setting = (f"{torch_cell.model.name}, N = {args.seq_len} (N_out {torch_cell.n_out}), B = 1, {exp.precision}, "
               f"{exp.cpu_threads} threads, {args.pairs} pairs after {args.warmup} warm-ups; "
               f"{per_step / 2**20:.2f} MiB per decode step at {read_bps / 1e9:.1f} GB/s read")
    result = TargetResult(f"torch {args.decode} AR decode per token within {GOAL:g}x of llama.cpp {gguf}, B = 1",
                          GOAL, False, est.value, est.ci_low, est.ci_high, f"{setting}; " + "; ".join(split), SCRIPT,
                          hardware, datetime.now(timezone.utc).isoformat(timespec="seconds"), git_commit(ROOT))
    print(f"{result.name}: {est.value:.2f} [{est.ci_low:.2f}, {est.ci_high:.2f}] -> {result.verdict}")
    if args.record:
        print(f"recorded: {record_targets(args.record, [result])}")
    text = "\n".join([
        "# The torch AR decode against llama.cpp, per token (interleaved pairs, one process)", "",
        f"Generated by `{SCRIPT}` on {hardware} at commit {result.commit}, {result.measured_at}: {setting}.", "",
        f"**torch / llama.cpp per token: {est.value:.2f} [{est.ci_low:.2f}, {est.ci_high:.2f}]** (goal < {GOAL:g}): "
        f"{result.verdict}.", "",
        "| arm | threads | L_e2e ms (median) | ms per token (median ITL) | weight streaming ms | the rest ms | "
        "streaming share |", "|---|---|---|---|---|---|---|", *rows, ""])
    write_report(text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
