"""Measure this device's bf16 matmul and copy ceilings and store them for the roofline.

    python scripts/calibrate.py --output results/raw_data/<experiment>/calibration.json [--device cuda] [--dtype fp32]
"""

import argparse
import json
import sys
from pathlib import Path


import torch

from dlm_bench.config import PRECISIONS
from dlm_bench.measure.calibration import measure_ceilings, write_calibration
from dlm_bench.measure.environment import resolve_device


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, help="the results folder's calibration.json (the roofline reads it there)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--matmul_size", type=int)
    p.add_argument("--copy_mib", type=int)
    p.add_argument("--dtype", required=True, choices=list(PRECISIONS),
                   help="the matmuls' precision: the study's own (its roofline reads this entry for every row)")
    args = p.parse_args()
    dtype = getattr(torch, PRECISIONS[args.dtype].torch_dtype)
    entry = measure_ceilings(resolve_device(args.device), args.matmul_size, args.copy_mib, dtype=dtype)
    write_calibration(Path(args.output), entry)
    print(f"{entry['hardware']}: {entry['matmul_tflops']:.4g} TFLOP/s ({entry['matmul_dtype']} matmul of "
          f"{entry['matmul_size']}), copy {entry['copy_tbps']:.4g} TB/s -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
