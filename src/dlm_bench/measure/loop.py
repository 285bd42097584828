"""The one measurement loop: every timed generation of the project, and every pair, runs through here.

- `timed_run`: the timed region. Two clock marks around one `generate` call, a mark at every token (AR)
  or denoising step (diffusion) through the generator's marker, one synchronisation after the end
  mark. Cells, engine cells, the pairs step, the engines' per-prompt pairs, the perf matrix and the
  benchmark scripts all time this region and nothing else.
- `warm_up`: the untimed generations before it (a diffusion warm-up may stop after a few steps).
- `measure_runs`: warm up, then timed runs until the timing settings say stop (`another_repetition`).
- `Arm` and `time_pair`: two generators timed interleaved, A B / B A in an order drawn per pair.

A generator is anything with `generate(prompt_ids, n_out, steps=, marker=) -> GenerationTrace`: the
project's PyTorch generators, the llama.cpp and OpenAI engines (engines.generator.EngineGenerator),
a bare call (`CallGenerator`).
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple, Optional

import torch

from ..config import TimingSpec
from ..generation import GenerationTrace, Generator
from ..models.attention import kernel_context
from ..results import Repetition
from .clock import Clock
from .load import CLOCK_TICKS, process_ticks
from .repeats import another_repetition


@dataclass
class TimedRun:
    """One timed generation: L_e2e and the offset of every mark from the start (ms), and its trace."""

    latency_ms: float
    mark_offsets_ms: list[float]
    trace: GenerationTrace


def timed_run(generator: Generator, ids: torch.Tensor, n_out: int, steps: Optional[int], clock: Clock) -> TimedRun:
    """The timed region: marks around one generation and at each of its steps or tokens, then one sync.

    An engine's trace carries its own timing of the same work (`trace.report.latency_ms`: the requests'
    wall time for a server, the generation time a CLI prints, without the model load its process does
    first), which is then the run's L_e2e."""
    start = clock.mark()
    trace = generator.generate(ids, n_out, steps=steps, marker=clock.mark)
    end = clock.mark()
    clock.synchronize()
    latency = clock.elapsed_ms(start, end) if trace.report is None else trace.report.latency_ms
    return TimedRun(latency, [clock.elapsed_ms(start, m) for m in trace.marks], trace)


class _WarmupStepsDone(Exception):
    """Raised by the warm-up marker to end a diffusion warm-up after its step limit."""


def warm_up(generator: Generator, ids: torch.Tensor, n_out: int, steps: Optional[int], count: int,
            step_limit: Optional[int] = None) -> Optional[int]:
    """Run `count` untimed generations; returns the denoising steps each ran (None = whole generations).

    With `step_limit` (diffusion), each warm-up runs the real generation and stops it from the per-step
    marker after that many steps: the same shapes and code path as the timed run, fewer iterations. A
    generator that never calls its marker (an engine) runs whole generations.
    """
    limit = min(step_limit, steps) if step_limit and steps is not None else None
    for _ in range(count):
        if limit is None:
            generator.generate(ids, n_out, steps=steps)
            continue
        done = 0

        def count_step() -> None:
            nonlocal done
            done += 1
            if done >= limit:
                raise _WarmupStepsDone

        try:
            generator.generate(ids, n_out, steps=steps, marker=count_step)
        except _WarmupStepsDone:
            pass
    return limit


def measure_runs(generator: Generator, ids: torch.Tensor, n_out: int, steps: Optional[int], clock: Clock,
                 timing: TimingSpec, repetition: Callable[[TimedRun], Repetition],
                 after_warmup: Optional[Callable[[], None]] = None
                 ) -> tuple[list[TimedRun], list[Repetition], Optional[int]]:
    """A cell's measurement: `timing.warmup` warm-ups (stopped after `timing.warmup_steps` steps), then
    `after_warmup()` (e.g. the memory peaks reset), then timed runs while `another_repetition` says so;
    `repetition(run)` turns each into the record's repetition, which the policy counts. Returns the timed
    runs, their repetitions and the warm-ups' step limit."""
    warmup_steps = warm_up(generator, ids, n_out, steps, timing.warmup, timing.warmup_steps)
    clock.synchronize()
    if after_warmup is not None:
        after_warmup()
    runs: list[TimedRun] = []
    repetitions: list[Repetition] = []
    while another_repetition(timing, repetitions):
        run = timed_run(generator, ids, n_out, steps, clock)
        runs.append(run)
        repetitions.append(repetition(run))
    return runs, repetitions, warmup_steps


@dataclass
class CallGenerator:
    """A bare call `run(prompt_ids) -> output ids [B, N_out]` as a generator (reference code in the benchmark
    scripts, a generation timed without the per-step marks): its trace has no marks."""

    run: Callable[[torch.Tensor], torch.Tensor]

    def generate(self, prompt_ids: torch.Tensor, n_out: int, *, steps: Optional[int] = None,
                 marker=None) -> GenerationTrace:
        output = self.run(prompt_ids)
        return GenerationTrace(output_ids=output, marks=[], forward_passes=0, steps_executed=0)


@dataclass
class Arm:
    """One side of a pair: a generator, what it generates, the attention kernel it runs under (None: as
    loaded), the seed set before each generation (None: none set) and the long-lived processes of this machine
    that do its work (an engine's server: `pids`; none for a torch arm, which runs in this process); keeps
    every timed run."""

    generator: Generator
    ids: torch.Tensor
    n_out: int
    steps: Optional[int] = None
    kernel: Optional[str] = None
    seed: Optional[int] = None
    runs: list[TimedRun] = field(default_factory=list)
    pids: tuple[int, ...] = ()

    def _context(self):
        return kernel_context(self.kernel) if self.kernel is not None else nullcontext()

    def warm_up(self, count: int = 1) -> None:
        """`count` untimed whole generations (compilation, allocator and caches settle)."""
        with self._context():
            for _ in range(count):
                self._seed()
                warm_up(self.generator, self.ids, self.n_out, self.steps, 1)

    def generate_ms(self, clock: Clock) -> float:
        """One timed run (kept in `runs`), ms."""
        self._seed()
        with self._context():
            run = timed_run(self.generator, self.ids, self.n_out, self.steps, clock)
        self.runs.append(run)
        return run.latency_ms

    def _seed(self) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed)

    @property
    def last(self) -> Optional[torch.Tensor]:
        """The output ids of the last timed run."""
        return self.runs[-1].trace.output_ids if self.runs else None


@dataclass
class PairTiming:
    """What `time_pair` measured: the orders ("RC" / "CR" per pair), each arm's latencies in pair order (ms),
    and for each timed run the CPU time (ms) the other arm's processes used while it ran: an engine's server
    during a torch run, this process (the torch arm's, and the engine's HTTP client) during an engine run;
    NaN where both arms run in this process and cannot be told apart."""

    order: str = ""
    reference_ms: list[float] = field(default_factory=list)
    contender_ms: list[float] = field(default_factory=list)
    reference_other_cpu_ms: list[float] = field(default_factory=list)
    contender_other_cpu_ms: list[float] = field(default_factory=list)
    solo_order: str = ""  # which arm's block of runs alone came first ("RC" or "CR"); "" without such blocks
    reference_solo_ms: list[float] = field(default_factory=list)  # each arm's runs alone, back to back (ms)
    contender_solo_ms: list[float] = field(default_factory=list)


def _cpu_ms(pids: tuple[int, ...], this_process: bool) -> float:
    """CPU time used so far (ms) by those processes, or (`this_process`) by this one and its waited-for
    children; NaN for neither."""
    if not (pids or this_process):
        return math.nan
    ticks = sum(process_ticks(p) for p in pids) if pids else process_ticks("self", children=True)
    return 1000.0 * ticks / CLOCK_TICKS


@contextmanager
def paused(pids: tuple[int, ...]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) for the duration, continued (SIGCONT) after, however it ends: an engine
    that cannot run cannot take CPU from the arm being timed."""
    stopped = []
    try:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            except ProcessLookupError:
                pass
        yield
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


class _Side(NamedTuple):
    """One side of a pair as `time_pair` fills it: its arm, the other arm, and its lists in the PairTiming."""

    arm: Arm
    other: Arm
    ms: list[float]
    other_cpu_ms: list[float]
    solo_ms: list[float]


def time_pair(reference: Arm, contender: Arm, repeats: int, warmup: int, clock: Clock, rng: random.Random,
              idle_gap_s: float = 0.0, beside_pids: tuple[int, ...] = (), solo: int = 0) -> PairTiming:
    """Warm up each arm; then (`solo` > 0) time each arm `solo` times alone, back to back, one block per arm in
    an order drawn from `rng` (the arm's cell timed again at the pair's moment, to compare its runs inside the
    pair with); then time `repeats` pairs in an order drawn per pair ("RC" or "CR") from `rng`. `idle_gap_s` of
    sleep before every timed run (an engine's threads stop polling before the other arm starts), and while an
    arm runs the other arm's processes (`Arm.pids`) are stopped. Each paired run's other-side CPU time is
    recorded (PairTiming): the other arm's processes', and those of `beside_pids` (an engine left running beside
    a self-pair, watched but not stopped)."""
    reference.warm_up(warmup)
    contender.warm_up(warmup)
    timing = PairTiming()
    arms = {"R": _Side(reference, contender, timing.reference_ms, timing.reference_other_cpu_ms,
                       timing.reference_solo_ms),
            "C": _Side(contender, reference, timing.contender_ms, timing.contender_other_cpu_ms,
                       timing.contender_solo_ms)}

    def timed(side: str) -> tuple[float, float]:
        """One run of that side's arm, the other arm stopped: its latency (ms), the other side's CPU (ms)."""
        arm, other = arms[side].arm, arms[side].other
        own_pids = tuple(getattr(arm, "pids", ()))
        other_pids = tuple(p for p in getattr(other, "pids", ()) if p not in own_pids)  # a self-pair shares them
        other_is_this_process = bool(own_pids) and not getattr(other, "pids", ())
        if idle_gap_s:
            time.sleep(idle_gap_s)
        watched = other_pids + tuple(p for p in beside_pids if p not in other_pids + own_pids)
        with paused(other_pids):
            before = _cpu_ms(watched, other_is_this_process)
            latency = arm.generate_ms(clock)
            return latency, _cpu_ms(watched, other_is_this_process) - before

    if solo:
        timing.solo_order = rng.choice(("RC", "CR"))
        for side in timing.solo_order:
            arms[side].solo_ms.extend(timed(side)[0] for _ in range(solo))
    for _ in range(repeats):
        this_pair = rng.choice(("RC", "CR"))
        for side in this_pair:
            latency, other_cpu = timed(side)
            arms[side].ms.append(latency)
            arms[side].other_cpu_ms.append(other_cpu)
        timing.order += this_pair
    return timing
