"""Harness overhead inside the timed region: timed L_e2e vs the device time of the kernels it ran.

torch.profiler records one generation; the sum of the kernels' device time (CUDA) or of the
operators' self CPU time (CPU) is what the hardware did. overhead = 1 - kernel time / L_e2e.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from .clock import clock_for


def kernel_time_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Device (CUDA) or self CPU time of everything `fn` ran, ms."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.key_averages()
    if device.type == "cuda":
        return sum(e.self_device_time_total for e in events) / 1000.0
    return sum(e.self_cpu_time_total for e in events) / 1000.0


def harness_overhead(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> dict:
    """Median timed latency of `fn` (as the runner times it) against its kernel time."""
    clock = clock_for(device)
    timed = []
    for _ in range(repeats):
        start = clock.mark()
        fn()
        end = clock.mark()
        clock.synchronize()
        timed.append(clock.elapsed_ms(start, end))
    timed.sort()
    latency = timed[len(timed) // 2]
    kernels = kernel_time_ms(fn, device)
    return {"latency_ms": latency, "kernel_ms": kernels, "overhead": 1.0 - kernels / latency}
