"""What a GEMM reaches on a datacenter GPU at the shapes an 8B forward has: the public measurements that bound the
projection's e_f and e_b at their favourable ends, and the tile quantization of a matmul with few rows (torch-free).

A projected forward divides its FLOPs by e_f × the matmul peak and its bytes by e_b × the bandwidth
(`analysis.cost_model`). The favourable end of each share is what the matmuls alone reach at the forward's shape,
read from a published GEMM benchmark, not from end-to-end LLM numbers (a whole forward adds attention, norms and the
sampler's own work, so it cannot do better than its GEMMs):

- **Memory-bound shapes** (64 and 128 rows: a decode step at B ≤ 128, a cached diffusion block at B ≤ 4): the share of
  the HBM bandwidth the GEMM streams its weights at. That is e_b's range.
- **Compute-bound shapes** (4096 rows: a whole canvas, or many sequences): the share of the tensor-core peak. Its
  top is e_f's favourable end.

Only shapes whose inner width K is at least 2048 are read (LLaMA-3-8B's and LLaDA-8B's layers have K of 4096 and
more); which side of the ridge a shape sits on is computed here from its FLOPs and bytes, not assumed from its rows.

Source: DeepGEMM's README at commit 7a70b43 (deepseek-ai/DeepGEMM, February 2025), "Normal GEMMs for dense models":
FP8 (E4M3) inputs with BF16 output on an H800 SXM5, NVCC 12.8, the TFLOP/s and GB/s it reports per shape. The
H800 SXM5 has the H100 SXM's tensor cores and HBM3 (1979 dense FP8 TFLOP/s, 3.35 TB/s per NVIDIA's datasheet). The
shares are FP8's; a bf16 GEMM moves twice the bytes per FLOP, so a shape memory-bound in FP8 is memory-bound in
bf16 too, and the bf16 matmul measured on an H100 by this project's reference notes (798 of 989 TFLOP/s, 0.81 of
the peak, a large square) sits above every compute-bound share here.

Tile quantization: a tensor-core GEMM computes whole tiles of rows. The smallest M tile of cuBLAS's tensor-core
kernels in NVIDIA's Matrix Multiplication Background guide is 64 rows, and Hopper's warpgroup MMA is 64 rows
deep, so a matmul of `rows` rows costs the tensor cores ceil(rows / 64) × 64 rows of work: `tile_fill`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

TILE_ROWS = 64  # the smallest M tile of a tensor-core GEMM on A100/H100/H200 (cuBLAS tiles; Hopper wgmma's M)
MIN_INNER = 2048  # shapes with a narrower K are not read: an 8B model's layers have K >= 4096
SOURCE = ("DeepGEMM README @ 7a70b43 (deepseek-ai/DeepGEMM, Feb 2025): FP8 dense GEMMs on an H800 SXM5 "
          "(1979 FP8 TFLOP/s, 3.35 TB/s)")
PEAK_TFLOPS = 1979.0  # H800 SXM5, FP8 dense
PEAK_TBPS = 3.35
FP8_BYTES, OUT_BYTES = 1, 2  # inputs FP8, output BF16


@dataclass(frozen=True)
class GemmMeasurement:
    """One published GEMM: rows M, columns N, inner width K, and what it reached (TFLOP/s, GB/s)."""

    rows: int
    cols: int
    inner: int
    tflops: float
    gbps: float

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved (A and B read once in FP8, D written once in BF16)."""
        flops = 2.0 * self.rows * self.cols * self.inner
        nbytes = FP8_BYTES * (self.rows * self.inner + self.cols * self.inner) + OUT_BYTES * self.rows * self.cols
        return flops / nbytes

    @property
    def memory_bound(self) -> bool:
        """Below the device's ridge (peak FLOP/s over bandwidth): its time is set by the bytes it moves."""
        return self.intensity < PEAK_TFLOPS / PEAK_TBPS

    @property
    def compute_share(self) -> float:
        return self.tflops / PEAK_TFLOPS

    @property
    def bandwidth_share(self) -> float:
        return self.gbps / (1000.0 * PEAK_TBPS)


# (M, N, K, TFLOP/s, GB/s) as the README's table lists them
DEEPGEMM_H800 = tuple(GemmMeasurement(*row) for row in (
    (64, 2112, 7168, 206, 1688), (64, 24576, 1536, 289, 2455), (64, 32768, 512, 219, 2143),
    (64, 7168, 16384, 336, 2668), (64, 4096, 7168, 287, 2320), (64, 7168, 2048, 295, 2470),
    (128, 2112, 7168, 352, 1509), (128, 24576, 1536, 535, 2448), (128, 32768, 512, 358, 2103),
    (128, 7168, 16384, 645, 2604), (128, 4096, 7168, 533, 2221), (128, 7168, 2048, 510, 2277),
    (4096, 2112, 7168, 1058, 527), (4096, 24576, 1536, 990, 786), (4096, 32768, 512, 590, 1232),
    (4096, 7168, 16384, 1358, 343), (4096, 4096, 7168, 1304, 500), (4096, 7168, 2048, 1025, 697),
))


@dataclass(frozen=True)
class ShareRange:
    """The shares a set of GEMMs reached: lowest, median, highest, and how many shapes."""

    low: float
    median: float
    high: float
    shapes: int


def _range(values: list[float]) -> ShareRange:
    return ShareRange(min(values), statistics.median(values), max(values), len(values))


def read_shapes(measurements: tuple[GemmMeasurement, ...] = DEEPGEMM_H800) -> tuple[GemmMeasurement, ...]:
    """The shapes like an 8B model's layers (K >= MIN_INNER)."""
    return tuple(m for m in measurements if m.inner >= MIN_INNER)


def bandwidth_shares(measurements: tuple[GemmMeasurement, ...] = DEEPGEMM_H800) -> ShareRange:
    """The bandwidth shares of the memory-bound shapes read: e_b's range."""
    return _range([m.bandwidth_share for m in read_shapes(measurements) if m.memory_bound])


def compute_shares(measurements: tuple[GemmMeasurement, ...] = DEEPGEMM_H800) -> ShareRange:
    """The tensor-core shares of the compute-bound shapes read: their top is e_f's favourable end."""
    return _range([m.compute_share for m in read_shapes(measurements) if not m.memory_bound])


def tile_fill(rows: int, tile: int = TILE_ROWS) -> float:
    """The share of the tensor cores' work that is useful for a matmul of `rows` rows (rows over whole tiles)."""
    return rows / (tile * math.ceil(rows / tile))
