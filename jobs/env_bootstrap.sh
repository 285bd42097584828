#!/usr/bin/env bash
# Sourced by the batch jobs: modules (optional), the virtual environment, HF caches, offline flags.
#
#   DLM_MODULES   space-separated modules to `module load` (e.g. "GCC/12.3.0 CUDA/12.4 Python/3.11"); empty = none
#   DLM_VENV      virtual environment to activate (default: <repo>/.venv; created by scripts/setup_env.sh if missing)
#   HF_HOME       Hugging Face cache root (default: ~/.cache/huggingface); put it on scratch on clusters
#   DLM_ONLINE=1  allow hub access from the job (default: offline, as compute nodes usually have no internet)
repo="${DLM_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
if [ -n "${DLM_MODULES:-}" ]; then
  if command -v module >/dev/null 2>&1; then
    for m in $DLM_MODULES; do module load "$m"; done
  else
    echo "[env] DLM_MODULES is set but there is no 'module' command on this node; skipping module loads" >&2
  fi
fi
venv="${DLM_VENV:-$repo/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[env] no virtual environment at $venv: creating it" >&2
  VENV="$venv" bash "$repo/scripts/setup_env.sh"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
export HF_HOME="${HF_HOME:-$HOME/.cache/huggingface}"
if [ "${DLM_ONLINE:-0}" != "1" ]; then
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# one intra-op thread pool per allocated CPU, so tasks sharing a node do not oversubscribe it
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK" MKL_NUM_THREADS="$SLURM_CPUS_PER_TASK"; fi
export DLM_PYTHON="$venv/bin/python"
echo "[env] host=$(hostname) venv=$venv HF_HOME=$HF_HOME offline=${HF_HUB_OFFLINE:-0} job=${SLURM_JOB_ID:-none} task=${SLURM_ARRAY_TASK_ID:-none}"
