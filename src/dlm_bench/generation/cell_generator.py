"""The project's PyTorch generator that a grid cell measures."""

from __future__ import annotations

from typing import Optional

from ..config import Cell
from ..paths import DiffusionPath
from ..models.loader import LoadedModel
from . import Generator
from .autoregressive import make_ar_generator
from .diffusion import MaskedDiffusionGenerator


def make_generator(cell: Cell, loaded: LoadedModel, cache: Optional[str] = None) -> Generator:
    """The generator a cell measures (`cache` overrides the cell's KV-cache mode)."""
    path = cell.path
    if isinstance(path, DiffusionPath):
        # options a cell leaves unset (None) keep the generator's own defaults
        options = {name: getattr(cell, name) for name in ("threshold", "eps", "threshold_steps", "noise_layout",
                                                          "leap_relaxed", "leap_window")
                   if getattr(cell, name) is not None}
        return MaskedDiffusionGenerator(loaded.model, loaded.mask_token_id, cell.block_length, path.sampler,
                                        cell.temperature, cell.cfg_scale or 0.0, cache or path.cache,
                                        schedule=cell.schedule, forward=path.forward, **options)
    return make_ar_generator(loaded.model, path.decode, path.temperature, path.top_p or 1.0,
                             path.repetition_penalty or 1.0)
