"""`python -m dlm_bench ...`: the `dlm-bench` command line."""

import sys

from .cli import main

sys.exit(main())
