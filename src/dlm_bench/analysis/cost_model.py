"""What a generation costs, predicted from its shape: time and peak memory (torch-free).

A generation is a list of forward calls (`generation.work`), each with its FLOPs and minimum bytes
(`measure.roofline`). Its predicted time is

    sum over forwards of max(FLOPs / (e_f * peak FLOP/s), bytes / (e_b * bandwidth)) + forwards * c

where e_f and e_b are the shares of the device's peaks that real layers reach and c is the fixed cost
of one forward call of a path (framework dispatch, the sampler's own work), growing with the number
of layers: c = c_call + c_layer * layers. On a GPU at 8B the max() dominates; on a 2-core CPU at a few
million parameters c does. The peak memory is the process's resident base, the weights, the KV cache
a path keeps, and the largest transient of one forward (activations and logits).

Every projection made with these numbers carries a band: `Efficiency` ranges, not points, where the
factors are bounded by published measurements rather than fitted (see analysis.projection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..registry import AR, DIFFUSION
from .. import registry
from ..generation import ForwardWork
from .gemm_bounds import tile_fill
from ..generation.work import ar_work, diffusion_work
from ..measure.roofline import forward_flops, forward_min_bytes
from ..models.architecture import Architecture

AR_PATHS = tuple(registry.DECODE_PATHS)
LOGITS_BYTES = 4  # logits and the sampler's probabilities are float32 whatever the weights' precision


@dataclass(frozen=True)
class Generation:
    """One cell's generation: kind, path (AR decode mode or diffusion cache), B, P, N_out (tokens), K."""

    kind: str  # autoregressive | diffusion
    path: str
    batch: int
    prompt_len: int
    n_out: int
    steps: Optional[int] = None  # diffusion only
    block_length: Optional[int] = None  # diffusion only
    cfg: bool = False

    def work(self) -> list[ForwardWork]:
        if self.kind == AR:
            return ar_work(self.batch, self.prompt_len, self.n_out)
        return diffusion_work(self.batch, self.prompt_len, self.n_out, self.steps, self.block_length, self.path,
                              self.cfg)

    @property
    def path_key(self) -> str:
        """The path whose per-forward cost applies: `ar:<decode>` or `diffusion:<cache>`."""
        return f"{'ar' if self.kind == 'autoregressive' else 'diffusion'}:{self.path}"


@dataclass(frozen=True)
class Ceilings:
    """A device's peaks: FLOP/s of its matmuls in the run's precision and memory bandwidth; where measured, the
    matmul's rate by shape (`by_shape`: per width, (rows, TFLOP/s) pairs), since a forward of a few rows runs far
    below a square matmul's rate; on a GPU, the rows of one tensor-core tile (`tile_rows`: a matmul of fewer rows
    still computes a whole tile, analysis.gemm_bounds)."""

    name: str
    tflops: float
    tbps: float
    source: str  # datasheet, or the measurement they came from
    by_shape: tuple[tuple[int, tuple[tuple[int, float], ...]], ...] = ()
    tile_rows: int = 0  # 0: no tiles (a CPU's measured shape table, or one peak)

    @classmethod
    def from_calibration(cls, name: str, entry: dict, source: str) -> "Ceilings":
        """The ceilings of a calibration.json entry (`measure.calibration`), its shape table included."""
        shapes = entry.get("matmul_tflops_by_shape") or {}
        by_shape = tuple((int(w), tuple(sorted((int(m), float(t)) for m, t in rows.items())))
                         for w, rows in sorted(shapes.items(), key=lambda kv: int(kv[0])))
        return cls(name, entry["matmul_tflops"], entry["read_tbps"], source, by_shape)

    def tflops_at(self, width: int, rows: int) -> float:
        """The matmul rate of a forward whose matmuls have `rows` rows and inner width `width`: the measured
        width nearest to it, interpolated log-linearly in rows between the measured row counts (held at the
        ends); the single peak where no shape was measured, times the useful share of whole tiles where the device
        computes in tiles."""
        if self.tile_rows:
            return self.tflops * tile_fill(rows, self.tile_rows)
        if not self.by_shape:
            return self.tflops
        _, table = min(self.by_shape, key=lambda entry: abs(math.log(entry[0] / width)))
        ms = [m for m, _ in table]
        if rows <= ms[0]:
            return table[0][1]
        if rows >= ms[-1]:
            return table[-1][1]
        k = next(i for i, m in enumerate(ms) if m >= rows)
        (m0, t0), (m1, t1) = table[k - 1], table[k]
        x = (math.log(rows) - math.log(m0)) / (math.log(m1) - math.log(m0))
        return math.exp(math.log(t0) + x * (math.log(t1) - math.log(t0)))


@dataclass(frozen=True)
class Overhead:
    """The fixed cost of one forward call of a path, ms: c = call_ms + layer_ms * layers."""

    call_ms: float
    layer_ms: float

    def per_forward_ms(self, arch: Architecture) -> float:
        return self.call_ms + self.layer_ms * arch.n_layers


@dataclass(frozen=True)
class Efficiency:
    """Shares of the peaks that forwards reach (e_f, e_b) and the per-forward overheads by path key."""

    e_f: float
    e_b: float
    overheads: dict[str, Overhead]


@dataclass(frozen=True)
class ForwardCost:
    """One forward's FLOPs, minimum bytes and the two times the roofline compares, ms."""

    flops: float
    nbytes: float
    compute_ms: float
    memory_ms: float


def forward_costs(work: list[ForwardWork], arch: Architecture, bytes_per_param: int, device: Ceilings,
                  e_f: float, e_b: float) -> list[ForwardCost]:
    out = []
    for w in work:
        flops, nbytes = forward_flops(w, arch), forward_min_bytes(w, arch, bytes_per_param)
        peak = device.tflops_at(arch.d_model, w.batch * w.query_tokens)
        out.append(ForwardCost(flops, nbytes, 1e3 * flops / (e_f * peak * 1e12),
                               1e3 * nbytes / (e_b * device.tbps * 1e12)))
    return out


@dataclass(frozen=True)
class Prediction:
    """A generation's predicted end-to-end latency and its parts, ms, and its FLOPs and bytes."""

    latency_ms: float
    compute_bound_ms: float  # the forwards where compute is the larger term
    memory_bound_ms: float  # the forwards where memory is
    overhead_ms: float
    forwards: int
    flops: float
    nbytes: float


def predict_steps_ms(gen: Generation, arch: Architecture, bytes_per_param: int, device: Ceilings,
                     eff: Efficiency) -> list[float]:
    """The cost model's time of each forward call of a generation, in call order, ms: max(compute, memory) plus
    the path's per-forward overhead (a diffusion step is one forward; their sum is `predict_latency`'s)."""
    overhead = eff.overheads[gen.path_key].per_forward_ms(arch)
    return [max(c.compute_ms, c.memory_ms) + overhead
            for c in forward_costs(gen.work(), arch, bytes_per_param, device, eff.e_f, eff.e_b)]


def step_kind(w: ForwardWork) -> str:
    """What a diffusion forward is: `whole canvas` (every step without a cache, and each block's refresh step
    with one) or `cached` (a step that reads the cached keys and values)."""
    return "cached" if w.cached_tokens > 0 else "whole canvas"


def predict_latency(gen: Generation, arch: Architecture, bytes_per_param: int, device: Ceilings,
                    eff: Efficiency) -> Prediction:
    """The cost model's latency of one generation (see module docstring)."""
    costs = forward_costs(gen.work(), arch, bytes_per_param, device, eff.e_f, eff.e_b)
    compute = sum(c.compute_ms for c in costs if c.compute_ms >= c.memory_ms)
    memory = sum(c.memory_ms for c in costs if c.compute_ms < c.memory_ms)
    overhead = len(costs) * eff.overheads[gen.path_key].per_forward_ms(arch)
    return Prediction(compute + memory + overhead, compute, memory, overhead, len(costs),
                      sum(c.flops for c in costs), sum(c.nbytes for c in costs))


@dataclass(frozen=True)
class MemoryPrediction:
    """Predicted peak memory, bytes: the base, weights, the KV cache kept, and the largest transient."""

    base: float
    weights: float
    kv_cache: float
    transient: float

    @property
    def total(self) -> float:
        return self.base + self.weights + self.kv_cache + self.transient


def kv_cache_bytes(gen: Generation, arch: Architecture, bytes_per_param: int) -> float:
    """Keys and values a path keeps for the whole generation: the AR cache over P + N_out positions, a
    diffusion cache over the canvas; none for the uncached sampler (one layer's K/V at a time)."""
    if gen.kind == DIFFUSION and not registry.CACHES[gen.path].keeps_kv:
        return 0.0
    return float(gen.batch * (gen.prompt_len + gen.n_out) * arch.kv_per_token * bytes_per_param)


def transient_bytes(w: ForwardWork, arch: Architecture, bytes_per_param: int) -> float:
    """The largest set of live tensors in one forward: a layer's hidden state, its q/k/v and the
    SwiGLU's gate, up and product (query tokens wide), and the float32 logits with the sampler's copy."""
    layer = w.query_tokens * (4 * arch.d_model + 2 * arch.n_kv_heads * arch.head_dim + 3 * arch.mlp_hidden)
    logits = 2 * w.logits_tokens * arch.vocab_size * LOGITS_BYTES
    return float(w.batch * (layer * bytes_per_param + logits))


def predict_memory(gen: Generation, arch: Architecture, bytes_per_param: int, base_bytes: float) -> MemoryPrediction:
    """Peak resident memory of the process while it runs the generation."""
    transient = max(transient_bytes(w, arch, bytes_per_param) for w in gen.work())
    return MemoryPrediction(base_bytes, float(arch.n_params * bytes_per_param), kv_cache_bytes(gen, arch, bytes_per_param),
                            transient)
