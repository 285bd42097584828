"""The fast paths' CPU performance targets, each measured as interleaved pairs in this one process.

    python scripts/bench_targets.py --output results/bench_targets_cpu.md \\
        --record results/raw_data/cpu_austen_trained/benchmarks.json

On random-weight models of about 21 M parameters (d_model 512, 6 layers; LLaDA layout for diffusion,
LLaMA-3 layout for AR) in fp32 on `--threads` threads, prompt 128 tokens, 128 generated, B = 1:
- compiled diffusion: `forward: compiled` against the eager forward with the same sampler and cache
  (low_confidence with none / prefix / dual, threshold with dual), K 32, block 32; goal >= 1.3x;
- compiled AR decode: `static_compiled` against transformers' eager `generate`; goal > 1x; and the
  compiled decode's weight-streaming rate (weight bytes per token / time per token, the input
  embedding table counted as one row) against this machine's measured copy bandwidth; goal >= 60%;
- harness overhead: the cells' timed region (measure.loop.timed_run: clock marks at every step or token) against a bare
  call of the same generator; goal: runner / bare < 1.03.
Each ratio is the median over pairs (order drawn per pair) with a bootstrap 95% CI, after
`--warmup` untimed runs of each arm (compilation happens there). A goal is met only when the whole
CI clears it (see `measure.benchmarks`). `--record` writes the results into a targets file that the
summary of a results folder reads (`benchmarks.json` inside it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch
from transformers import AutoModelForCausalLM

from dlm_bench.selection.pairs import paired_ratio
from dlm_bench.generation.autoregressive import make_ar_generator
from dlm_bench.generation.diffusion import MaskedDiffusionGenerator, SamplerSettings
from dlm_bench.paths import ARPath, DiffusionPath
from dlm_bench.measure.benchmarks import (TargetResult, add_benchmark_arguments, read_targets, record_targets,
                                    target_from_dict, write_report)
from dlm_bench.measure.calibration import measure_ceilings
from dlm_bench.measure.clock import clock_for
from dlm_bench.measure.environment import git_commit, hardware_name
from dlm_bench.metrics.timing import mean_itl_ms
from dlm_bench.models.llada import load_llada
from dlm_bench.models.tiny import read_corpus, write_tiny_llada, write_tiny_llama
from dlm_bench.measure.loop import Arm, CallGenerator, time_pair, timed_run, warm_up

CORPUS = ROOT / "data" / "prompts" / "mini_prompts.txt"
SCRIPT = "scripts/bench_targets.py"


def weight_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes of weights one decode step reads: every parameter, the input embedding table as one row."""
    embedding = model.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total - embedding.numel() * embedding.element_size() + embedding.shape[1] * embedding.element_size()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_benchmark_arguments(p, Path("/tmp/dlm-bench-targets"), pairs=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--copy_mib", type=int, default=512, help="buffer of the copy-bandwidth measurement (MiB)")
    p.add_argument("--only", choices=["diffusion", "ar", "overhead"], nargs="+",
                   help="measure only these groups (default: all)")
    p.add_argument("--output", type=Path, help="write the table here (Markdown)")
    p.add_argument("--record", type=Path, help="write the results into this targets file (JSON)")
    args = p.parse_args()
    if args.gen_length % args.block_length or args.steps % (args.gen_length // args.block_length):
        print("--gen_length must be a multiple of --block_length and --steps a multiple of the block count",
              file=sys.stderr)
        return 2
    groups = set(args.only or ["diffusion", "ar", "overhead"])
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    clock = clock_for(device)
    hardware, commit = hardware_name(device), git_commit(ROOT)
    corpus = read_corpus(CORPUS)
    llada_dir, llama_dir = args.model_dir / "llada", args.model_dir / "llama"
    if not (llada_dir / "config.json").is_file():
        write_tiny_llada(llada_dir, corpus, seed=0, d_model=args.d_model, n_layers=args.n_layers)
    if not (llama_dir / "config.json").is_file():
        write_tiny_llama(llama_dir, corpus, seed=0, d_model=args.d_model, n_layers=args.n_layers)
    llada = load_llada(llada_dir, device, torch.float32, "sdpa")
    llama = AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32, attn_implementation="sdpa").eval()
    mask_id = llada.config.mask_token_id
    gen = torch.Generator().manual_seed(0)
    dl_prompt = torch.randint(0, mask_id, (1, args.prompt_length), generator=gen)
    ar_prompt = torch.randint(0, llama.config.vocab_size, (1, args.prompt_length), generator=gen)
    n_dl = sum(t.numel() for t in llada.parameters()) / 1e6
    n_ar = sum(t.numel() for t in llama.parameters()) / 1e6
    common = (f"{args.threads} threads, fp32, B = 1, prompt {args.prompt_length}, {args.gen_length} generated; "
              f"{args.pairs} pairs after {args.warmup} warm-up runs of each arm")
    results: list[TargetResult] = []

    def pair(name: str, goal: float, higher: bool, reference, contender, seed: int, setting: str,
             invert: bool = False) -> None:
        """Time reference against contender; the ratio is reference / contender (contender / reference with
        `invert`), with the arms' medians and, where both keep outputs, the tokens agreeing."""
        timing = time_pair(reference, contender, args.pairs, args.warmup, clock, random.Random(seed))
        ref_ms, con_ms = timing.reference_ms, timing.contender_ms
        est = paired_ratio(con_ms, ref_ms) if invert else paired_ratio(ref_ms, con_ms)
        agree = ""
        if reference.last is not None and contender.last is not None:
            agree = f"; tokens agreeing {float((reference.last == contender.last).float().mean()):.3f}"
        detail = f"{setting}; medians {statistics.median(ref_ms):.0f} ms vs {statistics.median(con_ms):.0f} ms{agree}"
        results.append(TargetResult(name, goal, higher, est.value, est.ci_low, est.ci_high, detail, SCRIPT, hardware,
                                    datetime.now(timezone.utc).isoformat(timespec="seconds"), commit))
        print(f"{name}: {est.value:.3f} [{est.ci_low:.3f}, {est.ci_high:.3f}] -> {results[-1].verdict} ({detail})",
              flush=True)

    def diffusion(label: str) -> MaskedDiffusionGenerator:
        """The project's generator on a path label (`sampler/cache[/forward]`); threshold samplers run each block
        until it has no mask left, as Fast-dLLM does."""
        return MaskedDiffusionGenerator(llada, mask_id, DiffusionPath.parse(label), SamplerSettings(args.block_length))

    def diffusion_side(label: str) -> Arm:
        return Arm(diffusion(label), dl_prompt, args.gen_length, args.steps)

    def ar_side(label: str) -> Arm:
        return Arm(make_ar_generator(llama, ARPath.parse(label)), ar_prompt, args.gen_length)

    with torch.inference_mode():
        dl_setting = f"LLaDA layout, {n_dl:.1f} M parameters, K = {args.steps}, block {args.block_length}, {common}"
        ar_setting = f"LLaMA-3 layout, {n_ar:.1f} M parameters, {common}"
        if "diffusion" in groups:
            for i, label in enumerate(("low_confidence/none", "low_confidence/prefix", "low_confidence/dual",
                                       "threshold/dual")):
                pair(f"compiled diffusion forward vs eager, {label}", 1.3, True, diffusion_side(label),
                     diffusion_side(f"{label}/compiled"), i, dl_setting)
        if "ar" in groups:
            compiled = ar_side("static_compiled")
            pair("AR static_compiled decode vs eager generate, B = 1", 1.0, True, ar_side("eager"), compiled, 10,
                 ar_setting)
            generator = make_ar_generator(llama, ARPath("static_compiled"))
            warm_up(generator, ar_prompt, args.gen_length, None, 1)
            itls = [mean_itl_ms(timed_run(generator, ar_prompt, args.gen_length, None, clock).mark_offsets_ms)
                    for _ in range(args.pairs)]
            per_token_s = statistics.median(itls) / 1000
            nbytes = weight_bytes_per_token(llama)
            ceilings = measure_ceilings(device, copy_mib=args.copy_mib)
            share = nbytes / per_token_s / (ceilings["copy_tbps"] * 1e12)
            detail = (f"{ar_setting}; {nbytes / 2**20:.1f} MiB of weights per token in {1000 * per_token_s:.2f} ms "
                      f"(median inter-token latency of {args.pairs} runs) = {nbytes / per_token_s / 1e9:.2f} GB/s; "
                      f"copy bandwidth {ceilings['copy_tbps'] * 1000:.2f} GB/s (read + written, {args.copy_mib} MiB); "
                      f"for scale, reading alone (a sum over the same bytes) runs at {ceilings['read_tbps'] * 1000:.2f} GB/s, "
                      f"so the decode streams its weights at {share * ceilings['copy_tbps'] / ceilings['read_tbps']:.0%} "
                      f"of the read rate")
            results.append(TargetResult("AR static_compiled decode: weight bytes per token / time per token, share of "
                                        "copy bandwidth", 0.6, True, share, None, None, detail, SCRIPT, hardware,
                                        datetime.now(timezone.utc).isoformat(timespec="seconds"), commit))
            print(f"{results[-1].name}: {share:.3f} -> {results[-1].verdict} ({detail})", flush=True)
        if "overhead" in groups:
            for seed, (kind, generator, prompt, steps) in enumerate(
                    (("diffusion low_confidence/dual", diffusion("low_confidence/dual"), dl_prompt, args.steps),
                     ("AR static", make_ar_generator(llama, ARPath("static")), ar_prompt, None))):
                runner = Arm(generator, prompt, args.gen_length, steps)  # the cells' timed region, marks included
                bare = Arm(CallGenerator(lambda ids, g=generator, s=steps: g.generate(ids, args.gen_length,
                                                                                     steps=s).output_ids),
                           prompt, args.gen_length)
                pair(f"harness overhead: runner's timed repetition / bare generation, {kind}", 1.03, False,
                     bare, runner, 20 + seed, dl_setting if steps else ar_setting, invert=True)
    if args.record:
        print(f"recorded: {record_targets(args.record, results)}")
        # the table shows every target this script has recorded there, so a partial run (--only) updates its rows
        results = [target_from_dict(r) for r in read_targets(args.record) if r["script"] == SCRIPT]
    header = "| target | goal | measured [95% CI] | verdict | detail |\n|---|---|---|---|---|"
    rows = []
    for r in results:
        ci = "" if r.ci_low is None else f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"
        rows.append(f"| {r.name} | {r.goal_text} | {r.value:.3f}{ci} | {r.verdict} | "
                    f"{r.hardware}, commit {r.commit}, {r.measured_at}: {r.detail} |")
    text = "\n".join(["# CPU performance targets of the fast paths (interleaved pairs, one process)", "",
                      "Each row: the hardware, commit and time it was measured at, and its settings. A goal is met only "
                      "when the whole 95% CI clears it.", "", header, *rows, ""])
    write_report(text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
