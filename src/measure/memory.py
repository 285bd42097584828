"""Peak memory around the measured repetitions."""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass

import torch

GIB = 1024 ** 3


@dataclass
class PeakMemory:
    """Peaks in GiB. GPU figures are NaN on the CPU; `process_max_rss_gib` is the process-lifetime
    maximum resident set size (the only figure on the CPU)."""

    reserved_gib: float
    allocated_gib: float
    process_max_rss_gib: float


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def process_max_rss_gib() -> float:
    """Max RSS of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def read_peak(device: torch.device) -> PeakMemory:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return PeakMemory(torch.cuda.max_memory_reserved(device) / GIB,
                          torch.cuda.max_memory_allocated(device) / GIB, process_max_rss_gib())
    return PeakMemory(math.nan, math.nan, process_max_rss_gib())
