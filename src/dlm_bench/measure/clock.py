"""Clocks for the timed region (measure.loop.timed_run): CUDA events on a GPU, `time.perf_counter` on the CPU."""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch


class Clock(Protocol):
    name: str

    def mark(self) -> Any:
        """A point in time (recorded without synchronising)."""

    def synchronize(self) -> None:
        """Wait until every recorded mark has happened."""

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds from `start` to `end` (after `synchronize`)."""


class CudaEventClock:
    name = "cuda_event"

    def __init__(self, device: torch.device):
        self.device = device

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        return float(start.elapsed_time(end))


class PerfCounterClock:
    name = "perf_counter"

    def mark(self) -> float:
        return time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1000.0


def clock_for(device: torch.device) -> Clock:
    """CUDA events on a CUDA device, perf_counter elsewhere."""
    return CudaEventClock(device) if device.type == "cuda" else PerfCounterClock()

