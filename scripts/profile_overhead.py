"""Harness overhead per model: timed L_e2e vs the profiler's kernel time for one cell each.

    python scripts/profile_overhead.py --config config/experiments_synthetic_8b.yaml --batch_size 1 \\
        --seq_len 512 --steps 128 --output results/raw_data/synthetic_8b/overhead.json
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path


from dlm_bench.config import ConfigError, expand_cells, load_experiment
from dlm_bench.measure.environment import hardware_name, resolve_device
from dlm_bench.measure.loop import warm_up
from dlm_bench.measure.overhead import harness_overhead
from dlm_bench.models.attention import kernel_context
from dlm_bench.fileio import atomic_write_text
from dlm_bench.models.loader import LoadSettings, each_loaded
from dlm_bench.workload.prompts import PromptProvider
from dlm_bench.sweep.runner import make_generator


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--seq_len", type=int, default=512)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--output", required=True)
    args = p.parse_args()
    try:
        exp = load_experiment(args.config, {"batch_size": [args.batch_size], "seq_len": [args.seq_len],
                                            "steps": [args.steps]})
        exp = dataclasses.replace(exp, quality=dataclasses.replace(exp.quality, generate=False))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    device = resolve_device(exp.device)
    prompts = PromptProvider(exp.prompts, exp.models, exp.base_dir, exp.seed)
    out = {"hardware": hardware_name(device), "cells": []}
    for loaded in each_loaded(exp.models, device, LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir)):
        cell = next(c for c in expand_cells(exp) if c.model.name == loaded.spec.name)
        gen = make_generator(cell, loaded)
        cell_prompts = prompts.for_model(loaded.spec.name, loaded.architecture.vocab_size, loaded.mask_token_id,
                                         cell.seq_len)
        ids, _ = cell_prompts.batch(cell.batch_size, device)
        with kernel_context(loaded.attention_kernel):
            warm_up(gen, ids, cell.n_out, cell.steps, exp.timing.warmup, exp.timing.warmup_steps)
            result = harness_overhead(gen, ids, cell.n_out, cell.steps, device)
        out["cells"].append({"cell": cell.describe(), "weights": loaded.weights, **result})
        print(f"{cell.describe()}: L_e2e {result['latency_ms']:.2f} ms, kernels {result['kernel_ms']:.2f} ms, "
              f"overhead {100 * result['overhead']:.2f}%")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.output), json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
