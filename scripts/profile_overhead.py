"""Harness overhead per model: timed L_e2e vs the profiler's kernel time for one cell each.

    python scripts/profile_overhead.py --config config/experiments_synthetic_8b.yaml --batch_size 1 \\
        --seq_len 512 --steps 128 --output results/raw_data/synthetic_8b/overhead.json
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from src.config import ConfigError, expand_cells, load_experiment  # noqa: E402
from src.measure.environment import hardware_name, resolve_device  # noqa: E402
from src.measure.overhead import harness_overhead  # noqa: E402
from src.models.attention import kernel_context  # noqa: E402
from src.models.loader import load_model  # noqa: E402
from src.results import atomic_write_text  # noqa: E402
from src.runner import PromptProvider, make_generator  # noqa: E402


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
                                            "steps": [args.steps], "generate_quality": False})
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    device = resolve_device(exp.device)
    prompts = PromptProvider(exp)
    out = {"hardware": hardware_name(device), "cells": []}
    for spec in exp.models:
        loaded = load_model(spec, exp, device)
        cell = next(c for c in expand_cells(exp) if c.model.name == spec.name)
        gen = make_generator(cell, loaded)
        ids, _ = prompts.for_model(loaded, cell.seq_len).batch(cell.batch_size, device)
        with kernel_context(loaded.attention_kernel):
            for _ in range(exp.timing.warmup):
                gen.generate(ids, cell.n_out, steps=cell.steps)
            result = harness_overhead(lambda: gen.generate(ids, cell.n_out, steps=cell.steps), device)
        out["cells"].append({"cell": cell.describe(), "weights": loaded.weights, **result})
        print(f"{cell.describe()}: L_e2e {result['latency_ms']:.2f} ms, kernels {result['kernel_ms']:.2f} ms, "
              f"overhead {100 * result['overhead']:.2f}%")
        del loaded
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.output), json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
