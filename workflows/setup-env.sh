#!/usr/bin/env bash
# Create ./.venv (if missing) with the CPU build of PyTorch and s2pipe installed from
# this checkout. Safe to re-run: it does nothing when the environment is complete.
# GPU users: install the torch build for your CUDA version into .venv before running
# this (https://pytorch.org/get-started/locally/); torch==2.13.0 is only the CPU default.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${S2PIPE_VENV:-$root/.venv}"
stamp="$venv/.s2pipe-installed"
if [[ -f "$stamp" && "$stamp" -nt "$root/setup.cfg" ]]; then
  exit 0
fi
py="$(command -v python3.11 || command -v python3)"
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
# torch first and pinned: a plain "torch" requirement would pull a multi-GB CUDA build.
"$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/python" -m pip install -q torch==2.13.0 >&2
# the onnx and cluster extras too, so that the tests cover export, ONNX Runtime prediction
# and runs on a local Dask cluster
"$venv/bin/python" -m pip install -q -e "$root[test,dev,onnx,cluster]" >&2
touch "$stamp"
