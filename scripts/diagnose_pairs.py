"""Why a torch arm can run slower inside a pair with an engine than in its own cell: the arm timed beside the
engine under conditions that are interleaved, so that the machine's drift hits them all alike, with the
engine process's CPU time during every run.

    python scripts/diagnose_pairs.py --config config/experiments_austen.yaml --seq_len 128 --steps 16 \\
        --sampler random --cache dual --rounds 30 --output results/pairs_diagnosis.json

One process, one diffusion cell (torch) and the AR model's llama.cpp cell (llama-server) of the config, the
same prompt. First and last, `--block` runs of the torch arm alone with no engine process (the cell's own
setting; the two blocks differ only by the time between them: the machine's drift). In between, `--rounds`
rounds; each round times the torch arm once under each condition, in an order drawn per round:
  paused        the llama-server process stopped (SIGSTOP) for the run: it cannot use the CPU at all;
  idle_gap      the server idle, 0.2 s after its last request (the pairs step's gap);
  idle_long     the server idle, 1 s after its last request;
  after_request right after a server request, no gap (what a pair without the gap did);
and each round ends with one engine request. For every torch run: its latency and the server's CPU time
during it (ms, /proc/<pid>/stat, 10 ms ticks); for every engine request, this process's CPU time during it.
Each condition is compared with `paused` in the same round: the median of the per-round ratios with its
bootstrap CI and the sign test (stats.paired_ratio_test). The load guard's probe is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from dlm_bench.config import ConfigError, LoadGuardSpec, expand_cells, load_experiment
from dlm_bench.engines.generator import EngineGenerator
from dlm_bench.engines.pool import EnginePool
from dlm_bench.generation.cell_generator import make_generator
from dlm_bench.measure.clock import clock_for
from dlm_bench.measure.load import CLOCK_TICKS, LoadGuard, process_ticks
from dlm_bench.measure.loop import Arm
from dlm_bench.models.loader import LoadSettings, load_model
from dlm_bench.workload.prompts import PromptProvider
from dlm_bench.stats import paired_ratio_test

CONDITIONS = ("paused", "idle_gap", "idle_long", "after_request")
GAPS_S = {"paused": 0.2, "idle_gap": 0.2, "idle_long": 1.0, "after_request": 0.0}


def ms_of(ticks: int) -> float:
    return 1000.0 * ticks / CLOCK_TICKS


def torch_run(arm: Arm, clock, server_pid: int | None, pause: bool = False) -> dict:
    """One timed run of the torch arm, with the server's CPU time during it (and the server stopped if `pause`)."""
    if pause and server_pid:
        os.kill(server_pid, signal.SIGSTOP)
    before = process_ticks(server_pid) if server_pid else 0
    try:
        latency = arm.generate_ms(clock)
    finally:
        after = process_ticks(server_pid) if server_pid else 0
        if pause and server_pid:
            os.kill(server_pid, signal.SIGCONT)
    return {"latency_ms": latency, "server_cpu_ms": ms_of(after - before) if server_pid else None}


def engine_run(arm: Arm, clock) -> dict:
    before = process_ticks("self", children=True)
    latency = arm.generate_ms(clock)
    return {"latency_ms": latency, "own_cpu_ms": ms_of(process_ticks("self", children=True) - before)}


def report(data: dict) -> str:
    """The Markdown table of one diagnosis."""
    def f(x, d=1):
        return "—" if x is None else f"{x:.{d}f}"

    lines = [data["header"], "", "| torch arm | runs | ms, median | server CPU ms during a run, median (max) | "
             "÷ paused, per round: median [95% CI] | slower than paused in |", "|---|---|---|---|---|---|"]
    for name, block in (("alone, before the server", "alone_first"), ("alone, after the server", "alone_last")):
        runs = data[block]
        lines.append(f"| {name} | {len(runs)} | {f(statistics.median(r['latency_ms'] for r in runs))} | — | — | — |")
    for c in CONDITIONS:
        runs = [r[c] for r in data["rounds"]]
        cpu = [r["server_cpu_ms"] for r in runs]
        test = data["versus_paused"].get(c)
        lines.append(f"| {c} | {len(runs)} | {f(statistics.median(r['latency_ms'] for r in runs))} | "
                     f"{f(statistics.median(cpu))} ({f(max(cpu))}) | "
                     + (f"{f(test['median'], 3)} [{f(test['ci_low'], 3)}, {f(test['ci_high'], 3)}] | "
                        f"{test['above']} of {test['above'] + test['below']} (p = {test['p_value']:.2g}) |"
                        if test else "reference | — |"))
    engine = [r["engine"] for r in data["rounds"]]
    lines += ["", f"Engine requests: {len(engine)}, median {f(statistics.median(r['latency_ms'] for r in engine))} ms; "
                  f"this process's CPU during one: median {f(statistics.median(r['own_cpu_ms'] for r in engine))} ms."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--seq_len", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--sampler", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--weights_format", default="f32")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--block", type=int, default=20, help="runs of the torch arm alone, before and after")
    p.add_argument("--output", type=Path, required=True, help="the JSON file; the Markdown table beside it (.md)")
    args = p.parse_args()
    if args.rounds < 6 or args.block < 3:
        p.error(f"--rounds {args.rounds} / --block {args.block}: not allowed; allowed: rounds >= 6, block >= 3")
    try:
        exp = load_experiment(args.config, {"seq_len": [args.seq_len], "batch_size": [1], "steps": [args.steps],
                                            "sampler": [args.sampler], "cache": [args.cache],
                                            "engine": ["torch", "llamacpp"], "weights_format": [args.weights_format],
                                            "decode": ["eager"]})
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    cells = expand_cells(exp)
    diffusion = next(c for c in cells if c.kind == "diffusion" and c.engine == "torch")
    ar_engine = next(c for c in cells if c.kind == "autoregressive" and c.engine == "llamacpp")
    device = torch.device("cpu")
    if exp.cpu_threads:
        torch.set_num_threads(exp.cpu_threads)
    probe = LoadGuard(LoadGuardSpec(), device).probe()
    settings = LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir)
    loaded = {c.model.name: load_model(c.model, device, settings) for c in (diffusion, ar_engine)}
    prompts = PromptProvider(exp.prompts, exp.models, exp.base_dir, exp.seed)

    def ids_of(cell):
        m = loaded[cell.model.name]
        return prompts.for_model(m.spec.name, m.architecture.vocab_size, m.mask_token_id,
                                 cell.seq_len).batch(1, device)[0]

    clock = clock_for(device)
    torch_arm = Arm(make_generator(diffusion, loaded[diffusion.model.name]), ids_of(diffusion), diffusion.n_out,
                    diffusion.steps, kernel=loaded[diffusion.model.name].attention_kernel)
    torch_arm.warm_up(1)
    data: dict = {"alone_first": [torch_run(torch_arm, clock, None) for _ in range(args.block)], "rounds": []}
    rng = random.Random(f"{exp.seed}:diagnosis")
    with tempfile.TemporaryDirectory() as logs, EnginePool(exp, device, Path(logs), progress=False) as pool:
        engine = pool.engine_for(ar_engine, loaded[ar_engine.model.name].tokenizer)
        (pid,) = engine.pids()
        engine_arm = Arm(EngineGenerator(engine), ids_of(ar_engine), ar_engine.n_out, None)
        engine_arm.warm_up(1)
        for _ in range(args.rounds):
            this_round = {}
            for condition in rng.sample(CONDITIONS, len(CONDITIONS)):
                if condition == "after_request":
                    engine_run(engine_arm, clock)
                time.sleep(GAPS_S[condition])
                this_round[condition] = torch_run(torch_arm, clock, pid, pause=condition == "paused")
            this_round["engine"] = engine_run(engine_arm, clock)
            data["rounds"].append(this_round)
        threads = engine.threads
    data["alone_last"] = [torch_run(torch_arm, clock, None) for _ in range(args.block)]
    reference = [r["paused"]["latency_ms"] for r in data["rounds"]]
    data["versus_paused"] = {}
    for c in CONDITIONS[1:]:
        test = paired_ratio_test([r[c]["latency_ms"] for r in data["rounds"]], reference)
        data["versus_paused"][c] = {"median": test.estimate.value, "ci_low": test.estimate.ci_low,
                                    "ci_high": test.estimate.ci_high, "above": test.above, "below": test.below,
                                    "p_value": test.p_value}
    data["header"] = (f"Torch arm `{diffusion.describe()}` (torch {torch.get_num_threads()} threads) beside "
                      f"`{ar_engine.describe()}` (llama-server, {threads} threads), one process, "
                      f"{time.strftime('%Y-%m-%d %H:%M')}; {args.rounds} rounds, blocks of {args.block}; other "
                      f"processes used {probe.other_cpu_cores:.2f} CPU cores before it started.")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=1))
    table = report(data)
    args.output.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
