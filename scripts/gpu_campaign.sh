#!/usr/bin/env bash
# The paper's grid at full 8B size with synthetic bf16 weights on one lent GPU, in resumable pieces
# that fit a 10-minute command and a 30-minute session (the device tool's limits).
#
#   bash scripts/gpu_campaign.sh [BUDGET_S]        # default 480 s of cells per call
#
# Each call: (1) measures the device's matmul/copy ceilings once (calibration.json), (2) runs
# unfinished cells of config/experiments_synthetic_8b.yaml until the budget is spent (a cell is
# never cut: no new cell starts after the budget), (3) profiles the harness overhead once,
# (4) merges and analyses what exists, and (5) copies the results and figures folders to
# $OUT/raw_data/ and $OUT/figures/ (when OUT is set) so the calling machine can keep them. The next call, given the same results folder back (the device tool's
# `carry`), skips every finished cell. Environment: DLM_CONFIG (default the synthetic 8B grid),
# DLM_PYTHON (default python3; the lent GPU's own torch/transformers are used, no install),
# DLM_OVERHEAD_ARGS (the cell profiled for harness overhead, default B=1, N=512, K=128).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
budget="${1:-480}"
config="${DLM_CONFIG:-config/experiments_synthetic_8b.yaml}"
py="${DLM_PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
read -r results figures < <("$py" - "$config" <<'PY'
import sys
from src.config import load_experiment
exp = load_experiment(sys.argv[1])
print(exp.resolve(exp.output_dir), exp.resolve(exp.figures_dir))
PY
)
mkdir -p "$results"
if [ ! -f "$results/calibration.json" ]; then
  "$py" scripts/calibrate.py --output "$results/calibration.json"
fi
"$py" src/main.py run --config "$config" --time_budget_s "$budget" --no_figure --no_score || echo "[campaign] run exited $?"
if [ ! -f "$results/overhead.json" ]; then
  # shellcheck disable=SC2086
  "$py" scripts/profile_overhead.py --config "$config" ${DLM_OVERHEAD_ARGS:---batch_size 1 --seq_len 512 --steps 128} \
      --output "$results/overhead.json" || echo "[campaign] overhead profile failed"
fi
"$py" scripts/analyze.py --input "$results" --output "$figures" --summary "$results/summary.md" || true
done_cells=$(ls "$results/cells" 2>/dev/null | wc -l)
total=$("$py" src/main.py --config "$config" --dry_run | tail -1 | cut -d' ' -f1)
echo "[campaign] $done_cells of $total cells have a record in $results"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/raw_data" "$OUT/figures"
  cp -r "$results" "$OUT/raw_data/"
  if [ -d "$figures" ]; then cp -r "$figures" "$OUT/figures/"; fi
  echo "[campaign] copied to $OUT/raw_data/$(basename "$results") and $OUT/figures/$(basename "$figures")"
fi
