"""The performance log and its gates (`dlm-bench perf|gate|render`, src/dlm_bench/perf/cli.py) without an
install step: `python scripts/perf_ci.py perf --config config/perf/austen.yaml`."""

import sys

from dlm_bench.perf.cli import main

if __name__ == "__main__":
    sys.exit(main())
