"""The allowed values of the experiment file, the precision table, the error type, and how config paths
resolve (project-relative files, `package:` assets)."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .. import registry

__all__ = ["FAMILIES", "MODEL_TYPES", "ATTENTION_BACKENDS", "DEVICES", "PROMPT_SOURCES", "DIFFUSION_SAMPLERS",
           "THRESHOLD_SAMPLERS", "AUTO", "family_default", "DEFAULT_THRESHOLD", "DEFAULT_LEAP_RELAXED", "DEFAULT_LEAP_WINDOW",
           "DIFFUSION_CACHES", "DIFFUSION_SCHEDULES", "FAMILY_SCHEDULES", "THRESHOLD_STEPS", "NOISE_LAYOUTS",
           "AR_DECODE_MODES", "DIFFUSION_FORWARDS", "ENGINES", "WEIGHT_FORMATS", "LLAMACPP_SAMPLERS",
           "LOCAL_SERVER", "Precision", "PRECISIONS", "ConfigError", "resolve_path", "PACKAGE_PREFIX",
           "HUB_ID", "resolve_asset"]


class _Field(Mapping):
    """A live view of one field of a registry table, by entry name: an entry registered later (a test's fake
    family or engine) is an allowed value at once."""

    def __init__(self, table: dict, field: str):
        self.table, self.field = table, field

    def __getitem__(self, name):
        return getattr(self.table[name], self.field)

    def __iter__(self):
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)


class _Names(Sequence):
    """A live view of the names of a registry table's entries, those `keep` accepts (all by default), in the
    table's order: an entry registered later (a test's fake sampler or cache) is an allowed value at once."""

    def __init__(self, table: dict, keep: Optional[Callable[[Any], bool]] = None):
        self.table, self.keep = table, keep

    def _names(self) -> list[str]:
        return [name for name, entry in self.table.items() if self.keep is None or self.keep(entry)]

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self):
        return iter(self._names())

    def __eq__(self, other) -> bool:
        return isinstance(other, (tuple, list, _Names)) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(tuple(self))


# the registries' names (registry.py) as the config's allowed values
FAMILIES = _Field(registry.FAMILIES, "kind")
MODEL_TYPES = _Field(registry.FAMILIES, "model_type")  # config.json model_type
ATTENTION_BACKENDS = ("flash_attention_2", "sdpa", "eager")
DEVICES = ("auto", "cuda", "cpu")
PROMPT_SOURCES = ("file", "wikitext", "random_ids")
DIFFUSION_SAMPLERS = _Names(registry.SAMPLERS)
THRESHOLD_SAMPLERS = _Names(registry.SAMPLERS, lambda s: s.threshold)  # commit by threshold
# the threshold samplers' defaults: the (anchor) probability threshold, and LocalLeap's relaxed threshold and window;
# they are LocalLeap's defaults for LLaDA-8B-Instruct (arXiv 2510.07081): anchors at 0.9, neighbours at 0.75 within 4 positions
DEFAULT_THRESHOLD, DEFAULT_LEAP_RELAXED, DEFAULT_LEAP_WINDOW = 0.9, 0.75, 4
DIFFUSION_CACHES = _Names(registry.CACHES)
DIFFUSION_SCHEDULES = _Names(registry.SCHEDULES)  # tokens committed per step (registry.Schedule)
FAMILY_SCHEDULES = _Field(registry.FAMILIES, "schedule")  # `schedule: auto` (None for AR families)
AUTO = "auto"  # a diffusion option left to the family's reference code (registry.Family)
THRESHOLD_STEPS = ("cap", "unbounded")  # threshold samplers: steps as a budget, or each block until empty
NOISE_LAYOUTS = ("block", "canvas")  # Gumbel noise over the block, or over the whole canvas (reference)
AR_DECODE_MODES = _Names(registry.DECODE_PATHS)


def family_default(value: str, family: str, option: str) -> str:
    """A diffusion option's value for a family: as given, or for `auto` the family's reference choice."""
    return getattr(registry.FAMILIES[family], option) if value == AUTO else value
DIFFUSION_FORWARDS = _Names(registry.FORWARDS)
ENGINES = _Field(registry.ENGINES, "kinds")  # iterates over the engine names
WEIGHT_FORMATS = ("f32", "f16", "bf16", "q8_0", "q4_k_m")  # GGUF weights of the llamacpp engine
LLAMACPP_SAMPLERS = _Names(registry.SAMPLERS, lambda s: s.llamacpp_algorithm is not None)
LOCAL_SERVER = "local"  # openai.url: the harness's own llama-server, spoken to only through the OpenAI API


@dataclass(frozen=True)
class Precision:
    """A weight/activation precision: the torch dtype it maps to, its size (bytes per element), and the GGUF
    weights format of an engine that computes at the same precision."""

    torch_dtype: str
    bytes_per_element: int
    gguf: str


PRECISIONS = {"bf16": Precision("bfloat16", 2, "bf16"), "fp16": Precision("float16", 2, "f16"),
              "fp32": Precision("float32", 4, "f32")}


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


