"""Every diffusion sampler x cache and every AR decode path at one (B, N, K), side by side.

    python scripts/bench_samplers.py --config config/experiments_mini.yaml --batch_size 1 --seq_len 64 --steps 32
    python scripts/bench_samplers.py --config config/experiments_synthetic_8b.yaml --batch_size 1 \\
        --seq_len 512 --steps 256 --output results/bench_samplers_h100.md

Prints (and with --output writes, as Markdown with the hardware label) steps executed, forward
passes, L_e2e, tokens/s, agreement with the uncached sampler, and the AR paths' TTFT/ITL.
Nothing is written to the results folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from dlm_bench.config import (AR_DECODE_MODES, DIFFUSION_CACHES, DIFFUSION_SAMPLERS, ConfigError,
                        expand_cells, load_experiment, project_root)
from dlm_bench.labels import variant_label
from dlm_bench.measure.clock import clock_for
from dlm_bench.measure.load import LoadGuard
from dlm_bench.measure.environment import capture_environment, resolve_device
from dlm_bench.measure import roofline
from dlm_bench.models.loader import LoadSettings, each_loaded
from dlm_bench.workload.prompts import PromptProvider
from dlm_bench.sweep.runner import RunContext, run_cell

COLUMNS = ["model", "path", "steps", "fwd passes", "L_e2e ms", "tokens/s", "TTFT ms", "ITL ms", "agreement", "MFU",
           "MBU", "status"]


def _fmt(value, digits=1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def row(record) -> list[str]:
    r = record.to_row()
    path = variant_label(r) + (f" t={r['threshold']}" if r.get("threshold") else "") \
        + (f" κ={r['leap_relaxed']} W={r['leap_window']}" if r.get("leap_relaxed") else "")
    return [r["model_name"], path, _fmt(r["steps_executed"]), _fmt(r["forward_passes"]),
            _fmt(r["latency_ms_median"], 2), _fmt(r["tokens_per_s_median"]), _fmt(r["ttft_ms_median"], 2),
            _fmt(r["itl_ms_median"], 3), _fmt(r["agreement_with_uncached"], 3), _fmt(r["mfu"], 3),
            _fmt(r["mbu"], 3), record.status + (f": {record.error}" if record.error else "")]


def markdown(rows: list[list[str]], header: str) -> str:
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--batch_size", type=int, required=True)
    p.add_argument("--seq_len", type=int, required=True)
    p.add_argument("--steps", type=int, required=True, help="diffusion steps K (an upper bound for threshold)")
    p.add_argument("--models", nargs="+")
    p.add_argument("--output", help="also write the table as Markdown to this file")
    args = p.parse_args()
    try:
        exp = load_experiment(args.config, {"batch_size": [args.batch_size], "seq_len": [args.seq_len],
                                            "steps": [args.steps], "sampler": list(DIFFUSION_SAMPLERS),
                                            "cache": list(DIFFUSION_CACHES), "decode": list(AR_DECODE_MODES),
                                            "models": args.models})
        exp = dataclasses.replace(exp, quality=dataclasses.replace(exp.quality, generate=False))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    device = resolve_device(exp.device)
    env = capture_environment(device, project_root())
    peaks = roofline.peaks_for(env["hardware"], exp.results_dir / "calibration.json")
    ctx = RunContext(exp.name, env, clock_for(device), peaks, LoadGuard(exp.load_guard, device))
    prompts = PromptProvider(exp.prompts, exp.models, exp.base_dir, exp.seed)
    cells = expand_cells(exp)
    rows, weights = [], set()
    for loaded in each_loaded(exp.models, device, LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir)):
        weights.add(loaded.weights)
        for cell in (c for c in cells if c.model.name == loaded.spec.name):
            cell_prompts = prompts.for_model(loaded.spec.name, loaded.architecture.vocab_size, loaded.mask_token_id,
                                             cell.seq_len)
            rows.append(row(run_cell(cell, loaded, cell_prompts, ctx)))
            print(" | ".join(rows[-1]), flush=True)
    header = (f"# Samplers at B={args.batch_size}, N={args.seq_len} (P = N_out = {args.seq_len // 2}), K={args.steps}\n\n"
              f"hardware: {env['hardware']} | torch {env['torch_version']} | {exp.precision} | attention "
              f"{exp.attention} | weights: {', '.join(sorted(weights))}"
              + (" (random-init: timing only)" if "synthetic" in weights else "")
              + f" | warm-ups {exp.timing.warmup}, repeats {exp.timing.repeats} (medians) | peaks: {peaks.source}")
    table = markdown(rows, header)
    print("\n" + table)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
