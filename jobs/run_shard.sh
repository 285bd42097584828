#!/usr/bin/env bash
# The body of every array task: bootstrap the environment, run this task's shard of the grid.
# A requeued or resubmitted task skips the cells that already have a finished record.
# With DLM_COMMAND=pairs (the job scripts/submit.py chains after the finalize job), it times the
# published ratios as interleaved pairs on a node like the shards', then draws figures and summary.
# Arguments are passed to src/main.py (e.g. --steps 64 --batch_size 4); the config comes from
# DLM_CONFIG unless the arguments give --config.
set -euo pipefail
repo="${DLM_REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
cd "$repo"
# shellcheck disable=SC1091
source jobs/env_bootstrap.sh
config="${DLM_CONFIG:?set DLM_CONFIG or use scripts/submit.py}"
if [ "${DLM_COMMAND:-run}" = "pairs" ]; then
  echo "[pairs] job ${SLURM_JOB_ID:-local}, restart count ${SLURM_RESTART_COUNT:-0}"
  exec "$DLM_PYTHON" src/main.py pairs --config "$config" "$@"
fi
echo "[shard] task ${SLURM_ARRAY_TASK_ID:-0} of ${SLURM_ARRAY_TASK_COUNT:-1}, restart count ${SLURM_RESTART_COUNT:-0}"
exec "$DLM_PYTHON" src/main.py run --config "$config" --no_figure --no_score "$@"
