"""The workload every cell runs: the prompts and their references, the same passages for every model
(`prompts`), and the untimed generations over them that quality is scored on (`generations`)."""
