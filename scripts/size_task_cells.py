"""Size the cells of config/experiments_tasks.yaml on an H100 with the cost model: projected time per cell (every
problem answered once at B = 1) and peak GPU memory. Projections, not measurements: the bands are the cost
model's published-factor bands (analysis.projection), the prompt lengths are assumptions stated in the table,
and the sandbox's time per HumanEval completion is the one measured on this project's CPU.

    python scripts/size_task_cells.py [--device H100]      # prints the Markdown table docs-vibe/tasks.md quotes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from dlm_bench.analysis.cost_model import Generation, predict_latency, predict_memory
from dlm_bench.analysis.projection import (BF16, DEVICES, GIB, device_ceilings, efficiency_at, efficiency_of,
                                           paper_grid)
from dlm_bench.config import expand_cells, load_experiment
from dlm_bench.registry import AR

# Prompt tokens per problem (assumed, LLaMA-3-class tokenizers): HumanEval's prompts are 122 tokens at the median
# and 395 at most in SmolLM2's tokenizer (measured on the packaged 164); GSM8K with 5 solved examples: about 900.
PROMPT_TOKENS = {"humaneval": 160, "gsm8k": 900}
PROBLEMS = {"humaneval": 164, "gsm8k": 1319}
SANDBOX_S = 0.04  # per HumanEval completion, measured on the 2-core CPU (about 25-30 checks per second)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="H100", choices=DEVICES)
    args = p.parse_args()
    exp = load_experiment(ROOT / "config" / "experiments_tasks.yaml", base_dir=ROOT)
    grid = paper_grid(ROOT)  # the paper's two 8B architectures (config/architectures)
    archs = {"llama": grid.llama, "llada": grid.llada}
    device = device_ceilings(args.device)
    print("| task | cell | projected per problem, s | projected per cell, min | projected peak memory, GiB |")
    print("|---|---|---|---|---|")
    for task in exp.tasks:
        prompt, n_out, problems = PROMPT_TOKENS[task.name], task.answer_tokens, PROBLEMS[task.name]
        check_s = SANDBOX_S if task.name == "humaneval" else 0.0
        for cell in expand_cells(exp):
            d = cell.decoding
            if cell.kind == AR:
                gen, key = Generation(AR, str(d.decode), 1, prompt, n_out), f"ar:{d.decode}"
            else:
                gen = Generation(cell.kind, str(d.cache), 1, prompt, n_out, d.steps, d.block_length)
                key = f"diffusion:{d.cache}"
            arch = archs[cell.model.family]
            fast, slow = (predict_latency(gen, arch, BF16, device, efficiency_at(key, f)).latency_ms / 1000
                          for f in (True, False))
            central = predict_latency(gen, arch, BF16, device, efficiency_of(key, {})).latency_ms / 1000
            memory = predict_memory(gen, arch, BF16, 0.0).total / GIB
            if getattr(d, "sampler", None) == "threshold":  # its K is a ceiling: bounded by the same K's row of a fixed schedule
                continue
            label = cell.describe().split(" ", 1)[1]
            print(f"| {task.name} (P≈{prompt}, N_out={n_out}, {problems}) | {cell.model.name} {label} | "
                  f"{central:.2f} [{fast:.2f}, {slow:.2f}] | "
                  f"{problems * (central + check_s) / 60:.0f} [{problems * (fast + check_s) / 60:.0f}, "
                  f"{problems * (slow + check_s) / 60:.0f}] | {memory:.1f} |")
    print(f"\nProjected on {args.device} ({device.source}) with the cost model's published-factor bands; not "
          f"measured. Threshold cells are bounded by the row of their K (a ceiling for them).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
