#!/usr/bin/env bash
# Set up (once) and run the main job. Default: the trained Austen pair (checkpoints/austen) on CPU.
#   ./run.sh                                            # Austen quick study -> results/raw_data, results/figures
#   ./run.sh --config config/experiments_mini.yaml      # the harness on tiny random-weight models
#   ./run.sh --config config/experiments_tasks_cpu.yaml # HumanEval pass@1 per cell (Austen pair, SmolLM2-135M)
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
  set -- --config config/experiments_austen_quick.yaml
fi
config=""
previous=""
for arg in "$@"; do  # the config file, to prepare what it reads
  if [ "$previous" = "--config" ]; then config="$arg"; fi
  previous="$arg"
done
if [ -f "$config" ] && grep -q "data/austen/" "$config" && [ ! -f data/austen/prompts.txt ]; then
  echo "[run] preparing the Austen corpus in data/austen (Debian package r-cran-janeaustenr)"
  "$py" scripts/prepare_austen.py
fi
if [ -f "$config" ] && grep -q "models/smollm2-135m-instruct" "$config" \
    && [ ! -f models/smollm2-135m-instruct/model.safetensors ]; then
  echo "[run] writing SmolLM2-135M-Instruct to models/smollm2-135m-instruct (from the judge's GGUF file, 20 s)"
  "$py" scripts/prepare_smollm2.py > /dev/null
fi
exec "$py" src/main.py "$@"
