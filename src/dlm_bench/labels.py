"""The human labels of cells and rows: one place for how a generation path, an engine, an AR decoding and a
cell are written in tables, figures, logs and the paper (torch-free; rows are mappings of `Cell.identity()`
columns, so a live cell and a CSV row read alike)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from . import registry
from .registry import DIFFUSION, IN_PROCESS


def _default_schedule(family: Any) -> Optional[str]:
    """The schedule `auto` means for a family (None for an AR or unknown family)."""
    entry = registry.FAMILIES.get(family) if isinstance(family, str) else None
    return entry.schedule if entry is not None else None


def engine_label(row: Mapping[str, Any]) -> str:
    """`torch`, or the engine with its weights (`llamacpp:q8_0`; `openai` for a remote endpoint)."""
    engine = row.get("engine")
    if not isinstance(engine, str) or engine == IN_PROCESS:
        return IN_PROCESS
    fmt = row.get("weights_format")
    return f"{engine}:{fmt}" if isinstance(fmt, str) else engine


def ar_decoding_label(row: Mapping[str, Any]) -> str:
    """An AR row's decoding: `greedy`, or its sampling as `t0.7 p0.9 rp1.1` (only the parts that are set)."""
    def value(name: str) -> Optional[float]:
        v = row.get(name)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    temperature, top_p, penalty = value("temperature") or 0.0, value("top_p"), value("repetition_penalty")
    parts = [f"t{temperature:g}"] if temperature > 0 else ["greedy"]
    if top_p is not None and top_p != 1.0:
        parts.append(f"p{top_p:g}")
    if penalty is not None and penalty != 1.0:
        parts.append(f"rp{penalty:g}")
    return " ".join(parts)


def variant_label(row: Mapping[str, Any]) -> str:
    """The generation path of a cell or row: `sampler/cache` (diffusion) or the decode mode (AR), with
    the engine in front when it is not torch (`llamacpp:f32 low_confidence`, `openai:f32`)."""
    if engine_label(row) != IN_PROCESS:
        return engine_label(row) + (f" {row['sampler']}" if row["kind"] == DIFFUSION else "")
    if row["kind"] == DIFFUSION:
        label = f"{row['sampler']}/{row['cache']}"
        if row.get("forward") == "compiled":
            label += "/compiled"
        if row.get("schedule") not in (None, "", _default_schedule(row.get("family"))):
            label += f" ({row['schedule']} schedule)"
        return label
    decoding = ar_decoding_label(row)
    return str(row["decode"]) + ("" if decoding == "greedy" else f" [{decoding}]")


def cell_label(row: Mapping[str, Any]) -> str:
    """The human label of a cell or row: model, B, N, K and generation path."""
    k = f" K={int(row['steps'])}" if row["kind"] == DIFFUSION else ""
    return f"{row['model_name']} B={int(row['batch_size'])} N={int(row['seq_len'])}{k} {variant_label(row)}"
