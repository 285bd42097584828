#!/usr/bin/env bash
# Create .venv (once), install dlm-bench's dependencies into it, then the package itself (editable:
# `dlm-bench` and `import dlm_bench` run this checkout).
#   CPU machine (no nvidia-smi): torch==2.13.0 (CPU build) + requirements.txt
#   GPU machine: torch from $TORCH_SPEC (default "torch", the CUDA build from PyPI) + requirements.txt
# Override the interpreter with PYTHON=python3.11, the folder with VENV=path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.dlm_bench_installed"
reqs_hash="$(cat "$root/requirements.txt" "$root/requirements-cpu.txt" "$root/pyproject.toml" | sha1sum | cut -c1-12)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs_hash" ]; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv"
  "$python" -m venv "$venv" || { echo "[setup] python venv failed: on Debian/Ubuntu run 'apt-get install -y python3-venv'" >&2; exit 1; }
fi
pip=("$venv/bin/python" -m pip install --quiet)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  echo "[setup] GPU found: installing ${TORCH_SPEC:-torch} (CUDA build)"
  "${pip[@]}" "${TORCH_SPEC:-torch}"
  "${pip[@]}" -r "$root/requirements.txt"
else
  echo "[setup] no GPU: installing the CPU build torch==2.13.0+cpu"
  "${pip[@]}" --retries 1 -r "$root/requirements-cpu.txt"
  "${pip[@]}" -r "$root/requirements.txt"
fi
"${pip[@]}" --no-deps --no-build-isolation -e "$root"
echo "$reqs_hash" > "$stamp"
echo "[setup] done: $venv"
