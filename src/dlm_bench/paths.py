"""Generation paths as values: how a cell generates, apart from its shape (B, N, K) and its model.

- `DiffusionPath`: a sampler, a cache and a forward (`low_confidence/dual`, `random/none/compiled`);
- `ARPath`: a decode mode and its decoding (`static_compiled`, `eager [t0.7 p0.9 rp1.1]`);
- `EnginePath`: an engine other than the project's own and its weights (`llamacpp:q8_0`, `openai`).

Each has one label (`label`), one parser of that label (`parse`, which checks every part against the
registry and raises PathError naming what is allowed) and one reader of a cell's row or identity (`of`).
The as-published paths are the registry's baselines (`as_published`). Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from . import registry
from .registry import IN_PROCESS

COMPILED = "compiled"  # the diffusion forward named in a label; the other (eager) is left out of it


class PathError(ValueError):
    """A path label that does not name a path: one line saying what is allowed."""


def _number(value: Any) -> Optional[float]:
    """A row's number, None where it is missing (None or NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass(frozen=True)
class DiffusionPath:
    """How a diffusion cell commits tokens (sampler), what it keeps between steps (cache) and how its forward runs."""

    sampler: str
    cache: str = "none"
    forward: str = "eager"

    @property
    def label(self) -> str:
        return f"{self.sampler}/{self.cache}" + (f"/{COMPILED}" if self.forward == COMPILED else "")

    def problem(self) -> Optional[str]:
        """The first part the registry does not know, as 'part: value is not allowed; allowed: ...', or None."""
        for what, value, table in (("sampler", self.sampler, registry.SAMPLERS), ("cache", self.cache, registry.CACHES),
                                   ("forward", self.forward, registry.FORWARDS)):
            if value not in table:
                return f"{what}: {value!r} is not allowed; allowed: {', '.join(table)}"
        return None

    @classmethod
    def parse(cls, text: str) -> "DiffusionPath":
        """`sampler/cache` or `sampler/cache/forward`, each part one the registry knows."""
        parts = text.split("/")
        if len(parts) == 2:
            parts.append("eager")
        problem = cls(*parts).problem() if len(parts) == 3 else "it needs 2 or 3 parts"
        if problem:
            raise PathError(f"diffusion path {text!r} is not allowed ({problem}); allowed: sampler/cache[/forward] "
                            f"with sampler in {', '.join(registry.SAMPLERS)}, cache in {', '.join(registry.CACHES)}, "
                            f"forward in {', '.join(registry.FORWARDS)}")
        return cls(*parts)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "DiffusionPath":
        """A diffusion cell's or row's path (a row from before the forward axis ran the eager forward)."""
        forward = row.get("forward")
        return cls(str(row["sampler"]), str(row["cache"]), forward if isinstance(forward, str) else "eager")

    @classmethod
    def as_published(cls) -> "DiffusionPath":
        """LLaDA's reference sampler without a cache, the eager forward: the registry's baselines."""
        return cls(registry.baseline(registry.SAMPLERS), registry.baseline(registry.CACHES),
                   registry.baseline(registry.FORWARDS))


@dataclass(frozen=True)
class ARPath:
    """How an AR cell decodes: its decode mode and its decoding (greedy, or sampled with these settings)."""

    decode: str
    temperature: float = 0.0
    top_p: Optional[float] = None
    repetition_penalty: Optional[float] = None

    @property
    def decoding(self) -> str:
        """`greedy`, or the sampling as `t0.7 p0.9 rp1.1` (only the parts that are set)."""
        parts = [f"t{self.temperature:g}"] if self.temperature > 0 else ["greedy"]
        if self.top_p is not None and self.top_p != 1.0:
            parts.append(f"p{self.top_p:g}")
        if self.repetition_penalty is not None and self.repetition_penalty != 1.0:
            parts.append(f"rp{self.repetition_penalty:g}")
        return " ".join(parts)

    @property
    def label(self) -> str:
        decoding = self.decoding
        return self.decode + ("" if decoding == "greedy" else f" [{decoding}]")

    @classmethod
    def parse(cls, text: str) -> "ARPath":
        """`decode` or `decode [t0.7 p0.9 rp1.1]` (any of the three sampling parts, in that order)."""
        decode, _, rest = text.partition(" ")
        settings: dict[str, float] = {}
        if rest:
            if not (rest.startswith("[") and rest.endswith("]")):
                raise PathError(f"AR path {text!r} is not allowed; allowed: a decode mode, then its sampling in "
                                f"brackets, e.g. 'eager [t0.7 p0.9 rp1.1]'")
            names = {"t": "temperature", "p": "top_p", "rp": "repetition_penalty"}
            for part in rest[1:-1].split():
                key = part.rstrip("0123456789.")
                try:
                    settings[names[key]] = float(part[len(key):])
                except (KeyError, ValueError):
                    raise PathError(f"AR path {text!r}: {part!r} is not allowed; allowed: t<temperature>, p<top_p>, "
                                    f"rp<repetition penalty>") from None
        if decode not in registry.DECODE_PATHS:
            raise PathError(f"AR path {text!r} is not allowed; allowed decode modes: "
                            f"{', '.join(registry.DECODE_PATHS)}")
        return cls(decode, **settings)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "ARPath":
        """An AR cell's or row's path (a row that names no decode mode, as an engine's, keeps its decoding)."""
        decode = row.get("decode")
        return cls(decode if isinstance(decode, str) else "", _number(row.get("temperature")) or 0.0,
                   _number(row.get("top_p")), _number(row.get("repetition_penalty")))

    @classmethod
    def as_published(cls) -> "ARPath":
        """transformers' eager `generate`, greedy: the registry's baseline decode path."""
        return cls(registry.baseline(registry.DECODE_PATHS))


@dataclass(frozen=True)
class EnginePath:
    """Which engine runs a cell and on which weights (None: the engine serves its own, or the project's own)."""

    engine: str = IN_PROCESS
    weights_format: Optional[str] = None

    @property
    def label(self) -> str:
        if self.engine == IN_PROCESS:
            return IN_PROCESS
        return f"{self.engine}:{self.weights_format}" if self.weights_format else self.engine

    @classmethod
    def parse(cls, text: str) -> "EnginePath":
        """`torch`, `engine` or `engine:weights`."""
        engine, _, weights = text.partition(":")
        if engine not in registry.ENGINES or (engine == IN_PROCESS and weights):
            raise PathError(f"engine {text!r} is not allowed; allowed: {', '.join(registry.ENGINES)}, an engine "
                            f"other than {IN_PROCESS} with :weights")
        return cls(engine, weights or None)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "EnginePath":
        engine, weights = row.get("engine"), row.get("weights_format")
        if not isinstance(engine, str) or engine == IN_PROCESS:
            return cls()
        return cls(engine, weights if isinstance(weights, str) else None)
