#!/usr/bin/env bash
# Set up (once) and run the main job. Default: the trained Austen pair (checkpoints/austen) on CPU.
#   ./run.sh                                            # Austen quick study -> results/raw_data, results/figures
#   ./run.sh --config config/experiments_mini.yaml      # the harness on tiny random-weight models
#   ./run.sh --config config/experiments.yaml --steps 64
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
bash scripts/setup_env.sh
py="${VENV:-$root/.venv}/bin/python"
if [ ! -f models/tiny/llada/config.json ] || [ ! -f models/tiny/llama/config.json ] || [ ! -f models/tiny/dream/config.json ]; then
  echo "[run] writing the tiny stand-in checkpoints to models/tiny"
  "$py" scripts/make_tiny_models.py --out models/tiny
fi
if [ "$#" -eq 0 ]; then
  if [ ! -f data/austen/prompts.txt ]; then
    echo "[run] preparing the Austen corpus in data/austen (Debian package r-cran-janeaustenr)"
    "$py" scripts/prepare_austen.py
  fi
  set -- --config config/experiments_austen_quick.yaml
fi
exec "$py" src/main.py "$@"
