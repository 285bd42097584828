#!/usr/bin/env bash
# The paper's grid at full 8B size with synthetic bf16 weights on one lent GPU, in resumable pieces
# that fit a 10-minute command and a 30-minute session (the device tool's limits).
#
#   bash scripts/gpu_campaign.sh [BUDGET_S]        # default 480 s of cells per call
#
# Each call: (1) measures the device's matmul/copy ceilings once (calibration.json), (2) runs
# unfinished cells of config/experiments_synthetic_8b.yaml until the budget is spent (a cell is
# never cut: no new cell starts after the budget), (3) profiles the harness overhead once,
# (4) merges and analyses what exists.
# When OUT is set (the device tool's output folder), the results folder is first copied to
# $OUT/raw_data/<name> and every step works there, so a call stopped by the command time limit
# still hands back each cell finished before it; figures go to $OUT/figures/<name>. The next call,
# given that folder back as the config's results folder (the device tool's `carry`), skips every
# finished cell. Environment: DLM_CONFIG (default the synthetic 8B grid), DLM_PYTHON (default
# python3; the lent GPU's own torch/transformers are used, no install), DLM_OVERHEAD_ARGS (the cell
# profiled for harness overhead, default B=1, N=512, K=128).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
budget="${1:-480}"
config="${DLM_CONFIG:-config/experiments_synthetic_8b.yaml}"
py="${DLM_PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# no install on the lent machine: the scripts import the package from the checkout's src/
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
read -r results figures < <("$py" - "$config" <<'PY'
import sys
from dlm_bench.config import load_experiment
exp = load_experiment(sys.argv[1])
print(exp.resolve(exp.output_dir), exp.resolve(exp.figures_dir))
PY
)
if [ -n "${OUT:-}" ]; then
  work="$OUT/raw_data/$(basename "$results")"
  figures="$OUT/figures/$(basename "$figures")"
  mkdir -p "$work"
  if [ -d "$results" ]; then cp -r "$results/." "$work/"; fi
  results="$work"
  echo "[campaign] working in $results (handed back even if this call is stopped)"
fi
mkdir -p "$results"
if [ ! -f "$results/calibration.json" ]; then
  "$py" scripts/calibrate.py --dtype bf16 --output "$results/calibration.json"
fi
"$py" src/main.py run --config "$config" --output_dir "$results" --time_budget_s "$budget" --no_figure --no_score \
  || echo "[campaign] run exited $?"
if [ ! -f "$results/overhead.json" ]; then
  # shellcheck disable=SC2086
  "$py" scripts/profile_overhead.py --config "$config" ${DLM_OVERHEAD_ARGS:---batch_size 1 --seq_len 512 --steps 128} \
      --output "$results/overhead.json" || echo "[campaign] overhead profile failed"
fi
# the config allows attention fallbacks (labelled per row), so its rows may carry two kernel names
"$py" scripts/analyze.py --input "$results" --output "$figures" --summary "$results/summary.md" \
  --facet attention_kernel || true
done_cells=$(ls "$results/cells" 2>/dev/null | wc -l)
total=$("$py" src/main.py --config "$config" --dry_run | tail -1 | cut -d' ' -f1)
echo "[campaign] $done_cells of $total cells have a record in $results"
