"""How busy the machine is around a measurement, and the guard that waits for quiet before one.

A timing is a measurement of the whole machine, so every cell and pair records the work that was not its
own: the CPU time other processes used (cores, from /proc/stat less this process and the engine processes
that belong to the measurement), the CPU time the hypervisor stole (%), the 1-minute load average, and on a
GPU the other processes on it. `LoadGuard.wait_for_quiet` samples the machine before a cell or pair and
waits, bounded, while it is busy; `LoadGuard.judge` names what made a measurement contended (the load
before it, after any wait, or the load during it), or says it was quiet. A contended row carries no verdict.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..config import LoadGuardSpec
from ..results import QUIET, LoadStats

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc times are in these per second
MIN_JUDGED_WINDOW_S = 0.25  # a measurement shorter than this is judged by the load before it only (tick resolution)


@dataclass(frozen=True)
class LoadSample:
    """The machine's counters at one moment."""

    at_s: float  # time.monotonic() seconds
    load_1m: float  # 1-minute load average (runnable processes), NaN where unreadable
    busy_ticks: int  # all CPUs' time in user, nice, system, irq and softirq since boot, in clock ticks
    steal_ticks: int  # all CPUs' time stolen by the hypervisor, in clock ticks
    total_ticks: int  # all CPUs' time of every kind, in clock ticks
    own_ticks: int  # CPU time of this process, its waited-for children and the measurement's engine processes
    gpu_other_processes: float  # compute processes on the GPU besides this one; NaN without NVML or a GPU


def _proc_stat() -> tuple[int, int, int]:
    """(busy, steal, total) ticks of all CPUs; zeros where /proc/stat cannot be read."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return 0, 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal, sum(fields[:8])


def process_ticks(pid: int | str, children: bool = False) -> int:
    """utime + stime of one process, all threads (with its waited-for children's when `children`), in clock
    ticks; 0 when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text[text.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime + (cutime + cstime if children else 0)


def _gpu_other_processes(device_index: int | None) -> float:
    if device_index is None:
        return math.nan
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        return float(sum(p.pid != os.getpid() for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)))
    except Exception:  # no NVML library or no permission: unknown, not zero
        return math.nan


def sample(device=None, own_pids: Iterable[int] = ()) -> LoadSample:
    """The machine's counters now (`device`: the torch device measured, whose GPU is looked at too;
    `own_pids`: engine processes whose CPU time is part of the measurement, not other work)."""
    device_index = (device.index or 0) if device is not None and device.type == "cuda" else None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = math.nan
    busy, steal, total = _proc_stat()
    own = process_ticks("self", children=True) + sum(process_ticks(p) for p in own_pids)
    return LoadSample(time.monotonic(), load, busy, steal, total, own, _gpu_other_processes(device_index))


@dataclass(frozen=True)
class Interval:
    """The load between two samples: other processes' CPU use (cores), CPU steal (%), the most other GPU
    processes at either end, and the interval's length (s)."""

    seconds: float
    other_cpu_cores: float
    cpu_steal_pct: float
    gpu_other_processes: float
    load_1m_before: float
    load_1m_after: float


def between(before: LoadSample, after: LoadSample) -> Interval:
    """What other work did between two samples (NaN where the counters could not be read)."""
    seconds = after.at_s - before.at_s
    total = after.total_ticks - before.total_ticks
    steal = 100.0 * (after.steal_ticks - before.steal_ticks) / total if total > 0 else math.nan
    others_ticks = (after.busy_ticks - before.busy_ticks) - (after.own_ticks - before.own_ticks)
    others = max(0.0, others_ticks / CLOCK_TICKS / seconds) if seconds > 0 and total > 0 else math.nan
    gpu = [x for x in (before.gpu_other_processes, after.gpu_other_processes) if not math.isnan(x)]
    return Interval(seconds, others, steal, max(gpu) if gpu else math.nan, before.load_1m, after.load_1m)


def busy_reason(interval: Interval, spec: LoadGuardSpec) -> Optional[str]:
    """Why an interval counts as busy under the guard's limits, or None when it is quiet."""
    reasons = []
    if interval.other_cpu_cores > spec.max_other_cores:
        reasons.append(f"other processes used {interval.other_cpu_cores:.2f} CPU cores (limit {spec.max_other_cores:g})")
    if interval.cpu_steal_pct > spec.max_steal_pct:
        reasons.append(f"the hypervisor stole {interval.cpu_steal_pct:.0f}% of the CPU time "
                       f"(limit {spec.max_steal_pct:g}%)")
    if interval.gpu_other_processes > spec.max_gpu_other_processes:
        reasons.append(f"{interval.gpu_other_processes:.0f} other processes on the GPU "
                       f"(limit {spec.max_gpu_other_processes})")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class Quiet:
    """The guard's look before a measurement: the last probe, the seconds waited, and why it was still busy."""

    probe: Interval
    waited_s: float
    busy: Optional[str]  # None: quiet


NOT_LOOKED = Quiet(Interval(0.0, math.nan, math.nan, math.nan, math.nan, math.nan), 0.0, None)  # guard switched off


class LoadGuard:
    """Waits for a quiet machine before each measurement and judges the measurement's load afterwards.

    `sleep` and `probe` are injectable for tests; the wait is bounded per measurement (`wait_s`) and per run
    (`wait_budget_s`): once the run's budget is spent, a busy machine is measured at once and marked."""

    def __init__(self, spec: LoadGuardSpec, device=None, sleep: Callable[[float], None] = time.sleep):
        self.spec, self.device, self._sleep = spec, device, sleep
        self.waited_total_s = 0.0

    def probe(self, own_pids: Iterable[int] = ()) -> Interval:
        """The load over `probe_s` seconds of this process doing nothing."""
        pids = tuple(own_pids)
        before = sample(self.device, pids)
        self._sleep(self.spec.probe_s)
        return between(before, sample(self.device, pids))

    def wait_for_quiet(self, what: str, own_pids: Iterable[int] = ()) -> Quiet:
        """Probe; while busy, and while the per-measurement and per-run limits allow, wait and probe again.
        `what` names the measurement in the one log line a wait writes."""
        if not self.spec.enabled:
            return NOT_LOOKED
        pids = tuple(own_pids)
        probe = self.probe(pids)
        busy = busy_reason(probe, self.spec)
        if busy is None:
            return Quiet(probe, 0.0, None)
        allowed = min(self.spec.wait_s, max(0.0, self.spec.wait_budget_s - self.waited_total_s))
        if allowed > 0:
            log.warning("%s: the machine is busy (%s); waiting up to %.0f s for quiet", what, busy, allowed)
        waited, start = 0.0, time.monotonic()
        while busy is not None and waited < allowed:
            self._sleep(min(self.spec.poll_s, allowed - waited))
            probe = self.probe(pids)
            busy = busy_reason(probe, self.spec)
            waited = time.monotonic() - start
        self.waited_total_s += waited
        if busy is not None:
            log.warning("%s: still busy after %.0f s (%s); measured now and marked contended", what, waited, busy)
        return Quiet(probe, waited, busy)

    def judge(self, quiet: Quiet, during: Interval) -> str:
        """The measurement's contention: QUIET, or what made it contended (the load before it after any wait,
        or the load during it when it lasted long enough to judge)."""
        if not self.spec.enabled:
            return ""
        reasons = []
        if quiet.busy:
            reasons.append(f"before: {quiet.busy}" + (f" after waiting {quiet.waited_s:.0f} s" if quiet.waited_s else ""))
        busy_during = busy_reason(during, self.spec) if during.seconds >= MIN_JUDGED_WINDOW_S else None
        if busy_during:
            reasons.append(f"during: {busy_during}")
        return "; ".join(reasons) or QUIET

    def stats(self, quiet: Quiet, during: Interval) -> LoadStats:
        """The record's load: the measurement's own interval, the probe before it, the wait and the judgement."""
        return LoadStats(during.load_1m_before, during.load_1m_after, during.cpu_steal_pct,
                         during.gpu_other_processes, other_cpu_cores=during.other_cpu_cores,
                         other_cpu_cores_before=quiet.probe.other_cpu_cores, waited_for_quiet_s=quiet.waited_s,
                         contention=self.judge(quiet, during))
