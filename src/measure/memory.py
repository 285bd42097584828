"""Peak memory around the measured repetitions."""

from __future__ import annotations

import math
import resource

import torch

from ..results import MemoryStats

GIB = 1024 ** 3


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def process_max_rss_gib() -> float:
    """Max RSS of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def read_peak(device: torch.device) -> MemoryStats:
    """Peak reserved and allocated GPU memory since `reset_peak` (NaN on the CPU), and the process max RSS."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return MemoryStats(torch.cuda.max_memory_reserved(device) / GIB,
                           torch.cuda.max_memory_allocated(device) / GIB, process_max_rss_gib())
    return MemoryStats(math.nan, math.nan, process_max_rss_gib())
