"""The project's diffusion samplers against the public reference code, on the same weights, in pairs.

    python scripts/bench_reference.py --llada_repo ~/src/LLaDA --fast_dllm_repo ~/src/Fast-dLLM \
        --output results/bench_reference_cpu.md

Each comparison times the project's sampler on its native model and the reference sampler on the
reference model (Fast-dLLM's `llada/model/modeling_llada.py`, the LLaDA-8B modeling code with its
caches) on one random-weight LLaDA-layout checkpoint of about 21 M parameters, as interleaved
pairs (order drawn per pair) in this one process, and reports the median per-pair ratio
reference / ours with a bootstrap 95% CI (above 1: ours is faster) and the share of output tokens
on which the two agree:
- vanilla: LLaDA's `generate.py` `generate` against ours (low_confidence, no cache);
- prefix / dual: Fast-dLLM's `generate_with_prefix_cache` / `generate_with_dual_cache` against ours;
- threshold: Fast-dLLM's dual-cache generator with `threshold` against ours (threshold sampler, dual
  cache, each block until it is empty as Fast-dLLM does).
The reference code is read from the checkouts given (never copied into this project); a missing
checkout skips its comparisons and says so. Fast-dLLM's model code needs `einops`.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

import torch

from dlm_bench.selection.pairs import paired_ratio
from dlm_bench.generation.diffusion import MaskedDiffusionGenerator, SamplerSettings
from dlm_bench.paths import DiffusionPath
from dlm_bench.measure.clock import clock_for
from dlm_bench.measure.benchmarks import TargetResult, add_benchmark_arguments, record_targets, write_report
from dlm_bench.measure.environment import git_commit, hardware_name
from dlm_bench.models.llada import load_llada, load_llada_state_dict
from dlm_bench.models.tiny import read_corpus, write_tiny_llada
from dlm_bench.measure.loop import Arm, CallGenerator, time_pair

CORPUS = ROOT / "data" / "prompts" / "mini_prompts.txt"


def import_file(name: str, path: Path):
    """A module from a file of a checkout (its folder goes on sys.path for its own imports)."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llada_repo", type=Path, help="a checkout of github.com/ML-GSAI/LLaDA (generate.py)")
    p.add_argument("--fast_dllm_repo", type=Path, help="a checkout of github.com/NVlabs/Fast-dLLM (llada/)")
    add_benchmark_arguments(p, Path("/tmp/dlm-bench-reference-model"), pairs=5)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--output", type=Path, help="write the table here (Markdown)")
    p.add_argument("--record", type=Path, help="write each comparison as a target (ours at least as fast as the "
                                               "reference) into this targets file (JSON)")
    args = p.parse_args()
    checkouts = {"LLaDA": (args.llada_repo, "generate.py"), "Fast-dLLM": (args.fast_dllm_repo, "llada/generate.py")}
    for name, (repo, file) in checkouts.items():
        if repo is not None and not (repo / file).is_file():
            print(f"--{name.lower().replace('-', '_')}_repo: {repo / file} not found", file=sys.stderr)
            return 2
    if args.fast_dllm_repo is None:
        print("no --fast_dllm_repo: its model code is the reference model, so nothing can be compared", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    if not (args.model_dir / "config.json").is_file():
        write_tiny_llada(args.model_dir, read_corpus(CORPUS), seed=0, d_model=args.d_model, n_layers=args.n_layers)
    ours = load_llada(args.model_dir, device, torch.float32, "sdpa")
    n_params = sum(t.numel() for t in ours.parameters())
    mask_id = ours.config.mask_token_id
    fast = import_file("fast_dllm_generate", args.fast_dllm_repo / "llada" / "generate.py")
    from model.configuration_llada import LLaDAConfig as ReferenceConfig  # Fast-dLLM's llada/model
    from model.modeling_llada import LLaDAModelLM as ReferenceModel

    # built from its config and given the checkpoint's tensors directly (its from_pretrained path does not
    # run under the installed transformers)
    reference_config = ReferenceConfig.from_pretrained(str(args.model_dir))
    reference_config.use_cache = False  # read by its forward; the installed transformers drops it from the config
    reference = ReferenceModel(reference_config, init_params=False)
    reference.load_state_dict(load_llada_state_dict(args.model_dir, device, torch.float32), strict=True, assign=True)
    reference.eval()
    vanilla = import_file("llada_generate", args.llada_repo / "generate.py") if args.llada_repo else None
    prompt = torch.randint(0, mask_id, (1, args.prompt_length), generator=torch.Generator().manual_seed(0))
    common = dict(steps=args.steps, gen_length=args.gen_length, block_length=args.block_length, temperature=0.0,
                  remasking="low_confidence", mask_id=mask_id)

    def ours_with(label: str, **settings) -> Callable[[torch.Tensor], torch.Tensor]:
        gen = MaskedDiffusionGenerator(ours, mask_id, DiffusionPath.parse(label),
                                       SamplerSettings(args.block_length, **settings))
        return lambda ids: gen.generate(ids, args.gen_length, steps=args.steps).output_ids

    def theirs(fn, **options) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(ids):
            with torch.inference_mode():
                out = fn(reference, ids, **common, **options)
            out = out[0] if isinstance(out, tuple) else out
            return out[:, ids.shape[1]:]
        return run

    comparisons = []
    if vanilla is not None:
        comparisons.append(("vanilla: generate.py vs low_confidence/none", theirs(vanilla.generate),
                            ours_with("low_confidence/none")))
    comparisons += [
        ("prefix: generate_with_prefix_cache vs low_confidence/prefix", theirs(fast.generate_with_prefix_cache),
         ours_with("low_confidence/prefix")),
        ("dual: generate_with_dual_cache vs low_confidence/dual", theirs(fast.generate_with_dual_cache),
         ours_with("low_confidence/dual")),
        (f"threshold {args.threshold}: generate_with_dual_cache(threshold) vs threshold/dual",
         theirs(fast.generate_with_dual_cache, threshold=args.threshold),
         ours_with("threshold/dual", threshold=args.threshold, threshold_steps="unbounded"))]
    clock = clock_for(device)
    hardware, commit = hardware_name(device), git_commit(ROOT)
    rows, targets = [], []
    with torch.inference_mode():
        for i, (label, reference_run, our_run) in enumerate(comparisons):
            ref_side = Arm(CallGenerator(reference_run), prompt, args.gen_length)
            our_side = Arm(CallGenerator(our_run), prompt, args.gen_length)
            timing = time_pair(ref_side, our_side, args.pairs, 1, clock, random.Random(i))
            ref_ms, our_ms = timing.reference_ms, timing.contender_ms
            est = paired_ratio(ref_ms, our_ms)
            agree = float((ref_side.last == our_side.last).float().mean())
            rows.append(f"| {label} | {sorted(ref_ms)[len(ref_ms) // 2]:.0f} | {sorted(our_ms)[len(our_ms) // 2]:.0f} | "
                        f"{est.value:.2f} [{est.ci_low:.2f}, {est.ci_high:.2f}] | {agree:.3f} |")
            targets.append(TargetResult(
                f"ours at least as fast as the reference, {label}", 1.0, True, est.value, est.ci_low, est.ci_high,
                f"{args.threads} threads, fp32, {n_params / 1e6:.1f} M parameters, prompt {args.prompt_length}, "
                f"{args.gen_length} generated, K {args.steps}; {args.pairs} pairs; tokens agreeing {agree:.3f}",
                "scripts/bench_reference.py", hardware, datetime.now(timezone.utc).isoformat(timespec="seconds"), commit))
            print(rows[-1], flush=True)
    text = "\n".join([
        "# The project's samplers against the public reference code (same weights, interleaved pairs)", "",
        f"{hardware}, {args.threads} threads, fp32; random-weight LLaDA-layout model, {n_params / 1e6:.1f} M parameters "
        f"(d_model {args.d_model}, {args.n_layers} layers); prompt {args.prompt_length} tokens, {args.gen_length} "
        f"generated, K = {args.steps}, block {args.block_length}; {args.pairs} pairs per row after one warm-up of each "
        f"arm. Ratio = reference / ours (above 1: ours is faster), median over pairs with a bootstrap 95% CI.", "",
        "| comparison | reference ms (median) | ours ms (median) | speedup of ours [95% CI] | tokens agreeing |",
        "|---|---|---|---|---|", *rows, "",
        "LLaDA checkout: " + (str(args.llada_repo) if args.llada_repo else "not given (vanilla comparison skipped)"),
        f"Fast-dLLM checkout: {args.fast_dllm_repo}", ""])
    write_report(text, args.output)
    if args.record:
        print(f"recorded: {record_targets(args.record, targets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
