"""One generation by `llama-diffusion-cli`: its arguments from a grid cell, its timings from its log.

What the CLI does, read from its source (examples/diffusion):
- it always formats the prompt with the model's chat template (ChatML when the GGUF has none), so the
  project's GGUF exports carry a pass-through template (`gguf_export`);
- its block schedule counts the prompt in `max_length / block_length` blocks that start after the
  prompt, so the blocks past the answer are empty; each costs one forward pass. `steps_argument`
  scales K so that each answer block gets K / (answer blocks) steps, as the project's sampler does;
- tokens are drawn by a sampler chain (top-k 40, top-p 0.95, then a seeded draw) even at temperature
  0; the harness passes `--top-k 1` at temperature 0, so tokens are the argmax, but every confidence is
  then 1 and the block commits left to right: not LLaDA's low-confidence order (README, engines);
- it prints the denoising loop's total time and, with log timestamps, one line per step.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ... import registry
from ...registry import SCHEDULES
from .build import LlamaCpp

log = logging.getLogger(__name__)

# the project's sampler names -> the CLI's --diffusion-algorithm (0 origin, 1 entropy, 2 margin, 3 random,
# 4 confidence); `random` under the Dream schedule is Dream's origin algorithm
ALGORITHMS = {name: s.llamacpp_algorithm for name, s in registry.SAMPLERS.items()
              if s.llamacpp_algorithm is not None}
DREAM_ALGORITHMS = {**ALGORITHMS, "random": 0}
GREEDY_TOP_K = 1  # at temperature 0: the argmax token (the CLI draws from top-k 40 / top-p 0.95 otherwise)

_STAMP = r"(\d+)\.(\d{2})\.(\d{3})\.(\d{3}) I "
_STEP = re.compile(_STAMP + r"\s*\n?diffusion step: (\d+)/(\d+)")
_TOTAL = re.compile(_STAMP + r"\s*\n?total time: ([\d.]+)ms, time per step: ([\d.]+)ms")


class CliError(RuntimeError):
    """The CLI failed or printed something the parser does not recognise; the message is one line."""


@dataclass(frozen=True)
class DiffusionRequest:
    """One prompt's generation as the CLI runs it. Lengths in tokens."""

    prompt_text: str
    prompt_len: int
    n_out: int
    steps: int  # K: denoising steps over the answer
    block_length: int
    schedule: str  # llada (block schedule) | dream (timestep schedule)
    sampler: str
    temperature: float
    seed: int
    threads: int
    eps: Optional[float] = None  # dream schedule only
    gpu_layers: int = 0  # layers offloaded to the GPU (a CUDA build on a GPU run: all of them)


@dataclass
class DiffusionRun:
    """What one CLI run reported. Times in ms."""

    text: str  # the answer, as the CLI detokenized it
    total_ms: float  # the CLI's own time for the denoising loop (model load excluded)
    step_ms: list[float] = field(default_factory=list)  # between consecutive step lines
    steps_run: int = 0  # step callbacks seen (empty blocks' single forwards included)
    wall_ms: float = 0.0  # the process, start to exit (model load included)
    command: list[str] = field(default_factory=list)


def block_counts(req: DiffusionRequest) -> tuple[int, int]:
    """(blocks the CLI schedules, blocks holding answer tokens) under the block schedule."""
    return (req.prompt_len + req.n_out) // req.block_length, -(-req.n_out // req.block_length)


def steps_argument(req: DiffusionRequest) -> int:
    """The CLI's --diffusion-steps that gives the answer K steps (K / answer-blocks per block)."""
    if SCHEDULES[req.schedule].uses_eps:  # Dream's schedule: no blocks
        return req.steps
    scheduled, answer = block_counts(req)
    return req.steps // answer * scheduled


def forward_passes(req: DiffusionRequest) -> int:
    """Forward passes the CLI runs: K, plus one for each empty block after the answer."""
    if SCHEDULES[req.schedule].uses_eps:
        return req.steps
    scheduled, answer = block_counts(req)
    return req.steps + scheduled - answer


def unsupported(req: DiffusionRequest) -> Optional[str]:
    """Why the CLI cannot run this request as the project's sampler would, or None."""
    if req.sampler not in ALGORITHMS:
        return f"sampler {req.sampler!r} has no llama-diffusion-cli algorithm; allowed: {', '.join(ALGORITHMS)}"
    if not SCHEDULES[req.schedule].uses_eps:  # the block schedule
        if (req.prompt_len + req.n_out) % req.block_length or req.prompt_len % req.block_length:
            return (f"llama-diffusion-cli's block schedule needs prompt ({req.prompt_len}) and prompt + answer "
                    f"({req.prompt_len + req.n_out}) to be multiples of block_length {req.block_length}")
        if req.steps % block_counts(req)[1]:
            return f"steps {req.steps} is not a multiple of the answer's {block_counts(req)[1]} blocks"
    return None


def cli_arguments(llama: LlamaCpp, gguf: Path, req: DiffusionRequest) -> list[str]:
    length = str(req.prompt_len + req.n_out)
    schedule = (["--diffusion-block-length", str(req.block_length), "--diffusion-eps", "0"]
                if not SCHEDULES[req.schedule].uses_eps else ["--diffusion-eps", str(req.eps),
                                                              "--diffusion-block-length", "0"])
    algorithm = (DREAM_ALGORITHMS if SCHEDULES[req.schedule].uses_eps else ALGORITHMS)[req.sampler]
    sampling = ["--top-k", str(GREEDY_TOP_K)] if req.temperature == 0 else []
    return [str(llama.binary("llama-diffusion-cli")), "-m", str(gguf), "-p", req.prompt_text,
            "-c", length, "-b", length, "-ub", length, "-t", str(req.threads), "-ngl", str(req.gpu_layers),
            "--diffusion-steps", str(steps_argument(req)), "--diffusion-algorithm", str(algorithm), *schedule,
            "--temp", str(req.temperature), *sampling, "--seed", str(req.seed),
            "--log-timestamps", "--log-colors", "off"]


def _seconds(m: re.Match) -> float:
    minutes, seconds, ms, us = (int(x) for x in m.groups()[:4])
    return minutes * 60 + seconds + ms / 1e3 + us / 1e6


def parse_log(log: str) -> DiffusionRun:
    """The answer text and the timings from the CLI's log (everything after `total time` is the answer)."""
    total = _TOTAL.search(log)
    if total is None:
        lines = [ln for ln in log.splitlines() if ln.strip()]
        raise IncompleteLog(f"llama-diffusion-cli printed no total time; its last line: {(lines or [''])[-1][:200]}")
    marks = [_seconds(m) for m in _STEP.finditer(log)] + [_seconds(total)]
    step_ms = [1000.0 * (b - a) for a, b in zip(marks, marks[1:])]
    after = log[total.end():]
    text = after.split("\n", 2)[2] if after.count("\n") >= 2 else ""  # the rest of the line, a stamp line
    return DiffusionRun(text=text[:-1] if text.endswith("\n") else text, total_ms=float(total.group(5)),
                        step_ms=step_ms, steps_run=len(marks) - 1)


class IncompleteLog(CliError):
    """The CLI exited 0 without its last lines: its logger writes from a thread that is not flushed at
    exit (llama.cpp's common/log.cpp says so), and a busy CPU makes it lose the final lines."""


# A log that lost its end comes from a busy CPU (see IncompleteLog): the run is repeated after a pause that
# grows with each attempt (1 s, 2 s, ...), giving the load a chance to pass.
INCOMPLETE_LOG_ATTEMPTS = 5
INCOMPLETE_LOG_PAUSE_S = 1.0


def run_diffusion(llama: LlamaCpp, gguf: Path, req: DiffusionRequest, timeout_s: float,
                  attempts: int = INCOMPLETE_LOG_ATTEMPTS) -> DiffusionRun:
    """Run the CLI; CliError (one line) when it fails, times out or prints no timing. A run whose log
    lost its last lines (IncompleteLog) is run again, with a warning and a growing pause, up to `attempts`
    runs in all."""
    problem = unsupported(req)
    if problem:
        raise CliError(problem)
    for attempt in range(1, attempts + 1):
        try:
            return _run_once(cli_arguments(llama, gguf, req), timeout_s)
        except IncompleteLog as exc:
            if attempt == attempts:
                raise CliError(f"{exc} ({attempts} runs)") from None
            log.warning("llama-diffusion-cli lost the end of its log (run %d of at most %d); running it again",
                        attempt, attempts)
            time.sleep(INCOMPLETE_LOG_PAUSE_S * attempt)
    raise AssertionError("unreachable")


def _run_once(cmd: list[str], timeout_s: float) -> DiffusionRun:
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, errors="replace")
    except subprocess.TimeoutExpired:
        raise CliError(f"llama-diffusion-cli timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise CliError(f"llama-diffusion-cli could not start: {exc}") from None
    wall_ms = 1000.0 * (time.perf_counter() - start)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise CliError(f"llama-diffusion-cli exited with {done.returncode}: {(lines or [''])[-1][:300]}")
    run = parse_log(done.stderr + done.stdout)
    run.wall_ms, run.command = wall_ms, cmd
    return run
