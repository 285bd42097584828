"""Checks the specs share: positive, distinct, finite and allowed values, files that exist, checkpoint
weights that match their config, writable folders, and the block rules of a diffusion generation."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional

from .names import ConfigError, resolve_path

__all__ = ["encoder_depth", "positive", "distinct", "finite", "one_of", "exists", "EMBEDDINGS", "safetensors_shapes",
           "check_embedding", "writable_folder", "diffusion_shape_error"]


def encoder_depth(encoder: Optional[Path]) -> Optional[int]:
    """The number of layers in an encoder folder's config.json, or None."""
    try:
        return int(json.loads((encoder / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])
    except (TypeError, OSError, ValueError, KeyError):
        return None


def positive(values: list[int], where: str) -> None:
    if not values:
        raise ConfigError(f"{where}: empty list; give at least one value")
    for v in values:
        if v <= 0:
            raise ConfigError(f"{where}: {v} is not allowed; allowed: integers > 0")


def distinct(values: list, where: str) -> None:
    if not values:
        raise ConfigError(f"{where}: empty list; give at least one value")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{where}: {', '.join(repeated)} given more than once; allowed: each value once")


def finite(value: float, where: str, low: float = 0.0) -> None:
    if not math.isfinite(value) or value < low:
        raise ConfigError(f"{where}: {value} is not allowed; allowed: finite numbers >= {low:g}")


def one_of(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def exists(value: Optional[str], base_dir: str | Path, where: str) -> None:
    if value and not resolve_path(value, base_dir).exists():
        raise ConfigError(f"{where}: file or directory not found: {value}")


EMBEDDINGS = ("model.transformer.wte.weight", "model.embed_tokens.weight")  # LLaDA layout; transformers / Dream


def safetensors_shapes(folder: Path) -> dict[str, list[int]]:
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


def check_embedding(folder: Path, cfg: dict, where: str, path: str) -> None:
    """The input embedding in the weights has the vocabulary and width that config.json says."""
    width = cfg.get("d_model", cfg.get("hidden_size"))
    vocab = cfg.get("embedding_size", cfg.get("vocab_size"))
    try:
        shapes = safetensors_shapes(folder)
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"{where}.path: {path} has unreadable safetensors files") from None
    found = next((shapes[k] for k in EMBEDDINGS if k in shapes), None)
    if found is not None and width is not None and vocab is not None and list(found) != [vocab, width]:
        raise ConfigError(f"{where}.path: the weights in {path} do not match its config.json (input embedding "
                          f"{found[0]} x {found[1]}, config {vocab} x {width}); allowed: a config.json written "
                          f"with these weights")


def writable_folder(path: Path, where: str) -> None:
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


