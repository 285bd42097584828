"""The perf log's configuration (`config/perf/austen.yaml`): a fixed, small matrix and the gates on it.

The matrix: one diffusion and one AR checkpoint, one prompt length and output length, the batch
sizes, and for each architecture its paths, the first of which is the baseline that every other
path is paired against. A gate names a metric of one path at one batch size and a bound on it:
- `speedup`: the paired ratio baseline latency / path latency (median over pairs, bootstrap CI);
- `step_p99_over_p50`: the path's p99 / p50 step (diffusion) or inter-token (AR) duration;
- `agreement`: the share of output tokens equal to the baseline path's, same prompts;
- `quality_delta`: BERTScore F1 of the path's continuations against the true ones minus the
  baseline's, on the same prompts (paired, bootstrap CI over prompts); at the largest batch size,
  with a prompt file and a `quality_encoder`;
- `tokens_per_s` and `peak_rss_gib`: absolute figures, usually against the previous log entry.
Absolute figures and the tail ratio p99/p50 are machine-dependent: on a shared CPU they measure the
neighbours as much as the code, so they gate only on a GPU unless the gate says `absolute_on: any`.
`relative_to: previous` divides the value by the same figure of the previous log entry.
`undecided: pass | fail` says what a paired gate whose CI straddles its bound counts as (see
perf.gates); unset, quality gates (non-inferiority claims) count it as fail and speed gates as pass.
`quality_prompts` passages are scored for quality_delta (default: the largest batch size), in batches
of the largest batch size, untimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .. import registry
from ..config import (AR_DECODE_MODES, DEFAULT_LEAP_RELAXED, DEFAULT_LEAP_WINDOW, DEFAULT_THRESHOLD, ARDecoding, Cell,
                      ConfigError, DiffusionDecoding, MeasurementSettings, ModelSpec, TimingSpec, diffusion_shape_error)
from ..paths import ARPath, DiffusionPath, PathError
from ..registry import AR, DIFFUSION

GATE_METRICS = ("speedup", "quality_delta", "step_p99_over_p50", "agreement", "tokens_per_s", "peak_rss_gib")
PAIRED_METRICS = ("speedup", "quality_delta")  # with a CI: pass, fail or undecided (perf.gates)
UNDECIDED = ("pass", "fail")
UNDECIDED_DEFAULT = {"speedup": "pass", "quality_delta": "fail"}  # speed on a shared CPU; non-inferiority
MACHINE_METRICS = ("tokens_per_s", "peak_rss_gib", "step_p99_over_p50")  # gated on a GPU only (see above)
RELATIVE_TO = ("nothing", "previous")
ABSOLUTE_ON = ("gpu", "any")


def parse_diffusion_path(path: str) -> DiffusionPath:
    """A matrix path label (`paths.DiffusionPath.parse`), as a config error naming what is allowed."""
    try:
        return DiffusionPath.parse(path)
    except PathError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class GateSpec:
    """A bound on one metric of one path at one batch size (see module docstring)."""

    name: str
    metric: str
    path: str
    batch_size: int
    at_least: Optional[float] = None
    at_most: Optional[float] = None
    relative_to: str = "nothing"
    absolute_on: str = "gpu"
    undecided: Optional[str] = None  # pass | fail; None: UNDECIDED_DEFAULT of the metric

    def validate(self, where: str) -> None:
        if self.metric not in GATE_METRICS:
            raise ConfigError(f"{where}.metric: {self.metric!r} is not allowed; allowed: {', '.join(GATE_METRICS)}")
        if (self.at_least is None) == (self.at_most is None):
            raise ConfigError(f"{where}: give exactly one of at_least and at_most")
        if self.relative_to not in RELATIVE_TO:
            raise ConfigError(f"{where}.relative_to: {self.relative_to!r} is not allowed; allowed: "
                              f"{', '.join(RELATIVE_TO)}")
        if self.absolute_on not in ABSOLUTE_ON:
            raise ConfigError(f"{where}.absolute_on: {self.absolute_on!r} is not allowed; allowed: "
                              f"{', '.join(ABSOLUTE_ON)}")
        if self.undecided is not None and (self.undecided not in UNDECIDED or self.metric not in PAIRED_METRICS):
            raise ConfigError(f"{where}.undecided: {self.undecided!r} is not allowed; allowed: "
                              f"{' or '.join(UNDECIDED)} on a paired metric ({', '.join(PAIRED_METRICS)})")

    @property
    def undecided_as(self) -> str:
        """What this gate counts an undecided outcome as."""
        return self.undecided or UNDECIDED_DEFAULT.get(self.metric, "fail")

    @property
    def bound(self) -> float:
        return self.at_least if self.at_least is not None else self.at_most


@dataclass(frozen=True)
class PerfSpec:
    """The matrix and its gates; paths[0] of each architecture is its baseline. Prompts: the first
    max(batch_size) passages of `prompt_file` long enough in both checkpoints' tokenizers, cut to
    `prompt_len` tokens (the tokens agreeing with the baseline mean something only on real text), or
    seeded random token ids without a prompt file."""

    name: str
    diffusion_model: str
    ar_model: str
    prompt_len: int
    n_out: int
    steps: int
    block_length: int
    batch_size: list[int]
    diffusion_paths: list[str]
    ar_paths: list[str]
    prompt_file: Optional[str] = None  # held-out passages (relative to the project root); null: random token ids
    quality_encoder: Optional[str] = None  # BERTScore encoder for quality_delta (needs prompt_file); null: none
    quality_layers: Optional[int] = None  # the encoder layer BERTScore reads (needed for a local or package model)
    leap_threshold: float = DEFAULT_THRESHOLD  # local_leap paths: the anchor threshold (threshold paths: default)
    leap_relaxed: float = DEFAULT_LEAP_RELAXED  # local_leap paths: the relaxed threshold near anchors
    leap_window: int = DEFAULT_LEAP_WINDOW  # local_leap paths: positions from an anchor
    quality_prompts: Optional[int] = None  # passages scored for quality_delta; None: the largest batch size
    pairs: int = 5
    warmup: int = 1
    cpu_threads: Optional[int] = 2
    seed: int = 0
    gates: list[GateSpec] = field(default_factory=list)

    def models(self) -> dict[str, ModelSpec]:
        """The matrix's two checkpoints, by architecture (each named after its kind)."""
        return {DIFFUSION: ModelSpec(DIFFUSION, "llada", path=self.diffusion_model),
                AR: ModelSpec(AR, "llama", path=self.ar_model)}

    def cell(self, kind: str, path: str, batch_size: int, precision: str) -> Cell:
        """One path of the matrix at one batch size as a grid cell, which the sweep's `make_generator` builds:
        threshold samplers take `steps` as a budget (`cap`), LocalLeap runs at the matrix's knobs, the threshold
        sampler at its default threshold; SDPA attention; timed `pairs` times after `warmup` generations."""
        model = self.models()[kind]
        if kind == DIFFUSION:
            parsed = DiffusionPath.parse(path)
            leap = "leap_relaxed" in registry.SAMPLERS[parsed.sampler].knobs
            decoding = DiffusionDecoding.of_sampler(
                self.steps, parsed, self.block_length, registry.FAMILIES[model.family].schedule,
                threshold=self.leap_threshold if leap else DEFAULT_THRESHOLD, threshold_steps="cap",
                leap_relaxed=self.leap_relaxed, leap_window=self.leap_window)
        else:
            parsed = ARPath.parse(path)
            decoding = ARDecoding(parsed.decode, parsed.temperature, parsed.top_p, parsed.repetition_penalty)
        settings = MeasurementSettings(self.seed, TimingSpec(warmup=self.warmup, repeats=self.pairs),
                                       "file" if self.prompt_file else "random_ids", None, max(self.batch_size), (),
                                       None, False)
        return Cell(model, settings, batch_size, self.prompt_len + self.n_out, precision, "sdpa", decoding)

    def validate(self) -> None:
        for name in ("prompt_len", "n_out", "steps", "block_length", "pairs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} is not allowed; allowed: integers > 0")
        if self.pairs < 3:
            raise ConfigError(f"pairs: {self.pairs} is not allowed; allowed: integers >= 3 (a CI needs pairs)")
        if self.prompt_len != self.n_out:
            raise ConfigError(f"prompt_len: {self.prompt_len} differs from n_out = {self.n_out}; allowed: equal "
                              f"(prompt = output = N/2, as in the grid)")
        problem = diffusion_shape_error(self.n_out, self.block_length, self.steps)
        if problem:
            raise ConfigError(problem.replace("grid.steps", "steps").replace("diffusion.block_length", "block_length"))
        if not self.batch_size or any(b < 1 for b in self.batch_size):
            raise ConfigError(f"batch_size: {self.batch_size} is not allowed; allowed: a list of integers > 0")
        for path in self.diffusion_paths:
            parse_diffusion_path(path)
        for path in self.ar_paths:
            if path not in AR_DECODE_MODES:
                raise ConfigError(f"ar_paths: {path!r} is not allowed; allowed: {', '.join(AR_DECODE_MODES)}")
        if not self.diffusion_paths or not self.ar_paths:
            raise ConfigError("diffusion_paths and ar_paths: each needs at least its baseline path")
        if not 0.0 < self.leap_relaxed <= self.leap_threshold <= 1.0 or self.leap_window < 0:
            raise ConfigError(f"leap_threshold, leap_relaxed, leap_window: {self.leap_threshold}, {self.leap_relaxed}, "
                              f"{self.leap_window} are not allowed; allowed: 0 < leap_relaxed <= leap_threshold <= 1, "
                              f"leap_window >= 0")
        if self.quality_prompts is not None and self.quality_prompts < 2:
            raise ConfigError(f"quality_prompts: {self.quality_prompts} is not allowed; allowed: integers >= 2 "
                              f"(a CI over prompts), or null")
        if self.quality_encoder is not None and self.prompt_file is None:
            raise ConfigError("quality_encoder: scoring needs true continuations; allowed: with a prompt_file, or null")
        known = set(self.diffusion_paths) | set(self.ar_paths)
        for i, gate in enumerate(self.gates):
            where = f"gates[{i}] ({gate.name})"
            gate.validate(where)
            if gate.path not in known:
                raise ConfigError(f"{where}.path: {gate.path!r} is not in the matrix; allowed: {', '.join(sorted(known))}")
            if gate.metric == "quality_delta" and (self.quality_encoder is None or gate.batch_size != max(self.batch_size)):
                raise ConfigError(f"{where}: quality_delta is scored at the largest batch size ({max(self.batch_size)}) "
                                  f"with a quality_encoder; allowed: batch_size {max(self.batch_size)} and an encoder")
            if gate.batch_size not in self.batch_size:
                raise ConfigError(f"{where}.batch_size: {gate.batch_size} is not in the matrix; allowed: "
                                  f"{', '.join(map(str, self.batch_size))}")
