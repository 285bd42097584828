"""How busy the machine was around a cell: load average, CPU steal, other processes on the GPU.

Read before and after each cell and stored in its row, so a timing taken while something else ran is
visible, and the analysis can refuse a verdict drawn from it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..results import LoadStats


@dataclass(frozen=True)
class LoadSample:
    load_1m: float  # 1-minute load average (runnable processes), NaN where unreadable
    steal_ticks: int  # cumulative CPU time stolen by the hypervisor, in clock ticks (/proc/stat)
    total_ticks: int  # cumulative CPU time of all kinds, in clock ticks
    gpu_other_processes: float  # compute processes on the GPU besides this one; NaN without NVML or a GPU


def _proc_stat() -> tuple[int, int]:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0, 0
    ticks = [int(x) for x in fields]
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks)


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


def sample(device=None) -> LoadSample:
    """The machine's load now (`device`: the torch device measured; a CUDA device's GPU is looked at too)."""
    device_index = (device.index or 0) if device is not None and device.type == "cuda" else None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = math.nan
    steal, total = _proc_stat()
    return LoadSample(load, steal, total, _gpu_other_processes(device_index))


def between(before: LoadSample, after: LoadSample) -> LoadStats:
    """The load around a cell: the load average at both ends, the share of CPU time stolen in between (%),
    and the most other GPU processes seen at either end."""
    total = after.total_ticks - before.total_ticks
    steal = 100.0 * (after.steal_ticks - before.steal_ticks) / total if total > 0 else math.nan
    others = [x for x in (before.gpu_other_processes, after.gpu_other_processes) if not math.isnan(x)]
    return LoadStats(before.load_1m, after.load_1m, steal, max(others) if others else math.nan)
