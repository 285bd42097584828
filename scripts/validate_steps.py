"""Validate the cost model step by step on this CPU: each diffusion step's measured time against its prediction,
by step kind (a whole-canvas step: every step without a cache and each block's refresh step with one; a cached
step: the block against the cached keys and values), per cache and model size.

    python scripts/validate_steps.py                 # about 10 minutes on 2 cores; run it alone
    python scripts/validate_steps.py --report_only [--report PATH]   # the report again from the measured steps

The predictions come from the fit the generation-level validation made (results/raw_data/cpu_cost_validation/
cost_fit.json: the ceilings by shape, e_f, e_b and each path's per-forward overhead), unchanged. The synthetic
LLaDA architectures of that validation (config/architectures/cost_*_llada.json) run the reference sampler at
B = 1, K = 16, N = 128 (two 32-token blocks of 8 steps) and N = 512 (eight blocks of 2 steps; not at 325 M,
whose uncached N = 512 generation takes minutes), every cache; after one warm-up, three generations are timed
with a mark after every step, and each step's time is its median over the three. Sizes the fit was made on are
marked; the others are held out. The fit's factors were fitted on another day, and this machine's speed drifts:
one scale, fitted on the fit sizes' steps alone, takes the day's speed out before the held-out sizes are judged
(the report gives the raw errors too). Writes results/cost_validation_steps.md and
results/raw_data/cpu_cost_validation/steps.json (every step measured, predicted and its kind).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "results" / "raw_data" / "cpu_cost_validation"
STEPS_FILE = FOLDER / "steps.json"
REPORT = ROOT / "results" / "cost_validation_steps.md"
SIZES = ("3m", "25m", "100m", "300m")
CACHES = ("none", "prefix", "dual")
SEQ_LENS = {"3m": (128, 512), "25m": (128, 512), "100m": (128, 512), "300m": (128,)}
STEPS, BLOCK, TIMED = 16, 32, 3


def measure() -> list[dict]:
    """Every step of every (size, N, cache) generation: measured median ms, predicted ms, kind."""
    import torch

    from dlm_bench.analysis.cost_model import Generation, predict_steps_ms, step_kind
    from dlm_bench.analysis.cost_validation import fit_from_json
    from dlm_bench.config import ModelSpec
    from dlm_bench.generation.diffusion import MaskedDiffusionGenerator, SamplerSettings
    from dlm_bench.paths import DiffusionPath
    from dlm_bench.generation.work import diffusion_work
    from dlm_bench.models.loader import LoadSettings, load_model
    from dlm_bench.registry import DIFFUSION

    torch.set_num_threads(2)
    fit = fit_from_json(json.loads((FOLDER / "cost_fit.json").read_text())["fit"])
    rows = []
    for size in SIZES:
        spec = ModelSpec(name=f"llada-{size}", family="llada", synthetic=True,
                         architecture=f"config/architectures/cost_{size}_llada.json")
        loaded = load_model(spec, torch.device("cpu"), LoadSettings("fp32", "sdpa", 1234, ROOT))
        arch, held_out = loaded.architecture, loaded.architecture.n_params not in fit.fit_sizes
        for n in SEQ_LENS[size]:
            prompt, n_out = n // 2, n - n // 2
            ids = torch.randint(0, arch.vocab_size - 2, (1, prompt), generator=torch.Generator().manual_seed(n))
            for cache in CACHES:
                generator = MaskedDiffusionGenerator(loaded.model, loaded.mask_token_id,
                                                     DiffusionPath("low_confidence", cache), SamplerSettings(BLOCK))
                work = diffusion_work(1, prompt, n_out, STEPS, BLOCK, cache)
                predicted = predict_steps_ms(Generation(DIFFUSION, cache, 1, prompt, n_out, STEPS, BLOCK), arch, 4,
                                             fit.ceilings, fit.efficiency)
                generator.generate(ids, n_out, steps=STEPS)  # warm-up
                timed = []
                for _ in range(TIMED):
                    t0 = time.perf_counter()
                    trace = generator.generate(ids, n_out, steps=STEPS, marker=time.perf_counter)
                    marks = [t0] + list(trace.marks)
                    timed.append([1e3 * (b - a) for a, b in zip(marks, marks[1:])])
                    assert trace.work == work, "the generator ran other forwards than the cost model counts"
                for i, w in enumerate(work):
                    rows.append({"model": spec.name, "n_params": arch.n_params, "held_out": held_out, "seq_len": n,
                                 "cache": cache, "step": i, "kind": step_kind(w),
                                 "measured_ms": statistics.median(t[i] for t in timed), "predicted_ms": predicted[i]})
                print(f"[steps] {spec.name} N={n} {cache}: {sum(r['measured_ms'] for r in rows[-len(work):]):.0f} ms "
                      f"measured, {sum(predicted):.0f} ms predicted", flush=True)
        loaded.model = None
    return rows


def machine_scale(rows: list[dict]) -> float:
    """The machine's speed today against the day of the fit: the median of measured / predicted over the steps of
    the fit sizes only (one number; the held-out sizes do not enter it)."""
    return statistics.median(r["measured_ms"] / r["predicted_ms"] for r in rows if not r["held_out"])


def report(rows: list[dict], measured_at: str) -> str:
    """The per-step report: per (cache, step kind, size) the measured and predicted medians and the median error
    with the machine's scale applied; then the held-out sizes' errors per cache and step kind, raw and scaled."""
    scale = machine_scale(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["cache"], r["kind"], r["model"], r["n_params"], r["seq_len"], r["held_out"]),
                          []).append(r)

    def error(rs: list[dict], k: float) -> float:
        return statistics.median(abs(k * r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rs)

    lines = ["# The cost model, step by step (CPU)", "",
             "<!-- generated by scripts/validate_steps.py from results/raw_data/cpu_cost_validation/steps.json -->", "",
             f"Each diffusion step of the reference sampler (B = 1, K = 16, N = 128 and 512), measured on this "
             f"project's 2-core CPU on {measured_at} and predicted by the cost model with the factors the "
             "generation-level validation fitted on cells timed on 2026-12-03 (`results/raw_data/cpu_cost_validation/"
             "cost_fit.json`, unchanged). A whole-canvas step is every step without a cache and each block's refresh "
             "step with one; a cached step runs the block (dual) or the block to the canvas end (prefix) against the "
             "cached keys and values. Error = |predicted - measured| / measured, median over a group's steps.", "",
             f"The machine ran at a different speed on the two days (this virtual machine's speed drifts; "
             f"`docs-vibe/pairs-diagnosis.md`): over the steps of the fit sizes alone, measured / predicted has median "
             f"{scale:.2f}. That one number is applied to every prediction below (\"scaled\"); it is fitted on the "
             "fit sizes only, so the held-out sizes test the model's form: how a step's time follows its kind, the "
             "cache and the model's size. The raw errors are listed too.", "",
             "| cache | step kind | model | N | fit or held out | steps | measured median, ms | predicted median, ms "
             "(scaled) | median error (scaled) |", "|---|---|---|---|---|---|---|---|---|"]
    for (cache, kind, model, n_params, n, held_out), rs in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3], kv[0][4])):
        lines.append(f"| {cache} | {kind} | {model} ({n_params / 1e6:.1f} M) | {n} | "
                     f"{'held out' if held_out else 'fit'} | "
                     f"{len(rs)} | {statistics.median(r['measured_ms'] for r in rs):.2f} | "
                     f"{scale * statistics.median(r['predicted_ms'] for r in rs):.2f} | {100 * error(rs, scale):.1f}% |")
    lines += ["", "Held-out sizes only, per cache and step kind (goal: median error at most 15%):", "",
              "| cache | step kind | held-out steps | median error, scaled | goal | median error, raw |",
              "|---|---|---|---|---|---|"]
    for cache in CACHES:
        for kind in ("whole canvas", "cached"):
            rs = [r for r in rows if r["cache"] == cache and r["kind"] == kind and r["held_out"]]
            if rs:
                e = error(rs, scale)
                lines.append(f"| {cache} | {kind} | {len(rs)} | {100 * e:.1f}% | {'met' if e <= 0.15 else 'missed'} | "
                             f"{100 * error(rs, 1.0):.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report_only", action="store_true", help="write the report from steps.json")
    p.add_argument("--report", default=str(REPORT), help=f"where the report goes (default {REPORT.relative_to(ROOT)})")
    args = p.parse_args()
    report_path = Path(args.report)
    if args.report_only:
        if not STEPS_FILE.is_file():
            print(f"no {STEPS_FILE.relative_to(ROOT)}: run without --report_only first", file=sys.stderr)
            return 2
        data = json.loads(STEPS_FILE.read_text())
    else:
        started = datetime.now(timezone.utc).isoformat(timespec="minutes")
        data = {"measured_at": started, "steps": measure()}
        STEPS_FILE.write_text(json.dumps(data, indent=1) + "\n")
    report_path.write_text(report(data["steps"], data["measured_at"]))
    print(f"wrote {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
