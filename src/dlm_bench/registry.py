"""The registries: every model family, diffusion sampler, cache, diffusion forward, AR decode path and
engine of the harness, each declaring its facts once. The config's allowed values (config/names.py),
the as-published baseline (selection/baseline.py), the figures' colours, the generators' dispatch and
llama.cpp's algorithm ids are all read from here. The quality metrics have their table in
metrics/quality.py. Torch-free; imports nothing of the project.

Adding an entry here is what makes a name valid everywhere; what the entry names must also exist
(docs-vibe/tour.md, "Where to add", lists the code each kind of entry needs, and a test checks that
list against these tables).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

AR, DIFFUSION = "autoregressive", "diffusion"  # the two architectures (a row's `kind`)
KINDS = (AR, DIFFUSION)

E = TypeVar("E")


def _table(*entries: E) -> dict[str, E]:
    """Entries by name, in the order given (the order of allowed values in messages and figures)."""
    table = {e.name: e for e in entries}  # type: ignore[attr-defined]
    if len(table) != len(entries):
        raise ValueError(f"duplicate names in a registry: {[e.name for e in entries]}")  # type: ignore[attr-defined]
    return table


def resolve(target: str) -> Callable[..., Any]:
    """The function an entry names as `package.module:function` (imported when first asked for)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def baseline(table: dict[str, E]) -> str:
    """The name of the table's one as-published entry."""
    (name,) = [n for n, e in table.items() if getattr(e, "baseline", False)]
    return name


@dataclass(frozen=True)
class Family:
    """A model family: its architecture, the `model_type` its config.json carries, and (diffusion) its
    reference code's own choices, which the config's `auto` means for it: the schedule (LLaDA's even split or
    Dream's), how a threshold sampler uses the step budget (Fast-dLLM: each block until no mask is left,
    `unbounded`) and where temperature noise is drawn (LLaDA's generate.py: over the whole `canvas`)."""

    name: str
    kind: str
    model_type: str
    schedule: Optional[str] = None
    threshold_steps: Optional[str] = None
    noise_layout: Optional[str] = None
    native: Optional[str] = None  # diffusion: the module whose `native_config(raw)` and `load(...)` build it
    tiny: Optional[str] = None  # `module:function` writing a random-init checkpoint in the family's official
    # layout: (out, corpus, seed, d_model=, n_layers=) -> folder (the tests' and the mini sweep's models)
    qkv_bias: bool = False  # its attention's query, key and value projections carry biases (Qwen2's and Dream's)


_TINY = "dlm_bench.models.tiny:write_tiny_"
FAMILIES = _table(Family("llama", AR, "llama", tiny=_TINY + "llama"),
                  Family("qwen2", AR, "qwen2", tiny=_TINY + "qwen2", qkv_bias=True),
                  Family("llada", DIFFUSION, "llada", schedule="llada", threshold_steps="unbounded",
                         noise_layout="canvas", native="dlm_bench.models.llada", tiny=_TINY + "llada"),
                  Family("dream", DIFFUSION, "dream", schedule="dream", threshold_steps="unbounded",
                         noise_layout="canvas", native="dlm_bench.models.dream", tiny=_TINY + "dream", qkv_bias=True))


def family_of_model_type(model_type: Any) -> Optional[Family]:
    """The family whose checkpoints carry this config.json `model_type` (compared in lower case), or None."""
    text = str(model_type).lower() if model_type is not None else None
    return next((f for f in FAMILIES.values() if f.model_type == text), None)


@dataclass(frozen=True)
class Schedule:
    """How many tokens a diffusion step commits: LLaDA's even split of each block's tokens over its steps, or
    Dream's linspace(1, eps) over the answer (`uses_eps`: `eps` enters its cells, its random sampler draws Dream's
    transfer probabilities, and llama-diffusion-cli runs it without blocks, with Dream's algorithm ids)."""

    name: str
    uses_eps: bool = False


SCHEDULES = _table(Schedule("llada"), Schedule("dream", uses_eps=True))


@dataclass(frozen=True)
class Sampler:
    """A diffusion sampler: how it scores proposals (confidence: the token's probability; margin: top-1
    minus top-2; entropy: minus the entropy; uniform: a random draw; higher = commit first), whether it
    commits by confidence threshold instead of a schedule, the diffusion config fields that enter its
    cells besides the shared ones, llama-diffusion-cli's --diffusion-algorithm for it (None: the CLI
    lacks it), its figure colour, whether it is the as-published one, and whether it draws random numbers per
    sequence at temperature 0 (then a sequence's tokens depend on its place in the batch, and quality scored at
    the quality batch size stands for every B only in distribution: tests/test_fast_paths.py checks that every
    other sampler gives each prompt the same tokens at B = 1 and B = 4)."""

    name: str
    score: str
    colour: str
    threshold: bool = False
    knobs: tuple[str, ...] = ()
    llamacpp_algorithm: Optional[int] = None
    baseline: bool = False
    draws_per_sequence: bool = False


SAMPLERS = _table(
    Sampler("low_confidence", "confidence", "#0072B2", llamacpp_algorithm=4, baseline=True),
    Sampler("random", "uniform", "#E69F00", llamacpp_algorithm=3, draws_per_sequence=True),
    Sampler("entropy", "entropy", "#009E73", llamacpp_algorithm=1),
    Sampler("margin", "margin", "#CC79A7", llamacpp_algorithm=2),
    Sampler("threshold", "confidence", "#D55E00", threshold=True, knobs=("threshold", "threshold_steps")),
    Sampler("local_leap", "confidence", "#999933", threshold=True,
            knobs=("threshold", "threshold_steps", "leap_relaxed", "leap_window")))
SCORES = ("confidence", "margin", "entropy", "uniform")  # what generation.diffusion.score_proposals computes


@dataclass(frozen=True)
class Cache:
    """A diffusion KV cache, by what a block's later steps run as queries (`queries`): `canvas`, the whole canvas
    every step, nothing kept (none); `block_to_end`, the block and everything after it against the keys/values
    the block's first step kept of the prompt and finished blocks (prefix); `block`, the block alone against
    both sides (dual). The generator and its work count read this, not the cache's name."""

    name: str
    queries: str = "canvas"
    baseline: bool = False

    @property
    def keeps_kv(self) -> bool:
        """Whether a block's first step keeps keys/values for its later steps."""
        return self.queries != "canvas"


CACHE_QUERIES = ("canvas", "block_to_end", "block")
CACHES = _table(Cache("none", baseline=True), Cache("prefix", "block_to_end"), Cache("dual", "block"))


def uncached() -> str:
    """The cache that keeps nothing: every step runs the whole canvas (the reference sampler's way)."""
    return next(name for name, entry in CACHES.items() if not entry.keeps_kv)


@dataclass(frozen=True)
class Forward:
    """The diffusion model's forward: as is (eager), or under torch.compile."""

    name: str
    compiled: bool
    baseline: bool = False


FORWARDS = _table(Forward("eager", False, baseline=True), Forward("compiled", True))


@dataclass(frozen=True)
class DecodePath:
    """An AR decode path: transformers' `generate` (eager) or the project's static-cache loop, compiled or
    not; its figure colour and marker."""

    name: str
    static: bool
    compiled: bool
    colour: str
    marker: str
    baseline: bool = False


DECODE_PATHS = _table(DecodePath("eager", False, False, "#000000", "*", baseline=True),
                      DecodePath("static", True, False, "#7F7F7F", "P"),
                      DecodePath("static_compiled", True, True, "#56B4E9", "X"))


@dataclass(frozen=True)
class Engine:
    """What runs a generation: the project's PyTorch generators (torch, the baseline: its cells are the grid's
    own), llama.cpp (its server for AR, its diffusion CLI for diffusion), or any OpenAI-compatible server (AR).
    An engine other than torch names its cell rule, `(exp, model, common cell fields) -> cells`, and its factory,
    `(engine pool, cell, tokenizer) -> engine`, as `module:function`."""

    name: str
    kinds: tuple[str, ...]
    baseline: bool = False
    cells: Optional[str] = None
    factory: Optional[str] = None


ENGINES = _table(Engine("torch", KINDS, baseline=True),
                 Engine("llamacpp", KINDS, cells="dlm_bench.config.cells:llamacpp_cells",
                        factory="dlm_bench.engines.pool:llamacpp_engine"),
                 Engine("openai", (AR,), cells="dlm_bench.config.cells:openai_cells",
                        factory="dlm_bench.engines.pool:openai_engine"))
IN_PROCESS = baseline(ENGINES)  # the engine whose cells run the project's own generators in this process


@dataclass(frozen=True)
class TaskKind:
    """A task the cells can be scored on: its accuracy metric, the module (under dlm_bench.tasks) whose `load`
    builds it, whether its checker runs model-written code (then in the sandbox), its default answer length in
    tokens, and the hub dataset (name, configuration) its problems come from when no file is given (None: they
    ship in a package); its test split gives the problems, its train split the solved examples."""

    name: str
    metric: str
    module: str
    runs_code: bool
    gen_tokens: int
    dataset: Optional[tuple[str, str]] = None


TASKS = _table(TaskKind("humaneval", "pass@1", "humaneval", runs_code=True, gen_tokens=256),
               TaskKind("gsm8k", "exact match", "gsm8k", runs_code=False, gen_tokens=256,
                        dataset=("openai/gsm8k", "main")))
