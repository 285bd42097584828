"""The project's PyTorch generator that a grid cell measures."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ..config import Cell
from ..paths import DiffusionPath
from ..models.loader import LoadedModel
from . import Generator
from .autoregressive import make_ar_generator
from .diffusion import MaskedDiffusionGenerator, SamplerSettings


def make_generator(cell: Cell, loaded: LoadedModel, cache: Optional[str] = None) -> Generator:
    """The generator a cell measures (`cache` overrides the cell's KV-cache mode)."""
    path = cell.path
    if isinstance(path, DiffusionPath):
        return MaskedDiffusionGenerator(loaded.model, loaded.mask_token_id,
                                        dataclasses.replace(path, cache=cache) if cache else path,
                                        sampler_settings(cell))
    return make_ar_generator(loaded.model, path)


def sampler_settings(cell: Cell) -> SamplerSettings:
    """A diffusion cell's sampler settings: the settings a cell leaves unset (None) keep the sampler's defaults."""
    d = cell.decoding
    optional = {name: getattr(d, name) for name in ("threshold", "eps", "threshold_steps", "noise_layout",
                                                     "leap_relaxed", "leap_window")
                if getattr(d, name) is not None}
    return SamplerSettings(d.block_length, d.temperature, d.cfg_scale or 0.0, schedule=d.schedule, **optional)
