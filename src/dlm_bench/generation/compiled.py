"""`torch.compile` as the fast paths use it: one place for the mode per device and the recompile policy.

On a GPU the compiled function runs as CUDA graphs (mode "reduce-overhead"); on a CPU inductor's
default mode generates fused C++ kernels, called from a generated C++ wrapper rather than a Python one
(`cpp_wrapper`: on the trained pair's AR decode step, 2.2 instead of 2.7 ms per token on 2 cores,
measured by scripts/bench_engines.py's split and recorded in results/bench_engines_cpu.md). (Inductor's `freezing`, weights folded in as constants and
prepacked, made no difference outside the noise in `scripts/bench_targets.py` on the development
machine, so it is not used.) Shapes start static and a dimension that changes
between calls becomes symbolic (torch's automatic dynamic shapes), so a sweep over several B and N
compiles a few graphs rather than one per shape. A function that keeps recompiling past
`RECOMPILE_LIMIT` raises instead of quietly running uncompiled, since its row would then time
the eager path under the compiled path's label.
"""

from __future__ import annotations

from typing import Callable

import torch

RECOMPILE_LIMIT = 64  # graphs per compiled code object before a recompile is an error


def compile_for(fn: Callable, device: torch.device) -> Callable:
    """`fn` compiled for `device` (see module docstring)."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    dynamo_config.fail_on_recompile_limit_hit = True
    gpu = device.type == "cuda"
    if not gpu:
        import torch._inductor.config as inductor_config

        inductor_config.cpp_wrapper = True
    return torch.compile(fn, mode="reduce-overhead" if gpu else "default", dynamic=None, fullgraph=False)
