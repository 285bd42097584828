#!/usr/bin/env bash
# Set up (once) and run the test suite. Extra arguments go to pytest (e.g. ./test.sh -k config).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_env.sh
exec "${VENV:-$root/.venv}/bin/python" -m pytest "$@"
