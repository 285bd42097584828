#!/usr/bin/env bash
# Set up (once) and run the test suite. Extra arguments go to pytest (e.g. ./test.sh -k config).
# Tiers (pytest.ini): ./test.sh -m unit (fast, in-process; needs neither llama.cpp nor the corpus),
# -m integration, -m evidence; no -m runs all three, as CI does.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_env.sh
py="${VENV:-$root/.venv}/bin/python"
unit_only=0
if [[ " $* " == *" -m unit "* ]]; then unit_only=1; fi
if [ "$unit_only" = 0 ] && [ ! -f data/austen/prompts.txt ]; then
  echo "[test] preparing the Austen corpus in data/austen (Debian package r-cran-janeaustenr)"
  "$py" scripts/prepare_austen.py > /dev/null || echo "[test] corpus not prepared: the Austen evidence tests will be skipped" >&2
fi
if [ "$unit_only" = 0 ] && ! "$py" scripts/build_llamacpp.py --check > /dev/null; then
  echo "[test] building llama.cpp for the engine tests (once per machine, about 5 minutes on 2 cores)"
  "$py" scripts/build_llamacpp.py > /dev/null || echo "[test] llama.cpp not built: its tests will be skipped (they fail under CI)" >&2
fi
exec "${VENV:-$root/.venv}/bin/python" -m pytest "$@"
