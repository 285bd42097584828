"""Measured ceilings of this device: matmul TFLOP/s (bf16 by default; fp32 for CPU runs), device-to-device
copy TB/s and read TB/s; optionally the matmul's TFLOP/s by shape (rows x width @ width x width), since a
forward of a few rows (one token per sequence, a block of 32) runs far below the square matmul's rate.

Stored in `calibration.json` (keyed by hardware name) next to the results; the roofline prefers
them over datasheet peaks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..fileio import atomic_write_text
from .clock import clock_for
from .environment import hardware_name


def _time_ms(fn, device: torch.device, repeats: int) -> float:
    clock = clock_for(device)
    for _ in range(3):
        fn()
    clock.synchronize()
    start = clock.mark()
    for _ in range(repeats):
        fn()
    end = clock.mark()
    clock.synchronize()
    return clock.elapsed_ms(start, end) / repeats


def measure_ceilings(device: torch.device, matmul_size: int | None = None, copy_mib: int | None = None,
                     repeats: int = 20, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Matmul TFLOP/s in `dtype` (n x n x n), copy TB/s (bytes read + written) and read TB/s (a sum over a
    float32 buffer of the copy's size: the rate at which weights can be streamed) on `device`."""
    gpu = device.type == "cuda"
    n = matmul_size or (8192 if gpu else 512)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    mm_ms = _time_ms(lambda: a @ b, device, repeats)
    nbytes = (copy_mib or (2048 if gpu else 64)) * 2**20
    # filled, so that every page is backed by memory (an untouched CPU allocation reads the kernel's shared
    # zero page, which sits in cache and would report cache bandwidth)
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_ms = _time_ms(lambda: dst.copy_(src), device, repeats)
    words = src.view(torch.float32)
    read_ms = _time_ms(lambda: words.sum(), device, repeats)
    return {"hardware": hardware_name(device), "matmul_tflops": 2 * n**3 / (mm_ms / 1000) / 1e12,
            "matmul_size": n, "matmul_dtype": str(dtype).removeprefix("torch."),
            "copy_tbps": 2 * nbytes / (copy_ms / 1000) / 1e12, "copy_bytes": nbytes,
            "read_tbps": nbytes / (read_ms / 1000) / 1e12,
            "repeats": repeats, "torch_version": torch.__version__}


SHAPE_ROWS = (1, 8, 32, 64, 256, 512, 1024, 2048, 4096)  # tokens in one forward: B x query tokens


def measure_matmul_by_shape(device: torch.device, widths: tuple[int, ...], rows: tuple[int, ...] = SHAPE_ROWS,
                            repeats: int = 20, dtype: torch.dtype = torch.float32) -> dict[str, dict[str, float]]:
    """TFLOP/s of an (m x w) @ (w x w) matmul for every width w and row count m: {str(w): {str(m): TFLOP/s}}."""
    out: dict[str, dict[str, float]] = {}
    for w in widths:
        weight = torch.randn(w, w, device=device, dtype=dtype)
        out[str(w)] = {}
        for m in rows:
            x = torch.randn(m, w, device=device, dtype=dtype)
            ms = _time_ms(lambda: x @ weight, device, repeats)
            out[str(w)][str(m)] = 2 * m * w * w / (ms / 1000) / 1e12
    return out


def write_calibration(path: Path, entry: dict) -> Path:
    table = json.loads(path.read_text()) if path.is_file() else {}
    table[entry["hardware"]] = entry
    atomic_write_text(path, json.dumps(table, indent=1))
    return path
