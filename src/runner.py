"""The loop over cells: skip finished ones, load each model once, warm up, measure, record.

One cell, start to end: `run_cell` builds the generator for the cell, takes its B prompts,
runs W warm-up generations, resets the peak-memory counters, runs R timed generations (clock
marks around each and inside it), turns the marks into metrics and returns a `CellRecord`.
An out-of-memory error is a result (`status=oom`); any other error is recorded
(`status=error`) and the sweep goes on; the next run retries it.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

import torch
from tqdm import tqdm

from .config import Cell, Experiment, TimingSpec, expand_cells, project_root, select_shard
from .generation import GenerationTrace, Generator
from .generation.autoregressive import make_ar_generator
from .generation.diffusion import MaskedDiffusionGenerator
from .measure import metrics
from .measure.clock import Clock, clock_for
from .measure.environment import capture_environment, resolve_device
from .measure.memory import read_peak, reset_peak
from .measure import roofline
from .models.attention import kernel_context
from .models.loader import LoadedModel, load_model, load_tokenizer
from .quality.generations import generate_for_quality
from .quality.prompts import (PromptSet, PromptSourceError, build_prompt_sets, random_prompt_set,
                              read_prompt_file, read_wikitext)
from .results import CellRecord, Repetition, ResultStore

log = logging.getLogger(__name__)


class AttentionBackendError(RuntimeError):
    """The requested attention kernel cannot run for a model (and mismatches are not allowed)."""


@dataclass
class RunSummary:
    cells_in_shard: int
    skipped: int
    ok: int = 0
    out_of_time: int = 0  # cells left for a later run because the time budget ran out
    oom: int = 0
    errors: int = 0
    csv_path: Optional[str] = None
    records: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- prompts


class PromptProvider:
    """The same passages for every model; prompts per (model, N) built once."""

    def __init__(self, exp: Experiment):
        self.exp = exp
        self._passages = None
        self._sets: dict[int, dict[str, PromptSet]] = {}

    def passages(self):
        if self._passages is None:
            p = self.exp.prompts
            if p.source == "file":
                self._passages = read_prompt_file(self.exp.resolve(p.file))
            elif p.source == "wikitext":
                self._passages = read_wikitext(p.dataset_cache_dir)
            else:
                self._passages = []
        return self._passages

    def text_sets(self, seq_len: int) -> dict[str, PromptSet]:
        """Per model name, prompts for one N from the text source (all tokenizers at once)."""
        if seq_len not in self._sets:
            tokenizers = {}
            for spec in self.exp.models:
                tok = load_tokenizer(spec, self.exp)
                if tok is None:
                    raise PromptSourceError(f"models ({spec.name}): no tokenizer, but prompts.source is "
                                            f"{self.exp.prompts.source!r}; use prompts.source: random_ids")
                tokenizers[spec.name] = tok
            self._sets[seq_len] = build_prompt_sets(self.passages(), tokenizers, seq_len,
                                                    self.exp.prompts.max_prompts, self.exp.prompts.source)
        return self._sets[seq_len]

    def check(self) -> None:
        """Pre-flight: the text source gives enough passages for every N (raises PromptSourceError)."""
        if self.exp.prompts.source != "random_ids":
            for n in self.exp.grid.seq_len:
                self.text_sets(n)

    def for_model(self, loaded: LoadedModel, seq_len: int) -> PromptSet:
        if self.exp.prompts.source == "random_ids":
            excluded = {loaded.mask_token_id} if loaded.mask_token_id is not None else set()
            return random_prompt_set(loaded.architecture.vocab_size, excluded, seq_len,
                                     self.exp.prompts.max_prompts, self.exp.seed)
        return self.text_sets(seq_len)[loaded.spec.name]


# --------------------------------------------------------------------------- one cell


def make_generator(cell: Cell, loaded: LoadedModel, cache: Optional[str] = None) -> Generator:
    """The generator a cell measures (`cache` overrides the cell's KV-cache mode)."""
    if cell.model.kind == "diffusion":
        return MaskedDiffusionGenerator(loaded.model, loaded.mask_token_id, cell.block_length, cell.sampler,
                                        cell.temperature, cell.cfg_scale or 0.0, cache or cell.cache,
                                        cell.threshold if cell.threshold is not None else 0.9,
                                        schedule=cell.schedule, eps=cell.eps if cell.eps is not None else 1e-3,
                                        threshold_steps=cell.threshold_steps or "cap",
                                        noise_layout=cell.noise_layout or "block")
    return make_ar_generator(loaded.model, cell.decode, cell.temperature)


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of positions where two [B, n_out] outputs hold the same token."""
    return float((a == b).float().mean())


def add_roofline(record: CellRecord, trace: GenerationTrace, loaded: LoadedModel, peaks: roofline.Peaks) -> None:
    """Analytic FLOPs/bytes of the generation and their rates against the peaks (median latency)."""
    arch = loaded.architecture
    record.flops_per_generation = roofline.generation_flops(trace.work, arch)
    record.min_bytes_per_generation = roofline.generation_min_bytes(
        trace.work, arch, roofline.BYTES_PER_PARAM[record.precision])
    record.achieved_tflops = roofline.achieved_tflops(record.flops_per_generation, record.latency_ms_median)
    record.achieved_tbps = roofline.achieved_tbps(record.min_bytes_per_generation, record.latency_ms_median)
    record.mfu = roofline.utilisation(record.achieved_tflops, peaks.tflops)
    record.mbu = roofline.utilisation(record.achieved_tbps, peaks.tbps)
    record.peak_tflops, record.peak_tbps, record.peak_source = peaks.tflops, peaks.tbps, peaks.source


def measure_repetition(cell: Cell, trace: GenerationTrace, clock: Clock, start, end) -> Repetition:
    """Metrics of one timed generation from its clock marks (after synchronisation)."""
    latency = metrics.e2e_latency_ms(clock.elapsed_ms(start, end))
    offsets = [clock.elapsed_ms(start, m) for m in trace.marks]
    rep = Repetition(latency_ms=latency,
                     tokens_per_s=metrics.throughput_tokens_per_s(cell.batch_size, cell.n_out, latency),
                     steps_executed=trace.steps_executed)
    if cell.model.kind == "autoregressive":
        rep.ttft_ms = metrics.ttft_ms(offsets)
        rep.itl_ms = metrics.mean_itl_ms(offsets)
    else:
        steps = metrics.step_latencies_ms(offsets)
        rep.step_ms_p50, rep.step_ms_p99 = metrics.percentile(steps, 50), metrics.percentile(steps, 99)
    return rep


def _summarise(record: CellRecord, reps: list[Repetition], trace: GenerationTrace) -> None:
    lat = [r.latency_ms for r in reps]
    record.repetitions, record.repeats = reps, len(reps)
    record.latency_ms_median = metrics.median(lat)
    record.latency_ms_min, record.latency_ms_max = min(lat), max(lat)
    record.latency_ms_cv = metrics.coefficient_of_variation(lat)
    record.tokens_per_s_median = metrics.median([r.tokens_per_s for r in reps])
    for name in ("ttft_ms", "itl_ms", "step_ms_p50", "step_ms_p99"):
        values = [getattr(r, name) for r in reps if getattr(r, name) is not None]
        if values:
            setattr(record, "ttft_ms_median" if name == "ttft_ms" else "itl_ms_median" if name == "itl_ms" else name,
                    metrics.median(values))
    record.steps_executed = trace.steps_executed
    record.forward_passes = trace.forward_passes
    record.forward_passes_per_token = metrics.forward_passes_per_token(trace.forward_passes, record.n_out)
    record.tokens_per_step_mean = record.n_out / trace.steps_executed


def new_record(cell: Cell, exp: Experiment, loaded: Optional[LoadedModel], env: dict, cell_id: str) -> CellRecord:
    return CellRecord(
        cell_id=cell_id, status="error", experiment=exp.name, model_name=cell.model.name,
        family=cell.model.family, kind=cell.model.kind, model_source=cell.model.source,
        weights=(loaded.weights if loaded else ("synthetic" if cell.model.synthetic else "pretrained")),
        batch_size=cell.batch_size, seq_len=cell.seq_len, prompt_len=cell.prompt_len, n_out=cell.n_out,
        steps=cell.steps, sampler=cell.sampler, cache=cell.cache, decode=cell.decode,
        block_length=cell.block_length, temperature=cell.temperature, cfg_scale=cell.cfg_scale,
        threshold=cell.threshold, schedule=cell.schedule, eps=cell.eps, threshold_steps=cell.threshold_steps,
        noise_layout=cell.noise_layout, precision=cell.precision, attention_backend=cell.attention,
        attention_kernel=loaded.attention_kernel if loaded else None, hardware=env["hardware"],
        warmup=exp.timing.warmup, repeats=exp.timing.repeats, environment=env,
        n_params=loaded.architecture.n_params if loaded else None,
        n_params_non_embedding=loaded.architecture.n_params_non_embedding if loaded else None,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


class _WarmupStepsDone(Exception):
    """Raised by the warm-up marker to end a diffusion warm-up after `timing.warmup_steps` steps."""


def warm_up(generator: Generator, ids: torch.Tensor, cell: Cell, timing: TimingSpec) -> Optional[int]:
    """Run the cell's warm-up generations; returns the denoising steps each ran (None = whole generations).

    A diffusion warm-up with `timing.warmup_steps` runs the real generation and stops it from the
    per-step marker: the same shapes and code path as the timed run, fewer iterations.
    """
    limit = timing.warmup_steps if cell.steps is not None else None
    if limit is not None:
        limit = min(limit, cell.steps)
    for _ in range(timing.warmup):
        if limit is None:
            generator.generate(ids, cell.n_out, steps=cell.steps)
            continue
        done = 0

        def count_step() -> None:
            nonlocal done
            done += 1
            if done >= limit:
                raise _WarmupStepsDone

        try:
            generator.generate(ids, cell.n_out, steps=cell.steps, marker=count_step)
        except _WarmupStepsDone:
            pass
    return limit


def another_repetition(timing: TimingSpec, reps: list[Repetition]) -> bool:
    """Whether one more timed repetition starts: fewer than `repeats` ran, and `max_timed_s` (if set)
    is not yet spent or fewer than `min_repeats` ran."""
    if len(reps) >= timing.repeats:
        return False
    if timing.max_timed_s is None or len(reps) < timing.min_repeats:
        return True
    return sum(r.latency_ms for r in reps) / 1000.0 < timing.max_timed_s


def _is_kernel_unavailable(exc: Optional[BaseException]) -> bool:
    """SDPA found no kernel among the allowed backends; also when wrapped (e.g. by torch.compile)."""
    while exc is not None:
        if isinstance(exc, RuntimeError) and "no available kernel" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def run_cell(cell: Cell, loaded: LoadedModel, prompts: PromptSet, exp: Experiment, clock: Clock,
             env: dict, cell_id: str, peaks: Optional[roofline.Peaks] = None) -> CellRecord:
    """Warm up, measure R repetitions and return the record (never raises for OOM)."""
    record = new_record(cell, exp, loaded, env, cell_id)
    record.clock = getattr(clock, "name", type(clock).__name__)
    record.prompt_source = prompts.source
    t0 = time.perf_counter()
    generator = make_generator(cell, loaded)
    ids, record.passage_ids = prompts.batch(cell.batch_size, loaded.device)
    steps = cell.steps
    torch.manual_seed(exp.seed)
    try:
        with kernel_context(loaded.attention_kernel):
            record.warmup_steps = warm_up(generator, ids, cell, exp.timing)
            clock.synchronize()
            reset_peak(loaded.device)
            reps: list[Repetition] = []
            while another_repetition(exp.timing, reps):
                start = clock.mark()
                trace = generator.generate(ids, cell.n_out, steps=steps, marker=clock.mark)
                end = clock.mark()
                clock.synchronize()
                reps.append(measure_repetition(cell, trace, clock, start, end))
            mem = read_peak(loaded.device)
        _summarise(record, reps, trace)
        record.peak_mem_reserved_gib, record.peak_mem_allocated_gib = mem.reserved_gib, mem.allocated_gib
        record.process_max_rss_gib = mem.process_max_rss_gib
        add_roofline(record, trace, loaded, peaks or roofline.datasheet_peaks(env["hardware"]))
        answers = metrics.answer_tokens(trace.output_ids.tolist(), loaded.eos_token_id)
        record.answer_tokens_mean = sum(answers) / len(answers)
        record.answer_tokens_per_s_median = metrics.throughput_tokens_per_s(
            cell.batch_size, record.answer_tokens_mean, record.latency_ms_median)
        record.outputs = _outputs(trace, loaded)
        if cell.cache not in (None, "none"):
            with kernel_context(loaded.attention_kernel):
                uncached = make_generator(cell, loaded, cache="none").generate(ids, cell.n_out, steps=steps)
            record.agreement_with_uncached = agreement(trace.output_ids, uncached.output_ids)
        if (exp.quality.generate and cell.batch_size == min(exp.grid.batch_size) and prompts.reference_ids
                and loaded.tokenizer is not None):
            with kernel_context(loaded.attention_kernel):
                record.generations = generate_for_quality(generator, prompts, exp.quality.batch_size, cell.n_out,
                                                          steps, loaded.device, loaded.tokenizer)
        record.status = "ok"
    except torch.OutOfMemoryError as exc:
        record.status, record.error = "oom", str(exc).splitlines()[0][:500]
    except Exception as exc:  # recorded; the sweep goes on
        if _is_kernel_unavailable(exc) and not exp.allow_attention_mismatch:
            raise AttentionBackendError(
                f"{cell.model.name}: attention kernel {loaded.attention_kernel!r} (requested "
                f"{exp.attention!r}) cannot run here: {str(exc).splitlines()[0]}. Choose another "
                f"attention backend for all models, or set allow_attention_mismatch: true") from exc
        if _is_kernel_unavailable(exc) and loaded.attention_kernel == "sdpa_flash":
            # allowed mismatch: this cell runs on unrestricted SDPA, and its row says so
            log.warning("cell %s (%s): flash backend unavailable, re-running with unrestricted SDPA "
                        "(allow_attention_mismatch)", cell_id, cell.describe())
            fallback = dataclasses.replace(loaded, attention_kernel="sdpa")
            record = run_cell(cell, fallback, prompts, exp, clock, env, cell_id, peaks)
            record.attention_kernel = "sdpa (fallback: sdpa_flash unavailable)"
            return record
        log.exception("cell %s (%s) failed", cell_id, cell.describe())
        record.status, record.error = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"
    finally:
        if loaded.device.type == "cuda":
            torch.cuda.empty_cache()
    record.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record.wall_s = time.perf_counter() - t0
    return record


def _outputs(trace: GenerationTrace, loaded: LoadedModel) -> dict:
    ids = trace.output_ids.tolist()
    out = {"token_ids": ids}
    if loaded.tokenizer is not None:
        out["text"] = loaded.tokenizer.batch_decode(ids, skip_special_tokens=False)
    return out


# --------------------------------------------------------------------------- the sweep


def run_experiment(exp: Experiment, shard: tuple[int, int] = (0, 1), progress: bool = True,
                   time_budget_s: Optional[float] = None) -> RunSummary:
    """Run this shard's unfinished cells; merge the results; return what happened.

    time_budget_s: start no new cell after this many seconds (finished cells are kept; a later run
    resumes with the rest). At least one cell always runs, so every run makes progress.
    """
    started = time.perf_counter()

    def out_of_time() -> bool:
        return (time_budget_s is not None and bool(summary.records)
                and time.perf_counter() - started > time_budget_s)

    device = resolve_device(exp.device)
    env = capture_environment(device, project_root())
    hardware = env["hardware"]
    store = ResultStore(exp.resolve(exp.output_dir))
    cells = select_shard(expand_cells(exp), shard)
    todo = [c for c in cells if not store.is_done(c.cell_id(hardware))]
    summary = RunSummary(cells_in_shard=len(cells), skipped=len(cells) - len(todo))
    log.info("shard %d/%d: %d cells, %d already done, %d to run on %s", shard[0], shard[1], len(cells),
             summary.skipped, len(todo), hardware)
    prompts = PromptProvider(exp)
    prompts.check()
    clock = clock_for(device)
    peaks = roofline.peaks_for(hardware, store.root / "calibration.json")
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress)
    for spec in exp.models:
        model_cells = [c for c in todo if c.model.name == spec.name]
        if out_of_time():
            summary.out_of_time += len(model_cells)
            continue
        if not model_cells:
            continue
        loaded = load_model(spec, exp, device)
        for cell in model_cells:
            if out_of_time():
                summary.out_of_time += 1
                continue
            cell_id = cell.cell_id(hardware)
            bar.set_postfix_str(cell.describe())
            record = run_cell(cell, loaded, prompts.for_model(loaded, cell.seq_len), exp, clock, env, cell_id, peaks)
            store.write(record)
            summary.records.append(cell_id)
            if record.status == "ok":
                summary.ok += 1
                log.info("cell %s %s: ok, L_e2e median %.2f ms (cv %.1f%%), %.1f tok/s, weights=%s", cell_id,
                         cell.describe(), record.latency_ms_median, 100 * record.latency_ms_cv,
                         record.tokens_per_s_median, record.weights)
            else:
                summary.oom += record.status == "oom"
                summary.errors += record.status == "error"
                log.warning("cell %s %s: %s (%s)", cell_id, cell.describe(), record.status, record.error)
            bar.update(1)
        del loaded
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bar.close()
    if summary.out_of_time:
        log.warning("time budget of %.0f s reached: %d cells left for the next run", time_budget_s,
                    summary.out_of_time)
    summary.csv_path = str(store.merge())
    return summary
