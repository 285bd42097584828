"""Run the perf matrix: every path against its architecture's baseline path, as interleaved pairs.

For each batch size and each non-baseline path, the baseline and the path are warmed up (untimed,
unrecorded) and timed in `pairs` pairs (order drawn per pair, same prompt ids); a path's figures
(tokens/s, latency, step or inter-token p50/p99, steps executed) come from all its timed
generations (the baseline's from every pairing), and its speedup is the paired ratio against the
baseline. Each path at each batch size is a grid cell (`PerfSpec.cell`) whose generator the sweep's
`make_generator` builds; models load through `models.loader` and prompts come from `workload.prompts`, as for
the cells. `slow_path` / `slow_factor` stretch one path's timed region by sleeping (factor - 1) times its
own duration after each generation: the test-only knob that shows a gate turning red.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from ..registry import AR, DIFFUSION
from ..selection.pairs import paired_ratio
from ..config import PromptSpec
from ..generation import GenerationTrace, Generator
from ..generation.cell_generator import make_generator
from ..metrics import timing as metrics
from ..measure.clock import clock_for
from ..measure.environment import git_commit, hardware_name
from ..measure.memory import process_max_rss_gib
from ..models.loader import LoadedModel, LoadSettings, load_model
from ..measure.loop import Arm, time_pair
from ..workload.prompts import PromptProvider, PromptSet
from .spec import PerfSpec


@dataclass
class SlowedGenerator:
    """A path made `factor` times slower inside the timed region: after each generation it sleeps
    (factor - 1) times the generation's own duration (the test-only knob of `slow_path`)."""

    inner: Generator
    factor: float

    def generate(self, prompt_ids: torch.Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker=None) -> GenerationTrace:
        start = time.perf_counter()
        trace = self.inner.generate(prompt_ids, n_out, steps=steps, marker=marker)
        if prompt_ids.is_cuda:
            torch.cuda.synchronize(prompt_ids.device)
        time.sleep((self.factor - 1.0) * (time.perf_counter() - start))
        return trace


@dataclass
class PerfArm(Arm):
    """One path at one batch size as one side of the pairs (measure.loop.Arm): its figures come from every
    timed run it kept."""

    kind: str = DIFFUSION  # diffusion | autoregressive
    path: str = ""

    def slow_down(self, factor: float) -> None:
        self.generator = SlowedGenerator(self.generator, factor)

    @property
    def slowed(self) -> bool:
        return isinstance(self.generator, SlowedGenerator)

    @property
    def latencies_ms(self) -> list[float]:
        return [r.latency_ms for r in self.runs]

    @property
    def step_ms(self) -> list[float]:
        """Every timed run's step (diffusion) or inter-token (AR: the first gap is the TTFT, left out) times."""
        out: list[float] = []
        for r in self.runs:
            steps = metrics.step_latencies_ms(r.mark_offsets_ms)
            out += steps[1:] if self.kind == AR else steps
        return out

    @property
    def steps_executed(self) -> list[int]:
        return [r.trace.steps_executed for r in self.runs]

    @property
    def output_ids(self) -> Optional[torch.Tensor]:
        return self.last

    def figures(self) -> dict:
        """Medians of this arm's timed generations (see module docstring)."""
        batch = self.ids.shape[0]
        latency = statistics.median(self.latencies_ms)
        step_ms = self.step_ms
        p50, p99 = metrics.percentile(step_ms, 50), metrics.percentile(step_ms, 99)
        return {"kind": self.kind, "path": self.path, "batch_size": batch, "generations": len(self.runs),
                "latency_ms": latency, "tokens_per_s": metrics.throughput_tokens_per_s(batch, self.n_out, latency),
                "step_ms_p50": p50, "step_ms_p99": p99, "step_p99_over_p50": p99 / p50 if p50 > 0 else float("nan"),
                "steps_executed": statistics.median(self.steps_executed)}


def load_pair(spec: PerfSpec, root: Path, device: torch.device) -> dict[str, LoadedModel]:
    """The matrix's two checkpoints by architecture, through the project's loader: fp32 on a CPU, bf16 on
    a GPU, SDPA attention."""
    settings = LoadSettings("bf16" if device.type == "cuda" else "fp32", "sdpa", spec.seed, root)
    return {kind: load_model(model, device, settings) for kind, model in spec.models().items()}


def quality_prompt_count(spec: PerfSpec) -> int:
    """Passages scored for quality_delta: `quality_prompts`, else the largest batch size."""
    return spec.quality_prompts or max(spec.batch_size)


def read_prompts(spec: PerfSpec, root: Path, loaded: dict[str, LoadedModel]) -> dict[str, PromptSet]:
    """Per architecture, the prompts of the largest batch and of the quality pass (see PerfSpec), through the
    project's prompt provider."""
    count = max(max(spec.batch_size), quality_prompt_count(spec) if spec.quality_encoder else 0)
    source = PromptSpec("file", spec.prompt_file, count) if spec.prompt_file is not None \
        else PromptSpec("random_ids", None, count)
    provider = PromptProvider(source, list(spec.models().values()), root, spec.seed)
    return {kind: provider.for_model(kind, m.architecture.vocab_size, m.mask_token_id, spec.prompt_len + spec.n_out)
            for kind, m in loaded.items()}


def quality_outputs(arm: PerfArm, prompt_ids: list[list[int]], batch: int) -> torch.Tensor:
    """The arm's continuations of every prompt of the quality pass, in batches of `batch` (untimed)."""
    device = arm.ids.device
    return torch.cat([arm.generator.generate(torch.tensor(prompt_ids[i:i + batch], dtype=torch.long, device=device),
                                             arm.n_out, steps=arm.steps).output_ids
                      for i in range(0, len(prompt_ids), batch)])


def quality_delta(scorer, tokenizer, references: list[list[int]], contender: torch.Tensor, baseline: torch.Tensor):
    """BERTScore F1 of the contender's continuations minus the baseline's against the true continuations
    (`references`, token ids), per prompt, as a mean with a bootstrap 95% CI (quality.trend.paired_difference)."""
    from ..quality.trend import paired_difference

    truth = [tokenizer.decode(r) for r in references[:contender.shape[0]]]
    f1 = {name: [score[2] for score in scorer.score([tokenizer.decode(row, skip_special_tokens=True)
                                                      for row in ids.tolist()], truth)]
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
            for kind, paths in ((DIFFUSION, spec.diffusion_paths), (AR, spec.ar_paths))]
    total = sum(len(paths) - 1 for _, _, paths in jobs)
    bar = tqdm(total=total, desc="perf pairs", unit="pair", disable=not progress)
    with torch.inference_mode():
        for seed, (batch, kind, paths) in enumerate(jobs):
            ids = torch.tensor(prompts[kind].prompt_ids[:batch], dtype=torch.long, device=device)
            baseline = perf_arm(spec, loaded[kind], kind, paths[0], ids)
            scored = scorer is not None and batch == max(spec.batch_size)
            quality_ids = prompts[kind].prompt_ids[:quality_prompt_count(spec)]
            baseline_quality = quality_outputs(baseline, quality_ids, batch) if scored else None
            for i, path in enumerate(paths[1:]):
                contender = perf_arm(spec, loaded[kind], kind, path, ids)
                if path == slow_path:
                    contender.slow_down(slow_factor)
                for arm in (baseline, contender):  # warm-ups here, so that the arms record timed generations only
                    arm.warm_up(spec.warmup)
                timing = time_pair(baseline, contender, spec.pairs, 0, clock, random.Random(1000 * seed + i))
                reference_ms, contender_ms = timing.reference_ms, timing.contender_ms
                est = paired_ratio(reference_ms, contender_ms)
                agreement = float((contender.output_ids == baseline.output_ids).float().mean())
                quality = {}
                if scored:
                    delta = quality_delta(scorer, loaded[kind].tokenizer, prompts[kind].reference_ids,
                                          quality_outputs(contender, quality_ids, batch), baseline_quality)
                    quality = {"quality_delta": delta.value, "quality_delta_ci_low": delta.ci_low,
                               "quality_delta_ci_high": delta.ci_high, "quality_delta_prompts": len(quality_ids)}
                rows.append({**contender.figures(), "speedup": est.value, "speedup_ci_low": est.ci_low,
                             "speedup_ci_high": est.ci_high, "agreement": agreement, **quality,
                             "slowed": contender.slowed, "baseline": False})
                bar.update(1)
            rows.append({**baseline.figures(), "speedup": 1.0, "speedup_ci_low": None, "speedup_ci_high": None,
                         "agreement": 1.0, "slowed": False, "baseline": True})
    bar.close()
    return {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": spec.name,
            "commit": git_commit(root), "hardware": hardware_name(device), "device": device.type,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "settings": {k: v for k, v in asdict(spec).items() if k != "gates"},
            "rows": rows, "peak_rss_gib": process_max_rss_gib()}


def perf_arm(spec: PerfSpec, loaded: LoadedModel, kind: str, path: str, ids: torch.Tensor) -> PerfArm:
    """One path of the matrix at the batch of `ids`: the spec's cell for it (`PerfSpec.cell`), generated by the
    sweep's own `make_generator`."""
    precision = "bf16" if ids.device.type == "cuda" else "fp32"
    cell = spec.cell(kind, path, ids.shape[0], precision)
    return PerfArm(make_generator(cell, loaded), ids, cell.n_out, cell.steps, kind=kind, path=path)
