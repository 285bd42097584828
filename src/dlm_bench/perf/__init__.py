"""The append-only performance log and its regression gates (`scripts/perf_ci.py`)."""
