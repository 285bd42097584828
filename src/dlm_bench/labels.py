"""The human labels of cells and rows: how a cell and its generation path are written in tables, figures, logs
and the paper (torch-free; rows are mappings of `Cell.identity()` columns, so a live cell and a CSV row read
alike). A path's own label and its parser are the path's (`paths`); these add the engine, the schedule and the
cell's shape."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from . import registry
from .paths import ARPath, DiffusionPath, EnginePath
from .registry import DIFFUSION, IN_PROCESS


def _default_schedule(family: Any) -> Optional[str]:
    """The schedule `auto` means for a family (None for an AR or unknown family)."""
    entry = registry.FAMILIES.get(family) if isinstance(family, str) else None
    return entry.schedule if entry is not None else None


def engine_label(row: Mapping[str, Any]) -> str:
    """`torch`, or the engine with its weights (`llamacpp:q8_0`; `openai` for a remote endpoint)."""
    return EnginePath.of(row).label


def ar_decoding_label(row: Mapping[str, Any]) -> str:
    """An AR row's decoding: `greedy`, or its sampling as `t0.7 p0.9 rp1.1` (only the parts that are set)."""
    return ARPath.of(row).decoding


def variant_label(row: Mapping[str, Any]) -> str:
    """The generation path of a cell or row: `sampler/cache` (diffusion) or the decode mode (AR), with
    the engine in front when it is not torch (`llamacpp:f32 low_confidence`, `openai:f32`), and a diffusion
    schedule other than its family's own."""
    engine = EnginePath.of(row)
    if engine.engine != IN_PROCESS:
        return engine.label + (f" {row['sampler']}" if row["kind"] == DIFFUSION else "")
    if row["kind"] == DIFFUSION:
        label = DiffusionPath.of(row).label
        if row.get("schedule") not in (None, "", _default_schedule(row.get("family"))):
            label += f" ({row['schedule']} schedule)"
        return label
    return ARPath.of(row).label


def cell_label(row: Mapping[str, Any]) -> str:
    """The human label of a cell or row: model, B, N, K and generation path."""
    k = f" K={int(row['steps'])}" if row["kind"] == DIFFUSION else ""
    return f"{row['model_name']} B={int(row['batch_size'])} N={int(row['seq_len'])}{k} {variant_label(row)}"
