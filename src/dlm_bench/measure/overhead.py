"""Harness overhead inside the timed region: timed L_e2e vs the device time of the kernels it ran.

torch.profiler records one generation; the sum of the kernels' device time (CUDA) or of the
operators' self CPU time (CPU) is what the hardware did. overhead = 1 - kernel time / L_e2e.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch.profiler import ProfilerActivity, profile

from ..generation import Generator
from .clock import clock_for
from .loop import timed_run


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


def harness_overhead(generator: Generator, ids: torch.Tensor, n_out: int, steps: Optional[int],
                     device: torch.device, repeats: int = 3) -> dict:
    """Median L_e2e of the cell's timed region (measure.loop.timed_run, marks included) against the kernel
    time of one generation that runs the same marks."""
    clock = clock_for(device)
    timed = sorted(timed_run(generator, ids, n_out, steps, clock).latency_ms for _ in range(repeats))
    latency = timed[len(timed) // 2]
    kernels = kernel_time_ms(lambda: generator.generate(ids, n_out, steps=steps, marker=clock.mark), device)
    return {"latency_ms": latency, "kernel_ms": kernels, "overhead": 1.0 - kernels / latency}
