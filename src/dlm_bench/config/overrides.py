"""Command-line flags that replace config fields (one `Override` per flag: its name, field and help)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ..registry import AR, DIFFUSION
from .names import (AR_DECODE_MODES, DIFFUSION_CACHES, DIFFUSION_FORWARDS, DIFFUSION_SAMPLERS, ENGINES,
                    WEIGHT_FORMATS, ConfigError)

__all__ = ["Override", "OVERRIDES", "apply_overrides"]


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
    Override("sampler", (DIFFUSION, "sampler"), f"override diffusion.sampler ({' '.join(DIFFUSION_SAMPLERS)})",
             many=True),
    Override("cache", (DIFFUSION, "cache"), f"override diffusion.cache ({' '.join(DIFFUSION_CACHES)})", many=True),
    Override("forward", (DIFFUSION, "forward"), f"override diffusion.forward ({' '.join(DIFFUSION_FORWARDS)})",
             many=True),
    Override("decode", (AR, "decode"), f"override autoregressive.decode ({' '.join(AR_DECODE_MODES)})",
             many=True),
    Override("engine", ("engines", "engine"), f"override engines.engine ({' '.join(ENGINES)})", many=True),
    Override("weights_format", ("engines", "llamacpp", "weights_format"),
             f"override engines.llamacpp.weights_format ({' '.join(WEIGHT_FORMATS)})", many=True),
    Override("max_prompts", ("prompts", "max_prompts"), "override prompts.max_prompts", int),
    Override("prompt_file", ("prompts", "file"), "prompts from this file (one passage per line, or JSONL with "
                                                 "prompt/reference); sets prompts.source: file"),
    Override("compute_bertscore", ("quality", "compute_bertscore"), "score BERTScore after timing "
                                                                   "(quality.compute_bertscore: true)", switch=True),
    Override("output_dir", ("output_dir",), "override output_dir (records and tables); the figures follow it into "
                                            "<output_dir>/figures unless --figures_dir is given"),
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
            _keep_served(raw.get("engines"), value)
            continue
        if key == "output_dir" and overrides.get("figures_dir") is None:
            raw.pop("figures_dir", None)  # the figures follow an output folder given on the command line
        if key == "prompt_file":
            raw.setdefault("prompts", {})["source"] = "file"
        node = raw
        path = known[key].path
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return raw


def _keep_served(engines: Any, models: list[str]) -> None:
    """An engine whose section lists the models it serves (`engines.<engine>.models`) serves only those still in
    the run; an engine left with none leaves `engines.engine`."""
    if not isinstance(engines, dict):
        return
    for name, section in engines.items():
        if isinstance(section, dict) and isinstance(section.get("models"), list):
            section["models"] = [m for m in section["models"] if m in models]
            if not section["models"] and isinstance(engines.get("engine"), list):
                engines["engine"] = [e for e in engines["engine"] if e != name]
