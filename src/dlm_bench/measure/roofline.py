"""Roofline per row: analytic FLOPs and minimum bytes of a generation, and how close the measured
time came to the hardware's peaks (MFU, memory-bandwidth utilisation).

FLOPs of one forward call (per sequence, times its batch):
    2 * matmul params * query tokens                        (every linear layer in the blocks)
  + 2 * d_model * vocab * logits tokens                     (the LM head, where it is applied)
  + 4 * layers * (heads * head_dim) * attention pairs       (Q.K^T and attention.V)
Minimum bytes of one forward call:
    weights read once (non-embedding params + LM head) + embedding rows of the query tokens
  + K/V read from a cache and K/V of the new tokens written (2 * layers * kv_heads * head_dim each)
  + the hidden state read and written once per layer
all in the model's precision. Real kernels move more; these are lower bounds, so MBU is an upper
bound on how much of the bandwidth was spent on necessary traffic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..generation import ForwardWork
from ..models.architecture import Architecture
from ..results import RooflineStats

# datasheet peaks per device (see gpu_peaks.json): (substring of the device name, TFLOP/s, TB/s), most specific first
PEAKS: list[tuple[str, float, float]] = [
    (p["name"], p["tflops"], p["tbps"]) for p in json.loads((Path(__file__).parent / "gpu_peaks.json").read_text())["peaks"]]


@dataclass(frozen=True)
class Peaks:
    tflops: float
    tbps: float
    source: str  # 'datasheet: <name>', 'calibration: <file>' or 'none'


def forward_flops(w: ForwardWork, a: Architecture) -> float:
    per_seq = (2 * a.matmul_params * w.query_tokens + 2 * a.d_model * a.vocab_size * w.logits_tokens
               + 4 * a.n_layers * a.n_heads * a.head_dim * w.attention_pairs)
    return float(w.batch * per_seq)


def forward_min_bytes(w: ForwardWork, a: Architecture, bytes_per_param: int) -> float:
    weights = a.n_params_non_embedding + a.d_model * a.vocab_size
    per_seq = (w.query_tokens * a.d_model  # embedding rows
               + (w.cached_tokens + w.query_tokens) * a.kv_per_token
               + 2 * a.n_layers * w.query_tokens * a.d_model)
    return float((weights + w.batch * per_seq) * bytes_per_param)


def generation_flops(work: Iterable[ForwardWork], a: Architecture) -> float:
    return sum(forward_flops(w, a) for w in work)


def generation_min_bytes(work: Iterable[ForwardWork], a: Architecture, bytes_per_param: int) -> float:
    return sum(forward_min_bytes(w, a, bytes_per_param) for w in work)


def achieved_tflops(flops: float, latency_ms: float) -> float:
    return flops / (latency_ms / 1000.0) / 1e12


def achieved_tbps(nbytes: float, latency_ms: float) -> float:
    return nbytes / (latency_ms / 1000.0) / 1e12


def roofline_seconds(flops: float, nbytes: float, peak_tflops: float, peak_tbps: float) -> float:
    """The fewest seconds a generation can take at the peaks: max(compute time, memory time); NaN if unknown."""
    compute_s, memory_s = flops / (peak_tflops * 1e12), nbytes / (peak_tbps * 1e12)
    return math.nan if math.isnan(compute_s) or math.isnan(memory_s) else max(compute_s, memory_s)


def roofline_stats(work: Iterable[ForwardWork], arch: Architecture, bytes_per_param: int, latency_ms: float,
                   peaks: Peaks) -> RooflineStats:
    """FLOPs and minimum bytes of one generation and their rates against the peaks at `latency_ms`."""
    work = list(work)
    flops, nbytes = generation_flops(work, arch), generation_min_bytes(work, arch, bytes_per_param)
    tflops, tbps = achieved_tflops(flops, latency_ms), achieved_tbps(nbytes, latency_ms)
    return RooflineStats(flops, nbytes, tflops, tbps, utilisation(tflops, peaks.tflops),
                         utilisation(tbps, peaks.tbps), peaks.tflops, peaks.tbps, peaks.source)


def utilisation(achieved: float, peak: float) -> float:
    """achieved / peak; NaN when the peak is unknown."""
    return achieved / peak if peak and not math.isnan(peak) else math.nan


def datasheet_peaks(hardware: str) -> Peaks:
    for key, tflops, tbps in PEAKS:
        if key.lower() in hardware.lower():
            return Peaks(tflops, tbps, f"datasheet: {key}")
    return Peaks(math.nan, math.nan, "none")


def peaks_for(hardware: str, calibration_file: Optional[Path]) -> Peaks:
    """Measured ceilings for this hardware when a calibration file holds them, else the datasheet."""
    if calibration_file is not None and calibration_file.is_file():
        table = json.loads(calibration_file.read_text())
        entry = table.get(hardware)
        if entry:
            return Peaks(entry["matmul_tflops"], entry["copy_tbps"], f"calibration: {calibration_file.name}")
    return datasheet_peaks(hardware)
