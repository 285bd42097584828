#!/usr/bin/env bash
# Set up (once) and run the main job. Default: the mini sweep on CPU with tiny offline models.
#   ./run.sh                                   # mini sweep -> results/raw_data, results/figures
#   ./run.sh --config config/experiments.yaml --steps 64
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
  set -- --config config/experiments_mini.yaml
fi
exec "$py" src/main.py "$@"
