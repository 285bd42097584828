"""Engines other than the project's PyTorch generators: llama.cpp (llamacpp/) and OpenAI-compatible
servers (openai_engine.py). Each turns a grid cell and B prompts into an `EngineBatch`, so the runner,
the record and the analysis treat every engine alike (engines/measure.py times them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence


@dataclass
class EngineAnswer:
    """One prompt's answer. Times in ms; NaN where the engine does not report them."""

    text: str
    token_ids: Optional[list[int]]  # as the engine returned them; None when it returns text only
    tokens_returned: int  # the engine's count of answer tokens
    latency_ms: float  # the request (or CLI run) end to end, generation only
    ttft_ms: float = math.nan  # streaming engines
    itl_ms: float = math.nan  # streaming engines: mean gap between chunks after the first
    steps: Optional[int] = None  # diffusion: denoising steps over the answer
    forward_passes: Optional[int] = None  # diffusion: model evaluations (the CLI's empty blocks included)
    engine_ms: float = math.nan  # the engine's own timing of the same work (CLI total, server timings)


@dataclass
class EngineBatch:
    """B answers run together (concurrent requests; the CLI: B = 1). latency_ms: the batch, end to end."""

    latency_ms: float
    answers: list[EngineAnswer]
    step_ms: list[float] = field(default_factory=list)  # diffusion: per-step durations from the engine's log


class EngineError(RuntimeError):
    """An engine could not run a cell (missing binary, failed load, dead server, timeout): one line."""


class Engine(Protocol):
    """What the runner needs from an engine."""

    name: str
    version: str  # recorded per row
    build: str  # build flags, or what is known of a remote server
    threads: Optional[int]

    def run(self, prompt_ids: Sequence[Sequence[int]]) -> EngineBatch:
        """Generate N_out tokens for each prompt (token ids); raise EngineError on failure."""
        ...

    def pids(self) -> tuple[int, ...]:
        """The long-lived processes of this machine that do the engine's work (a local server), whose CPU time
        belongs to its measurement; () when it has none (a CLI run per request is a waited-for child)."""
        ...


def server_pids(server) -> tuple[int, ...]:
    """The pid of a running local server (anything with `proc`), else ()."""
    proc = getattr(server, "proc", None)
    return (proc.pid,) if proc is not None and proc.poll() is None else ()
