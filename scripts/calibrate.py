"""Measure this device's matmul and copy ceilings and store them for the roofline and the cost model.

    python scripts/calibrate.py --output results/raw_data/<experiment>/calibration.json --dtype fp32 [--device cuda]
    python scripts/calibrate.py ... --shape_widths 192 512 768 1024   # also the matmul's rate by rows and width
"""

import argparse
import sys
from pathlib import Path


import torch

from dlm_bench.config import PRECISIONS
from dlm_bench.measure.calibration import SHAPE_ROWS, measure_ceilings, measure_matmul_by_shape, write_calibration
from dlm_bench.measure.environment import resolve_device


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, help="the results folder's calibration.json (the roofline reads it there)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--matmul_size", type=int)
    p.add_argument("--copy_mib", type=int)
    p.add_argument("--dtype", required=True, choices=list(PRECISIONS),
                   help="the matmuls' precision: the study's own (its roofline reads this entry for every row)")
    p.add_argument("--shape_widths", type=int, nargs="+",
                   help="also time (rows x width) @ (width x width) matmuls at these widths (the models' d_model) and "
                        f"rows {', '.join(map(str, SHAPE_ROWS))}: the cost model's ceiling by shape")
    args = p.parse_args()
    dtype = getattr(torch, PRECISIONS[args.dtype].torch_dtype)
    device = resolve_device(args.device)
    entry = measure_ceilings(device, args.matmul_size, args.copy_mib, dtype=dtype)
    if args.shape_widths:
        entry["matmul_tflops_by_shape"] = measure_matmul_by_shape(device, tuple(args.shape_widths), dtype=dtype)
    write_calibration(Path(args.output), entry)
    print(f"{entry['hardware']}: {entry['matmul_tflops']:.4g} TFLOP/s ({entry['matmul_dtype']} matmul of "
          f"{entry['matmul_size']}), copy {entry['copy_tbps']:.4g} TB/s -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
