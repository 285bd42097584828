"""The loop over cells: skip finished ones, load each model once, measure each cell, write its record.

One cell, top to bottom:
1. `run_cell` takes the cell's B prompts and tries the attention kernels it may use, in order
   (the requested one; with `allow_attention_mismatch`, unrestricted SDPA after it);
2. `measure` warms up, resets the peak-memory counters, times R generations with clock marks
   around and inside each, and reads the peaks: nothing else;
3. the untimed extras (agreement with the uncached sampler, the quality generations) run in their
   own guard: an error there is recorded beside the timing and never discards it;
4. `new_record` builds the cell's `CellRecord` once from those parts.
An out-of-memory error in the measurement is a result (`status=oom`); any other error is recorded
(`status=error`) and the sweep goes on; the next run retries it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

import torch
from tqdm import tqdm

from .. import registry
from ..registry import AR, DIFFUSION, IN_PROCESS
from ..config import PRECISIONS, Cell, Experiment, expand_cells, project_root, select_shard
from ..generation import GenerationTrace, Generator
from ..engines import Engine, EngineError
from ..engines import measure as engine_measure
from ..engines.generator import EngineGenerator
from ..engines.pool import EnginePool
from ..generation.cell_generator import make_generator
from ..metrics import timing as metrics
from ..measure.clock import Clock, clock_for
from ..measure.environment import capture_environment, resolve_device
from ..measure.memory import read_peak, reset_peak
from ..measure.loop import TimedRun, measure_runs
from ..measure import load as machine_load
from ..measure import roofline
from ..models.attention import kernel_context
from ..models.loader import LoadedModel, LoadSettings, each_loaded
from ..workload.generations import generate_for_quality
from ..workload.prompts import PromptProvider, PromptSet
from ..results import (AnswerStats, CellRecord, EngineStats, LoadStats, MemoryStats, Repetition, ResultStore,
                      TimingStats, WorkStats)

log = logging.getLogger(__name__)

FALLBACK_LABEL = "sdpa (fallback: sdpa_flash unavailable)"


class AttentionBackendError(RuntimeError):
    """The requested attention kernel cannot run for a model (and mismatches are not allowed)."""


@dataclass
class RunSummary:
    cells_in_shard: int
    skipped: int
    ok: int = 0
    out_of_time: int = 0  # cells left for a later run because the time budget ran out
    busy: int = 0  # cells another run was measuring (left to it)
    oom: int = 0
    errors: int = 0
    csv_path: Optional[str] = None
    records: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunContext:
    """What every cell of one run shares: the experiment's name, the environment, the clock, the peaks, and
    the guard that waits for a quiet machine before each cell."""

    experiment: str
    environment: dict
    clock: Clock
    peaks: roofline.Peaks
    guard: machine_load.LoadGuard

    @property
    def hardware(self) -> str:
        return self.environment["hardware"]


# --------------------------------------------------------------------------- measurement


@dataclass
class Measurement:
    """What `measure` saw, for a torch cell and an engine cell alike: every timed repetition, the last one's
    trace, the memory peaks (NaN for an engine: its memory is not this process's), the denoising steps each
    warm-up ran (None = whole generations), the machine's load, and (engines) the answers over every timed run
    whose returned token count was not N_out."""

    repetitions: list[Repetition]
    trace: GenerationTrace
    memory: MemoryStats
    warmup_steps: Optional[int]
    load: LoadStats
    answers_not_n_out: int = 0


def repetition(cell: Cell, run: TimedRun) -> Repetition:
    """The metrics of one timed run of a cell: L_e2e and T_gen, and TTFT / ITL from the per-token marks
    (AR) or the step latencies from the per-step marks (diffusion). An engine's trace carries its own
    account of the batch (streamed TTFT / ITL, logged step times), which takes the marks' place."""
    rep = Repetition(latency_ms=run.latency_ms,
                     tokens_per_s=metrics.throughput_tokens_per_s(cell.batch_size, cell.n_out, run.latency_ms),
                     steps_executed=run.trace.steps_executed)
    report = run.trace.report
    if cell.kind == AR:
        if report is not None:
            rep.ttft_ms = metrics.mean_finite([a.ttft_ms for a in report.answers])
            rep.itl_ms = metrics.mean_finite([a.itl_ms for a in report.answers])
        else:
            rep.ttft_ms, rep.itl_ms = metrics.ttft_ms(run.mark_offsets_ms), metrics.mean_itl_ms(run.mark_offsets_ms)
    else:
        steps = report.step_ms if report is not None else metrics.step_latencies_ms(run.mark_offsets_ms)
        rep.step_ms_p50, rep.step_ms_p99 = metrics.percentile(steps, 50), metrics.percentile(steps, 99)
    return rep


def measure(generator: Generator, ids: torch.Tensor, cell: Cell, clock: Clock, device: torch.device,
            kernel: str, guard: machine_load.LoadGuard, quiet: machine_load.Quiet,
            engine_pids: Optional[tuple[int, ...]] = None) -> Measurement:
    """The cell's runs through the one loop (measure.loop.measure_runs), with the memory peaks around the
    timed runs and the machine's load around the whole (`quiet`: the guard's look before it). `engine_pids`:
    the cell runs in an engine (its generator an EngineGenerator) whose processes these are; their CPU time is
    the measurement's, and the memory peaks are not read."""
    pids = engine_pids or ()
    before = machine_load.sample(device, pids)
    with kernel_context(kernel):
        runs, reps, warmup_steps = measure_runs(generator, ids, cell.n_out, cell.steps, clock, cell.settings.timing,
                                                lambda run: repetition(cell, run), after_warmup=lambda: reset_peak(device))
        memory = read_peak(device) if engine_pids is None else MemoryStats(math.nan, math.nan, math.nan)
    short = sum(a.tokens_returned != cell.n_out for run in runs if run.trace.report is not None
                for a in run.trace.report.answers)
    return Measurement(reps, runs[-1].trace, memory, None if engine_pids is not None else warmup_steps,
                       guard.stats(quiet, machine_load.between(before, machine_load.sample(device, pids))), short)


# --------------------------------------------------------------------------- policy


def kernels_to_try(kernel: str, allow_mismatch: bool) -> list[tuple[str, str]]:
    """(kernel, label for the row) in the order a cell tries them: the requested kernel, then, when a
    mismatch is allowed and the request was SDPA's flash backend, unrestricted SDPA (labelled)."""
    options = [(kernel, kernel)]
    if allow_mismatch and kernel == "sdpa_flash":
        options.append(("sdpa", FALLBACK_LABEL))
    return options


def _is_kernel_unavailable(exc: Optional[BaseException]) -> bool:
    """SDPA found no kernel among the allowed backends; also when wrapped (e.g. by torch.compile)."""
    while exc is not None:
        if isinstance(exc, RuntimeError) and "no available kernel" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"


def _failure_line(cell: Cell, exc: Exception, what: str = "") -> str:
    """The one line a failure leaves in a record, logged: an engine's own reason (EngineError, a warning), or the
    exception's type and first line (with its traceback in the log)."""
    if isinstance(exc, EngineError):
        log.warning("cell %s: %s%s", cell.describe(), what, exc)
        return str(exc)
    log.exception("cell %s: %sfailed", cell.describe(), what)
    return _one_line(exc)


@dataclass
class Extras:
    """Untimed work after the measurement: agreement with the uncached sampler (cached samplers) and
    the generations over every prompt that the scoring pass reads. Each starts from the cell's seed, so
    a sampler's random draws are the same whatever the timing did before."""

    agreement_with_uncached: Optional[float] = None
    generations: list[dict] = field(default_factory=list)
    per_prompt: list[dict] = field(default_factory=list)  # engines: the per-prompt pass's rows
    error: Optional[str] = None


def run_extras(cell: Cell, loaded: LoadedModel, generator: Generator, kernel: str, ids: torch.Tensor,
               prompts: PromptSet) -> Extras:
    """The extras of a measured cell; an error or OOM here is recorded in `Extras.error`."""
    extras = Extras()
    try:
        with kernel_context(kernel):
            if cell.kind == DIFFUSION and registry.CACHES[cell.decoding.cache].keeps_kv:  # both from the seed
                torch.manual_seed(cell.settings.seed)
                cached = generator.generate(ids, cell.n_out, steps=cell.steps)
                torch.manual_seed(cell.settings.seed)
                uncached = make_generator(cell, loaded, cache=registry.uncached()).generate(ids, cell.n_out,
                                                                                         steps=cell.steps)
                extras.agreement_with_uncached = float((cached.output_ids == uncached.output_ids).float().mean())
            if (cell.settings.quality_batch_size is not None and prompts.reference_ids
                    and loaded.tokenizer is not None):
                torch.manual_seed(cell.settings.seed)  # random draws independent of how many repetitions ran
                extras.generations = generate_for_quality(generator, prompts, cell.settings.quality_batch_size,
                                                          cell.n_out, cell.steps, loaded.device, loaded.tokenizer)
    except Exception as exc:  # OOM included: the timing above stands
        log.warning("cell %s: extras failed (%s); the measurement is kept", cell.describe(), _one_line(exc))
        extras.error = _one_line(exc)
    return extras


def engine_extras(cell: Cell, loaded: LoadedModel, engine: Engine, prompts: PromptSet, ctx: RunContext,
                  ar_decode: str, per_prompt_count: int, pairs: int) -> Extras:
    """An engine cell's untimed extra: its per-prompt pass (per_prompt_count > 0), each prompt alone as interleaved
    pairs with the torch path doing the same work (`ar_decode`: the torch decode mode an AR engine is paired with);
    its rows and the engine's answers for the quality pass. A failure here is recorded in `Extras.error`."""
    extras = Extras()
    if not per_prompt_count:
        return extras
    try:
        reference = engine_measure.torch_reference(cell, ar_decode)
        torch.manual_seed(cell.settings.seed)
        records = engine_measure.run_prompt_pairs(engine, make_generator(reference, loaded), prompts, cell,
                                                  per_prompt_count, pairs, ctx.clock, loaded.device)
        extras.per_prompt = engine_measure.per_prompt_rows(records, cell, loaded.tokenizer, loaded.eos_token_id,
                                                           reference.describe())
        extras.generations = engine_measure.generations_of(records, prompts, loaded.tokenizer)
    except Exception as exc:  # the measurement stands; the per-prompt pass failed
        extras.error = f"per-prompt pairs: {_failure_line(cell, exc, 'per-prompt pairs: ')}"
    return extras


def new_record(cell: Cell, loaded: Optional[LoadedModel], ctx: RunContext, status: str, error: Optional[str],
               kernel_label: Optional[str], measurement: Optional[Measurement], extras: Extras,
               prompt_source: Optional[str], passage_ids: list[str], started_at: str, wall_s: float,
               engine: Optional[Engine] = None, kernel: Optional[str] = None) -> CellRecord:
    """The cell's record, built once from its parts (`loaded` is None when the model did not load; `engine`: the
    engine that ran an engine cell; `kernel`: the attention kernel a torch cell's measurement ran on)."""
    record = CellRecord(
        cell_id=cell.cell_id(ctx.hardware), identity=cell.identity(), status=status, experiment=ctx.experiment,
        weights=loaded.weights if loaded else ("synthetic" if cell.model.synthetic else "pretrained"),
        hardware=ctx.hardware, settings=cell.settings.as_dict(), environment=ctx.environment,
        attention_kernel=kernel_label or (loaded.attention_kernel if loaded else None), kernel=kernel,
        clock=ctx.clock.name,
        error=error, extras_error=extras.error, warmup=cell.settings.timing.warmup,
        n_params=loaded.architecture.n_params if loaded else None,
        n_params_non_embedding=loaded.architecture.n_params_non_embedding if loaded else None,
        prompt_source=prompt_source,
        passage_ids=passage_ids, started_at=started_at,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), wall_s=wall_s,
        agreement_with_uncached=extras.agreement_with_uncached, generations=extras.generations,
        per_prompt=extras.per_prompt)
    if measurement is None:
        return record
    trace = measurement.trace
    record.warmup_steps = measurement.warmup_steps
    record.repetitions = measurement.repetitions
    record.timing = TimingStats.from_repetitions(measurement.repetitions)
    record.memory = measurement.memory
    record.load = measurement.load
    if engine is not None:  # the engine's own account of its last batch
        batch = trace.report
        answer = batch.answers[0]
        record.work = WorkStats.of(answer.steps or cell.n_out, answer.forward_passes or answer.steps or cell.n_out,
                                   cell.n_out)
        ids_out = [engine_measure.answer_ids(loaded.tokenizer, a) for a in batch.answers]
        record.answers = AnswerStats.of(ids_out, loaded.eos_token_id, record.timing.latency_ms_median)
        record.outputs = {"token_ids": ids_out, "text": [a.text for a in batch.answers]}
        record.engine = EngineStats(
            engine_version=engine.version, engine_build=engine.build,
            engine_threads=float(engine.threads) if engine.threads else math.nan,
            engine_latency_ms=metrics.mean_finite([a.engine_ms for a in batch.answers]),
            answers_not_n_out=measurement.answers_not_n_out,
            agreement_with_torch=metrics.mean_finite([r["agreement_with_torch"] for r in extras.per_prompt]),
            per_prompt_speedup_median=metrics.median([r["speedup_vs_torch"] for r in extras.per_prompt]))
        return record
    record.work = WorkStats.of(trace.steps_executed, trace.forward_passes, cell.n_out)
    record.roofline = roofline.roofline_stats(trace.work, loaded.architecture,
                                              PRECISIONS[cell.precision].bytes_per_element,
                                              record.timing.latency_ms_median, ctx.peaks)
    output_ids = trace.output_ids.tolist()
    record.answers = AnswerStats.of(output_ids, loaded.eos_token_id, record.timing.latency_ms_median)
    record.outputs = {"token_ids": output_ids}
    if loaded.tokenizer is not None:
        record.outputs["text"] = loaded.tokenizer.batch_decode(output_ids, skip_special_tokens=False)
    return record


ENGINE_LABEL = "n/a (engine)"  # a row's attention_kernel when an engine ran it


@dataclass(frozen=True)
class EngineSettings:
    """What an engine cell needs beyond the cell: the pool that starts engines, the torch decode mode an AR
    engine's per-prompt pass pairs with, how many prompts that pass runs (0: none) and pairs per prompt."""

    pool: EnginePool
    ar_decode: str
    per_prompt_count: int
    pairs: int


def run_cell(cell: Cell, loaded: LoadedModel, prompts: PromptSet, ctx: RunContext,
             engines: Optional[EngineSettings] = None) -> CellRecord:
    """Measure one cell, torch or engine, through one path: the generator (the project's, tried on each kernel
    the cell may use; or the engine's, as an EngineGenerator), the one measurement, then the cell's extras
    (torch: agreement and quality generations; engine: its per-prompt pairs). Never raises for OOM or an engine
    failure: those are the record's status and one-line error."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    ids, passage_ids = prompts.batch(cell.batch_size, loaded.device)
    status, error, label, measurement, extras, engine, ran = "error", None, None, None, Extras(), None, None
    in_process = cell.engine == IN_PROCESS
    try:
        if not in_process:
            if engines is None:
                raise EngineError(f"engine {cell.engine!r}: no engine pool in this run")
            engine = engines.pool.engine_for(cell, loaded.tokenizer)
    except Exception as exc:  # the engine could not be had (build, export, server): recorded; the sweep goes on
        return new_record(cell, loaded, ctx, status, _failure_line(cell, exc), None, None, extras, prompts.source,
                          passage_ids, started_at, time.perf_counter() - t0)
    pids = engine.pids() if engine is not None else None  # an engine's own processes: their CPU is the measurement's
    options = kernels_to_try(loaded.attention_kernel, cell.settings.allow_attention_mismatch) if in_process else \
        [("none", ENGINE_LABEL)]
    quiet = ctx.guard.wait_for_quiet(f"cell {cell.describe()}", pids or ())
    for attempt, (kernel, kernel_label) in enumerate(options):
        torch.manual_seed(cell.settings.seed)
        generator = make_generator(cell, loaded) if in_process else EngineGenerator(engine)
        try:
            measurement = measure(generator, ids, cell, ctx.clock, loaded.device, kernel, ctx.guard, quiet, pids)
        except torch.OutOfMemoryError as exc:
            status, error = "oom", str(exc).splitlines()[0][:500]
            break
        except Exception as exc:  # recorded; the sweep goes on
            if in_process and _is_kernel_unavailable(exc):
                if attempt + 1 < len(options):
                    log.warning("cell %s: kernel %s unavailable, trying %s (allow_attention_mismatch)",
                                cell.describe(), kernel, options[attempt + 1][0])
                    continue
                raise AttentionBackendError(
                    f"{cell.model.name}: attention kernel {kernel!r} (requested {cell.attention_backend!r}) cannot "
                    f"run here: {str(exc).splitlines()[0]}. Choose another attention backend for all models, or set "
                    f"allow_attention_mismatch: true") from exc
            error = _failure_line(cell, exc)
            break
        finally:
            if loaded.device.type == "cuda":
                torch.cuda.empty_cache()
        status, label, ran = "ok", kernel_label, (kernel if in_process else None)
        extras = (run_extras(cell, loaded, generator, kernel, ids, prompts) if in_process else
                  engine_extras(cell, loaded, engine, prompts, ctx, engines.ar_decode, engines.per_prompt_count,
                                engines.pairs))
        break
    return new_record(cell, loaded, ctx, status, error, label or (ENGINE_LABEL if engine is not None else None),
                      measurement, extras, prompts.source, passage_ids, started_at, time.perf_counter() - t0, engine,
                      ran)


# --------------------------------------------------------------------------- the sweep


def run_experiment(exp: Experiment, shard: tuple[int, int] = (0, 1), progress: bool = True,
                   time_budget_s: Optional[float] = None, remeasure_contended: bool = False,
                   redo_before: Optional[str] = None, extra_steps: Optional[dict] = None) -> RunSummary:
    """Run this shard's unfinished cells (with `remeasure_contended`, and its cells marked contended; with
    `redo_before`, an ISO time, every cell measured before it; `extra_steps`: the parity refinement's cells
    besides the grid's, see config.expand_cells); merge the results; return what happened.

    time_budget_s: start no new cell after this many seconds (finished cells are kept; a later run
    resumes with the rest). At least one cell always runs, so every run makes progress.
    """
    started = time.perf_counter()
    device = resolve_device(exp.device)
    if device.type == "cpu" and exp.cpu_threads is not None:
        torch.set_num_threads(exp.cpu_threads)  # fixed for the whole run; every row records it
    environment = capture_environment(device, project_root())
    hardware = environment["hardware"]
    store = ResultStore(exp.results_dir)
    cells = select_shard(expand_cells(exp, extra_steps), shard)
    todo = [c for c in cells if not store.is_done(c.cell_id(hardware), remeasure_contended, redo_before)]
    summary = RunSummary(cells_in_shard=len(cells), skipped=len(cells) - len(todo))
    log.info("shard %d/%d: %d cells, %d already done, %d to run on %s", shard[0], shard[1], len(cells),
             summary.skipped, len(todo), hardware)
    prompts = PromptProvider(exp.prompts, exp.models, exp.base_dir, exp.seed)
    prompts.check(exp.grid.seq_len)
    ctx = RunContext(exp.name, environment, clock_for(device),
                     roofline.peaks_for(hardware, store.root / "calibration.json"),
                     machine_load.LoadGuard(exp.load_guard, device))

    def out_of_time() -> bool:
        return (time_budget_s is not None and bool(summary.records)
                and time.perf_counter() - started > time_budget_s)

    def keep(record: CellRecord, cell: Cell) -> None:
        """Write a finished cell's record and count it."""
        store.write(record)
        summary.records.append(record.cell_id)
        _count(summary, record, cell)

    def load_failed(spec, exc: Exception) -> None:
        """Every cell of a model that does not load becomes an error row (retried by the next run)."""
        error = f"model did not load: {_one_line(exc)}"
        log.error("%s: %s; its cells are recorded as errors and the sweep goes on", spec.name, error)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for cell in (c for c in todo if c.model.name == spec.name):
            keep(new_record(cell, None, ctx, "error", error, None, None, Extras(), None, [], now, 0.0), cell)
            bar.update(1)

    specs = (s for s in exp.models if any(c.model.name == s.name for c in todo) and not out_of_time())
    settings = LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir)
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress)
    # the engines' pool builds and starts nothing until a cell asks; it stops its servers however the sweep ends
    with EnginePool(exp, device, store.root / "engine_logs", progress) as pool:
        for loaded in each_loaded(specs, device, settings, on_error=load_failed):
            for cell in (c for c in todo if c.model.name == loaded.spec.name):
                if out_of_time():
                    break
                bar.set_postfix_str(cell.describe())
                cell_id = cell.cell_id(hardware)
                with store.claim(cell_id) as mine:
                    if not mine or store.is_done(cell_id, remeasure_contended, redo_before):  # another run has it
                        log.warning("cell %s %s: %s by another run on %s; left to it", cell_id, cell.describe(),
                                    "being measured" if not mine else "finished", store.root)
                        summary.busy += 1
                    else:
                        cell_prompts = prompts.for_model(loaded.spec.name, loaded.architecture.vocab_size,
                                                         loaded.mask_token_id, cell.seq_len)
                        keep(run_cell(cell, loaded, cell_prompts, ctx,
                                      EngineSettings(pool, exp.autoregressive.decode[0], per_prompt_count(exp, cell),
                                                     exp.engines.per_prompt_pairs)), cell)
                bar.update(1)
    bar.close()
    summary.out_of_time = len(todo) - len(summary.records) - summary.busy
    if summary.out_of_time:
        log.warning("time budget of %.0f s reached: %d cells left for the next run", time_budget_s,
                    summary.out_of_time)
    summary.csv_path = str(store.merge())
    return summary


def refined_steps(exp: Experiment) -> dict:
    """Every K the parity refinement wants for this study's published S_parity (selection.refine), given the
    cells and scores finished so far, together with the K it added before (found in the records)."""
    from ..results import QUALITY_FILE, read_quality, rows_frame
    from ..selection.baseline import split_engines
    from ..selection.pairs import best_parity_rows
    from ..selection.parity import parity_table
    from ..selection.parity_rule import ParityRule
    from ..selection.refine import published_rows, refinement, steps_beyond_the_grid

    store = ResultStore(exp.results_dir)
    every = rows_frame(store.records())
    if every.empty:
        return {}
    rows, engine_rows = split_engines(every)
    quality, rule = read_quality(store.root / QUALITY_FILE), ParityRule(exp.quality.parity_margin)
    parity = parity_table(rows, quality=quality, rule=rule)
    best = best_parity_rows(parity, engine_rows, quantized=exp.pairs.quantized_best, quality=quality, rule=rule)
    torch_cells = set(rows["cell_id"].astype(str))
    wanted = refinement(published_rows(parity, best, torch_cells), int(exp.grid.parity_resolution or 0),
                        exp.diffusion.block_length)
    found = steps_beyond_the_grid(rows, exp.grid.steps_for)
    return {key: wanted.get(key, set()) | found.get(key, set()) for key in set(wanted) | set(found)}


def per_prompt_count(exp: Experiment, cell: Cell) -> int:
    """Prompts of an engine cell's per-prompt pass: it runs one prompt at a time, so once, at the smallest B."""
    return exp.engines.per_prompt if cell.batch_size == min(exp.grid.batch_size) else 0


def _count(summary: RunSummary, record: CellRecord, cell: Cell) -> None:
    """Tally one finished cell and log its line."""
    if record.status == "ok":
        summary.ok += 1
        log.info("cell %s %s: ok, L_e2e median %.2f ms (cv %.1f%%), %.1f tok/s, weights=%s", record.cell_id,
                 cell.describe(), record.timing.latency_ms_median, 100 * record.timing.latency_ms_cv,
                 record.timing.tokens_per_s_median, record.weights)
        return
    summary.oom += record.status == "oom"
    summary.errors += record.status == "error"
    log.warning("cell %s %s: %s (%s)", record.cell_id, cell.describe(), record.status, record.error)
