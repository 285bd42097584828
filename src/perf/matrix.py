"""Run the perf matrix: every path against its architecture's baseline path, as interleaved pairs.

For each batch size and each non-baseline path, the baseline and the path are warmed up (untimed,
unrecorded) and timed in `pairs` pairs (order drawn per pair, same prompt ids); a path's figures
(tokens/s, latency, step or inter-token p50/p99, steps executed) come from all its timed
generations (the baseline's from every pairing), and its speedup is the paired ratio against the
baseline. `slow_path` / `slow_factor` stretch one path's timed
region by sleeping (factor - 1) times its own duration after each generation: the test-only knob
that shows a gate turning red.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from ..analysis.pairs import paired_ratio
from ..generation import Generator
from ..generation.autoregressive import make_ar_generator
from ..generation.diffusion import MaskedDiffusionGenerator
from ..measure.clock import Clock, clock_for
from ..measure.environment import git_commit, hardware_name
from ..measure.memory import process_max_rss_gib
from ..measure.metrics import percentile
from ..pairs import time_pair
from .spec import PerfSpec, parse_diffusion_path


@dataclass
class PerfArm:
    """One path at one batch size: its generator and prompt ids, and what its timed generations gave."""

    kind: str  # diffusion | autoregressive
    path: str
    generator: Generator
    ids: torch.Tensor
    n_out: int
    steps: Optional[int]
    slow_factor: float = 1.0
    latencies_ms: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    steps_executed: list[int] = field(default_factory=list)
    output_ids: Optional[torch.Tensor] = None

    def generate_ms(self, clock: Clock) -> float:
        """One timed generation with a clock mark per step or token, ms (what time_pair calls)."""
        start = clock.mark()
        trace = self.generator.generate(self.ids, self.n_out, steps=self.steps, marker=clock.mark)
        if self.slow_factor > 1.0:
            clock.synchronize()
            time.sleep((self.slow_factor - 1.0) * (time.perf_counter() - _as_seconds(start, clock)))
        end = clock.mark()
        clock.synchronize()
        latency = clock.elapsed_ms(start, end)
        offsets = [0.0] + [clock.elapsed_ms(start, m) for m in trace.marks]
        self.step_ms += [b - a for a, b in zip(offsets, offsets[1:])][1 if self.kind == "autoregressive" else 0:]
        self.latencies_ms.append(latency)
        self.steps_executed.append(trace.steps_executed)
        self.output_ids = trace.output_ids
        return latency

    def warm_up(self) -> None:
        """One untimed generation (compilation, allocator and caches settle); nothing is recorded."""
        self.generator.generate(self.ids, self.n_out, steps=self.steps)

    def figures(self) -> dict:
        """Medians of this arm's timed generations (see module docstring)."""
        batch = self.ids.shape[0]
        latency = statistics.median(self.latencies_ms)
        p50, p99 = percentile(self.step_ms, 50), percentile(self.step_ms, 99)
        return {"kind": self.kind, "path": self.path, "batch_size": batch, "generations": len(self.latencies_ms),
                "latency_ms": latency, "tokens_per_s": batch * self.n_out / (latency / 1000),
                "step_ms_p50": p50, "step_ms_p99": p99, "step_p99_over_p50": p99 / p50 if p50 > 0 else float("nan"),
                "steps_executed": statistics.median(self.steps_executed)}


def _as_seconds(mark, clock: Clock) -> float:
    """A perf_counter mark as seconds (the slow knob is CPU-clock only)."""
    if not isinstance(mark, float):
        raise RuntimeError(f"the slow-path knob needs the CPU clock; this run uses {type(clock).__name__}")
    return mark


@dataclass
class Loaded:
    diffusion: torch.nn.Module
    ar: torch.nn.Module
    mask_id: int


def load_pair(spec: PerfSpec, root: Path, device: torch.device) -> Loaded:
    """The matrix's two checkpoints in fp32 (CPU) or bf16 (GPU), SDPA attention."""
    from transformers import AutoModelForCausalLM

    from ..models.llada import load_llada

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    diffusion = load_llada(root / spec.diffusion_model, device, dtype, "sdpa")
    ar = AutoModelForCausalLM.from_pretrained(str(root / spec.ar_model), dtype=dtype,
                                              attn_implementation="sdpa").to(device).eval()
    return Loaded(diffusion, ar, diffusion.config.mask_token_id)


@dataclass
class Prompts:
    """Per architecture, max(batch_size) prompts of `prompt_len` token ids, and (from a prompt file) the
    true continuations and the tokenizer that reads both."""

    ids: dict[str, list[list[int]]]
    references: dict[str, list[list[int]]] = field(default_factory=dict)
    tokenizers: dict = field(default_factory=dict)


def read_prompts(spec: PerfSpec, root: Path, loaded: Loaded) -> Prompts:
    """The matrix's prompts (see PerfSpec)."""
    count = max(spec.batch_size)
    if spec.prompt_file is None:
        generator = torch.Generator().manual_seed(spec.seed)
        return Prompts({kind: torch.randint(0, vocab, (count, spec.prompt_len), generator=generator).tolist()
                        for kind, vocab in (("diffusion", loaded.mask_id),
                                            ("autoregressive", loaded.ar.config.vocab_size))})
    from transformers import AutoTokenizer

    from ..quality.prompts import build_prompt_sets, read_prompt_file

    tokenizers = {kind: AutoTokenizer.from_pretrained(str(root / folder))
                  for kind, folder in (("diffusion", spec.diffusion_model), ("autoregressive", spec.ar_model))}
    sets = build_prompt_sets(read_prompt_file(root / spec.prompt_file), tokenizers, spec.prompt_len + spec.n_out,
                             count, "file")
    return Prompts({kind: s.prompt_ids for kind, s in sets.items()},
                   {kind: s.reference_ids for kind, s in sets.items()}, tokenizers)


def quality_delta(scorer, prompts: Prompts, kind: str, contender: torch.Tensor, baseline: torch.Tensor):
    """BERTScore F1 of the contender's continuations minus the baseline's against the true continuations,
    per prompt, as a mean with a bootstrap 95% CI (quality.trend.paired_difference)."""
    from ..quality.trend import paired_difference

    tokenizer = prompts.tokenizers[kind]
    references = [tokenizer.decode(r) for r in prompts.references[kind][:contender.shape[0]]]
    f1 = {name: [score[2] for score in scorer.score([tokenizer.decode(row, skip_special_tokens=True)
                                                      for row in ids.tolist()], references)]
          for name, ids in (("contender", contender), ("baseline", baseline))}
    return paired_difference(f1["contender"], f1["baseline"])


def run_matrix(spec: PerfSpec, root: Path, slow_path: Optional[str] = None, slow_factor: float = 1.0,
               progress: bool = True) -> dict:
    """The log entry of one run of the matrix: settings, one row per (path, batch size), peak RSS."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and spec.cpu_threads is not None:
        torch.set_num_threads(spec.cpu_threads)
    loaded = load_pair(spec, root, device)
    clock = clock_for(device)
    prompts = read_prompts(spec, root, loaded)
    scorer = None
    if spec.quality_encoder is not None:
        from ..quality.bertscore import BertScore, BertScoreSettings

        scorer = BertScore(BertScoreSettings(spec.quality_encoder, spec.quality_layers, False, None), device.type)
    rows = []
    jobs = [(b, kind, paths) for b in spec.batch_size
            for kind, paths in (("diffusion", spec.diffusion_paths), ("autoregressive", spec.ar_paths))]
    total = sum(len(paths) - 1 for _, _, paths in jobs)
    bar = tqdm(total=total, desc="perf pairs", unit="pair", disable=not progress)
    with torch.inference_mode():
        for seed, (batch, kind, paths) in enumerate(jobs):
            ids = torch.tensor(prompts.ids[kind][:batch], dtype=torch.long, device=device)
            make: Callable[[str], PerfArm] = (lambda p: _diffusion_arm(spec, loaded, p, ids)) if kind == "diffusion" \
                else (lambda p: _ar_arm(spec, loaded, p, ids))
            baseline = make(paths[0])
            for i, path in enumerate(paths[1:]):
                contender = make(path)
                if path == slow_path:
                    contender.slow_factor = slow_factor
                for arm in (baseline, contender):  # warm-ups here, so that the arms record timed generations only
                    for _ in range(spec.warmup):
                        arm.warm_up()
                time_pair(baseline, contender, spec.pairs, 0, clock, random.Random(1000 * seed + i))
                reference_ms = baseline.latencies_ms[-spec.pairs:]
                est = paired_ratio(reference_ms, contender.latencies_ms[-spec.pairs:])
                agreement = float((contender.output_ids == baseline.output_ids).float().mean())
                quality = {}
                if scorer is not None and batch == max(spec.batch_size):
                    delta = quality_delta(scorer, prompts, kind, contender.output_ids, baseline.output_ids)
                    quality = {"quality_delta": delta.value, "quality_delta_ci_low": delta.ci_low,
                               "quality_delta_ci_high": delta.ci_high}
                rows.append({**contender.figures(), "speedup": est.value, "speedup_ci_low": est.ci_low,
                             "speedup_ci_high": est.ci_high, "agreement": agreement, **quality,
                             "slowed": path == slow_path and slow_factor > 1.0, "baseline": False})
                bar.update(1)
            rows.append({**baseline.figures(), "speedup": 1.0, "speedup_ci_low": None, "speedup_ci_high": None,
                         "agreement": 1.0, "slowed": False, "baseline": True})
    bar.close()
    return {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": spec.name,
            "commit": git_commit(root), "hardware": hardware_name(device), "device": device.type,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "settings": {k: v for k, v in asdict(spec).items() if k != "gates"},
            "rows": rows, "peak_rss_gib": process_max_rss_gib()}


def _diffusion_arm(spec: PerfSpec, loaded: Loaded, path: str, ids: torch.Tensor) -> PerfArm:
    sampler, cache, forward = parse_diffusion_path(path)
    options = {"threshold_steps": "cap"} if sampler in ("threshold", "local_leap") else {}
    if sampler == "local_leap":
        options.update(threshold=spec.leap_threshold, leap_relaxed=spec.leap_relaxed, leap_window=spec.leap_window)
    generator = MaskedDiffusionGenerator(loaded.diffusion, loaded.mask_id, spec.block_length, sampler, cache=cache,
                                         forward=forward, **options)
    return PerfArm("diffusion", path, generator, ids, spec.n_out, spec.steps)


def _ar_arm(spec: PerfSpec, loaded: Loaded, path: str, ids: torch.Tensor) -> PerfArm:
    return PerfArm("autoregressive", path, make_ar_generator(loaded.ar, path), ids, spec.n_out, None)
