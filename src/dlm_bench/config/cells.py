"""Grid expansion: the measurement settings and identity of each cell (its id hashes both), the labels
of cells and rows, and SLURM-style sharding."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..registry import AR, DIFFUSION, IN_PROCESS
from .. import registry
from ..labels import cell_label
from ..paths import ARPath, DiffusionPath, EnginePath
from .names import ConfigError, FAMILY_SCHEDULES, LLAMACPP_SAMPLERS, LOCAL_SERVER, family_default
from .spec import ARSamplingSpec, Experiment, ModelSpec, TimingSpec

__all__ = ["MeasurementSettings", "LATER_FIELDS", "DiffusionDecoding", "ARDecoding", "Cell", "GRID_COLUMNS",
           "IDENTITY_COLUMNS", "ar_decoding", "expand_cells", "engine_cells", "parse_shard", "select_shard"]


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class MeasurementSettings:
    """What, besides the grid point, decides what a cell measures; all of it enters the cell id.

    prompt_digest: SHA-1 of the prompt file (the passages themselves, wherever the file lives).
    prompt_tokenizers: every model's tokenizer source: a passage is used only when it is long enough
        in all of them, so the model set decides which passages each model gets.
    quality_batch_size: batch of the untimed quality generations, None when the cell makes none.
    """

    seed: int
    timing: TimingSpec
    prompt_source: str
    prompt_digest: Optional[str]
    max_prompts: int
    prompt_tokenizers: tuple[str, ...]
    quality_batch_size: Optional[int]
    allow_attention_mismatch: bool

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(out.pop("timing"))
        out["prompt_tokenizers"] = list(self.prompt_tokenizers)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MeasurementSettings":
        """The settings `as_dict` wrote (a record's `settings`); a key this version does not know is an error."""
        timing = {f.name for f in dataclasses.fields(TimingSpec)}
        rest = {k: v for k, v in data.items() if k not in timing}
        rest["prompt_tokenizers"] = tuple(rest.get("prompt_tokenizers") or ())
        return cls(timing=TimingSpec(**{k: v for k, v in data.items() if k in timing}), **rest)


# Cell fields added after cells had been measured, with the values that mean "as before": left out of
# the cell id at those values, so a sweep resumed on a newer version finds its earlier cells
LATER_FIELDS: dict[str, tuple] = {"forward": (None, "eager"), "leap_relaxed": (None,), "leap_window": (None,),
                                   "engine": (None, IN_PROCESS), "weights_format": (None,), "top_p": (None,),
                                   "repetition_penalty": (None,)}


@dataclass(frozen=True)
class DiffusionDecoding:
    """How a diffusion cell decodes: K, its path (sampler, cache, forward) and the settings its sampler reads.

    A setting the cell's sampler, schedule or temperature does not use is None (the sampler's `knobs`, the
    schedule's `uses_eps`, noise only at temperature > 0), so it does not enter the cell id; an engine cell
    leaves unset what its engine does not offer (its forward, guidance).
    """

    steps: int
    sampler: str
    cache: str
    block_length: int
    schedule: str  # llada | dream (resolved from `auto`)
    temperature: float = 0.0
    cfg_scale: Optional[float] = None
    threshold: Optional[float] = None  # threshold samplers only
    eps: Optional[float] = None  # Dream schedule only
    threshold_steps: Optional[str] = None  # threshold samplers only: cap | unbounded
    noise_layout: Optional[str] = None  # temperature > 0 only: block | canvas
    forward: Optional[str] = None  # eager | compiled (None: an engine's own)
    leap_relaxed: Optional[float] = None  # local_leap sampler only
    leap_window: Optional[int] = None  # local_leap sampler only

    @property
    def path(self) -> DiffusionPath:
        return DiffusionPath.of(dataclasses.asdict(self))

    @classmethod
    def of_sampler(cls, steps: int, path: DiffusionPath, block_length: int, schedule: str, temperature: float = 0.0,
                   cfg_scale: float = 0.0, **settings: Any) -> "DiffusionDecoding":
        """A decoding on `path` that keeps of `settings` (threshold, threshold_steps, eps, noise_layout,
        leap_relaxed, leap_window) only those the path's sampler (its `knobs`), the schedule (`eps`) and the
        temperature (the noise layout, above 0) use; the others are None and stay out of the cell id."""
        used = set(registry.SAMPLERS[path.sampler].knobs)
        used |= {"eps"} if registry.SCHEDULES[schedule].uses_eps else set()
        used |= {"noise_layout"} if temperature > 0 else set()
        return cls(steps, path.sampler, path.cache, block_length, schedule, temperature, cfg_scale,
                   forward=path.forward, **{name: value for name, value in settings.items() if name in used})


@dataclass(frozen=True)
class ARDecoding:
    """How an AR cell decodes: its decode mode (None: an engine's own) and its decoding (greedy at temperature 0;
    the nucleus and the repetition penalty None where they are off)."""

    decode: Optional[str]
    temperature: float = 0.0
    top_p: Optional[float] = None
    repetition_penalty: Optional[float] = None

    @property
    def path(self) -> ARPath:
        return ARPath.of(dataclasses.asdict(self))


# the grid columns of a cell's row, in row order (after the model's): the shape, then the decoding of either kind
# (a column of the other kind is empty), then the engine
GRID_COLUMNS = ("batch_size", "seq_len", "precision", "attention_backend", "temperature", "steps", "sampler", "cache",
                "decode", "block_length", "cfg_scale", "threshold", "schedule", "eps", "threshold_steps",
                "noise_layout", "forward", "leap_relaxed", "leap_window", "engine", "weights_format", "top_p",
                "repetition_penalty")
DECODING_TYPES = {DIFFUSION: DiffusionDecoding, AR: ARDecoding}


@dataclass(frozen=True)
class Cell:
    """One grid point: model x B x N, how it decodes (x K x sampler options for diffusion, x decode mode and
    decoding for AR), and the engine that runs it.

    `identity()` turns the grid fields and the decoding (with the model's name, family and source) into the
    columns of the cell's row (`GRID_COLUMNS`); a new axis is a new field of the decoding of its kind.
    """

    model: ModelSpec
    settings: MeasurementSettings
    batch_size: int
    seq_len: int
    precision: str
    attention_backend: str
    decoding: DiffusionDecoding | ARDecoding
    engine: str = IN_PROCESS  # registry.ENGINES: torch | llamacpp | openai
    weights_format: Optional[str] = None  # llamacpp / openai-local: the GGUF weights (f32, q8_0, ...)

    def __post_init__(self):
        if not isinstance(self.decoding, DECODING_TYPES[self.model.kind]):
            raise ValueError(f"decoding: {type(self.decoding).__name__} is not allowed for the {self.model.kind} model "
                             f"{self.model.name!r}; allowed: {DECODING_TYPES[self.model.kind].__name__}")

    @property
    def prompt_len(self) -> int:
        """P, in tokens."""
        return self.seq_len // 2

    @property
    def n_out(self) -> int:
        """N_out, in tokens."""
        return self.seq_len - self.seq_len // 2

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def steps(self) -> Optional[int]:
        """K, the denoising steps of a diffusion cell; None for AR."""
        return getattr(self.decoding, "steps", None)

    @property
    def path(self) -> DiffusionPath | ARPath:
        """How the cell generates (`paths`): its sampler, cache and forward, or its decode mode and decoding."""
        return self.decoding.path

    @property
    def engine_path(self) -> EnginePath:
        """Which engine runs the cell, on which weights."""
        return EnginePath(self.engine, self.weights_format)

    def with_decoding(self, **changes: Any) -> "Cell":
        """This cell with some of its decoding's fields changed (as `dataclasses.replace`)."""
        return dataclasses.replace(self, decoding=dataclasses.replace(self.decoding, **changes))

    def identity(self) -> dict[str, Any]:
        """The cell's grid columns, in row order."""
        decoding = dataclasses.asdict(self.decoding)
        grid = {name: getattr(self, name) if name in CELL_GRID_FIELDS else decoding.get(name)
                for name in GRID_COLUMNS}
        return {"model_name": self.model.name, "family": self.model.family, "kind": self.model.kind,
                "model_source": self.model.source, "prompt_len": self.prompt_len, "n_out": self.n_out, **grid}

    def cell_id(self, hardware: str) -> str:
        """Short stable hash of everything that decides what this cell measures, plus the hardware name."""
        identity = self.identity()
        for name, earlier in LATER_FIELDS.items():
            if identity[name] in earlier:
                del identity[name]  # fields that came later: cells that do not use them keep their earlier ids
        blob = json.dumps({"cell": identity, "model": dataclasses.asdict(self.model),
                           "settings": self.settings.as_dict(), "hardware": hardware}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def describe(self) -> str:
        return cell_label(self.identity())

    @classmethod
    def from_record(cls, identity: Mapping[str, Any], settings: Mapping[str, Any], model: ModelSpec) -> "Cell":
        """The cell a record measured, from its grid columns (`identity()`) and settings, on `model` (the spec
        its `model_name` names); a column the record lacks takes the field's default (a field added later)."""
        decoding = DECODING_TYPES[model.kind]
        return cls(model=model, settings=MeasurementSettings.from_dict(settings),
                   decoding=decoding(**{f.name: identity[f.name] for f in dataclasses.fields(decoding)
                                        if f.name in identity}),
                   **{name: identity[name] for name in CELL_GRID_FIELDS if name in identity})


# the grid columns the cell holds itself (the rest are its decoding's)
CELL_GRID_FIELDS = tuple(f.name for f in dataclasses.fields(Cell) if f.name not in ("model", "settings", "decoding"))
# the names of `Cell.identity()`, in row order: the model's columns, then the grid columns
IDENTITY_COLUMNS = ("model_name", "family", "kind", "model_source", "prompt_len", "n_out", *GRID_COLUMNS)


def _file_digest(path: Optional[Path]) -> Optional[str]:
    return hashlib.sha1(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None


def expand_cells(exp: Experiment, extra_steps: Optional[Mapping[tuple, set]] = None) -> list[Cell]:
    """The grid product, in a stable order (model, N, B, then diffusion/AR options); `extra_steps`: more K for
    some diffusion paths, {(model name, N, sampler, cache, forward): {K, ...}} (the parity refinement's), each
    a cell at every B after the grid's own."""
    g, d, a = exp.grid, exp.diffusion, exp.autoregressive
    text_prompts = exp.prompts.source != "random_ids"
    tokenizers = tuple(sorted(m.tokenizer or m.source for m in exp.models)) if text_prompts else ()
    digest = _file_digest(exp.resolve(exp.prompts.file)) if exp.prompts.source == "file" else None

    def settings(batch_size: int) -> MeasurementSettings:
        generates = exp.quality.generate and text_prompts and batch_size == min(g.batch_size)
        return MeasurementSettings(exp.seed, exp.timing, exp.prompts.source, digest, exp.prompts.max_prompts,
                                   tokenizers, exp.quality.batch_size if generates else None,
                                   exp.allow_attention_mismatch)

    cells: list[Cell] = []
    later: list[Cell] = []  # the refinement's cells, after every grid cell (a shard keeps its grid cells)
    for model in exp.models:
        for n, b in itertools.product(g.seq_len, g.batch_size):
            common = dict(model=model, settings=settings(b), batch_size=b, seq_len=n, precision=exp.precision,
                          attention_backend=exp.attention)
            torch_cells = IN_PROCESS in exp.engines.engine
            if model.kind == DIFFUSION and torch_cells:
                schedule = FAMILY_SCHEDULES[model.family] if d.schedule == "auto" else d.schedule
                grid = list(itertools.product(g.steps_for(n), d.sampler, d.cache, d.forward))
                refined = sorted((k, sampler, cache, forward) for (name, at_n, sampler, cache, forward), steps
                                 in (extra_steps or {}).items() if name == model.name and at_n == n
                                 for k in steps if k not in g.steps_for(n))
                for k, sampler, cache, forward in grid + refined:
                    target = cells if (k, sampler, cache, forward) in grid else later
                    decoding = DiffusionDecoding.of_sampler(
                        k, DiffusionPath(sampler, cache, forward), d.block_length, schedule, d.temperature,
                        d.cfg_scale, threshold=d.threshold, eps=d.eps, leap_relaxed=d.leap_relaxed,
                        leap_window=d.leap_window,
                        threshold_steps=family_default(d.threshold_steps, model.family, "threshold_steps"),
                        noise_layout=family_default(d.noise_layout, model.family, "noise_layout"))
                    target.append(Cell(**common, decoding=decoding))
            elif model.kind == AR and torch_cells:
                for mode, sampling in itertools.product(a.decode, a.decodings):
                    cells.append(Cell(**common, decoding=ar_decoding(mode, sampling)))
            cells += engine_cells(exp, model, common)
    return cells + later


def ar_decoding(decode: Optional[str], sampling: ARSamplingSpec) -> ARDecoding:
    """An AR cell's decoding: its decode mode, the temperature, and the nucleus and penalty only where they are
    set (a greedy cell's id is what it was before these fields existed)."""
    return ARDecoding(decode, sampling.temperature, sampling.top_p if sampling.top_p != 1.0 else None,
                      sampling.repetition_penalty if sampling.repetition_penalty != 1.0 else None)


def engine_cells(exp: Experiment, model: ModelSpec, common: dict[str, Any]) -> list[Cell]:
    """The cells of every engine other than torch of one model at one (N, B): each engine's cell rule
    (registry.ENGINES) decides which exist."""
    out: list[Cell] = []
    for name, entry in registry.ENGINES.items():  # in the registry's order
        if name in exp.engines.engine and entry.cells is not None:
            out += registry.resolve(entry.cells)(exp, model, common)
    return out


def llamacpp_cells(exp: Experiment, model: ModelSpec, common: dict[str, Any]) -> list[Cell]:
    """llama.cpp's cells: an AR model's per weights format (its server, the first AR decoding); a diffusion model's at
    B = 1 per K, sampler the CLI has and weights format (its diffusion CLI, no cache)."""
    e, d = exp.engines, exp.diffusion
    if model.kind == AR:
        return [Cell(**common, decoding=ar_decoding(None, exp.autoregressive.decodings[0]), engine="llamacpp",
                     weights_format=f) for f in e.llamacpp.weights_format]
    if common["batch_size"] != 1:
        return []
    schedule = FAMILY_SCHEDULES[model.family] if d.schedule == "auto" else d.schedule
    samplers = [s for s in d.sampler if s in LLAMACPP_SAMPLERS]
    return [Cell(**common, engine="llamacpp", weights_format=fmt,
                 decoding=DiffusionDecoding(steps=k, sampler=sampler, cache=registry.uncached(),
                                            block_length=d.block_length, schedule=schedule, temperature=d.temperature,
                                            eps=d.eps if registry.SCHEDULES[schedule].uses_eps else None))
            for k, sampler, fmt in itertools.product(exp.grid.steps_for(common["seq_len"]), samplers,
                                                     e.llamacpp.weights_format)]


def openai_cells(exp: Experiment, model: ModelSpec, common: dict[str, Any]) -> list[Cell]:
    """An OpenAI endpoint's cell: one per AR model it serves (the first AR decoding)."""
    o = exp.engines.openai
    if model.kind != AR or model.name not in o.models:
        return []
    return [Cell(**common, decoding=ar_decoding(None, exp.autoregressive.decodings[0]), engine="openai",
                 weights_format=o.weights_format if o.url == LOCAL_SERVER else None)]


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    """'i/n' -> (i, n); None -> from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, else (0, 1)."""
    if text is None:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        count = os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return 0, 1
        try:
            i, n = int(task) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0")), int(count)
        except ValueError:
            raise ConfigError(f"SLURM_ARRAY_TASK_ID / _COUNT / _MIN: {task!r}, {count!r} are not integers; "
                              f"allowed: the integers SLURM sets for an array task") from None
        if not 0 <= i < n:
            raise ConfigError(f"SLURM_ARRAY_TASK_ID: {task} is outside the array of {count} tasks; allowed: "
                              f"SLURM_ARRAY_TASK_MIN .. SLURM_ARRAY_TASK_MIN + {n - 1}")
        return i, n
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: {text!r} is not allowed; allowed: i/n with 0 <= i < n") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard: {text!r} is not allowed; allowed: i/n with 0 <= i < n")
    return i, n


def select_shard(cells: list[Cell], shard: tuple[int, int]) -> list[Cell]:
    """Cells whose grid index is i mod n."""
    i, n = shard
    return [c for j, c in enumerate(cells) if j % n == i]
