"""Measure this device's bf16 matmul and copy ceilings and store them for the roofline.

    python scripts/calibrate.py --output results/raw_data/calibration.json [--device cuda] [--dtype fp32]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from src.config import PRECISIONS  # noqa: E402
from src.measure.calibration import measure_ceilings, write_calibration  # noqa: E402
from src.measure.environment import resolve_device  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default="results/raw_data/calibration.json")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--matmul_size", type=int)
    p.add_argument("--copy_mib", type=int)
    p.add_argument("--dtype", default="bf16", choices=list(PRECISIONS), help="the matmuls' precision")
    args = p.parse_args()
    dtype = getattr(torch, PRECISIONS[args.dtype].torch_dtype)
    entry = measure_ceilings(resolve_device(args.device), args.matmul_size, args.copy_mib, dtype=dtype)
    write_calibration(Path(args.output), entry)
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
