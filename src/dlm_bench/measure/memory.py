"""Peak memory around the measured repetitions.

GPU: the allocator's peaks since `reset_peak`. Resident memory (both devices): Linux keeps a
high-water mark of the resident set (VmHWM) that writing 5 to /proc/self/clear_refs resets, so
`reset_peak` resets it and `read_peak` reads the cell's own peak RSS. That reset also resets the
process's ru_maxrss, so the lifetime maximum is kept here across resets.
"""

from __future__ import annotations

import math
import re
import resource
from pathlib import Path
from typing import Optional

import torch

from ..results import MemoryStats

GIB = 1024 ** 3
STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")

_earlier_peak_kib = 0  # the resident high-water mark before the last reset, KiB
_reset_done = False  # whether the last reset_peak reset the high-water mark


def _high_water_kib() -> Optional[int]:
    """VmHWM of this process, KiB (None where /proc does not report it)."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+)\s+kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def reset_peak(device: torch.device) -> None:
    """Reset the GPU allocator's peaks and the resident high-water mark (remembering the lifetime one)."""
    global _earlier_peak_kib, _reset_done
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = _high_water_kib()
    _reset_done = False
    if before is None:
        return
    _earlier_peak_kib = max(_earlier_peak_kib, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    try:
        CLEAR_REFS.write_text("5")
        _reset_done = True
    except OSError:
        pass


def process_max_rss_gib() -> float:
    """Max RSS of this process over its whole life so far (Linux reports KiB), resets included."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _earlier_peak_kib) * 1024 / GIB


def cell_peak_rss_gib() -> float:
    """Peak RSS since the last `reset_peak`, GiB; NaN where the high-water mark could not be reset."""
    now = _high_water_kib()
    return now * 1024 / GIB if _reset_done and now is not None else math.nan


def read_peak(device: torch.device) -> MemoryStats:
    """Peak reserved and allocated GPU memory since `reset_peak` (NaN on the CPU), the process max RSS, and
    the peak RSS since `reset_peak`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return MemoryStats(torch.cuda.max_memory_reserved(device) / GIB,
                           torch.cuda.max_memory_allocated(device) / GIB, process_max_rss_gib(), cell_peak_rss_gib())
    return MemoryStats(math.nan, math.nan, process_max_rss_gib(), cell_peak_rss_gib())
