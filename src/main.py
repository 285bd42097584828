"""`python src/main.py ...` runs the `dlm-bench` command line (src/dlm_bench/cli.py) without an install:
Python puts this file's folder first on the import path, where the `dlm_bench` package lives."""

import sys

from dlm_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
