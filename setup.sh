#!/usr/bin/env bash
# Set up a virtual environment for wiring in .venv (CPU build of PyTorch 2.13 first,
# so no multi-GB CUDA build is pulled in), then install the package with its test tools.
# --accel also builds torch-scatter and torch-sparse (the product backends of the same
# names, wiring.backends) against that torch: no wheels exist on PyPI for current torch,
# so pip compiles them, about 11 minutes on 2 cores the first time (MAX_JOBS=N caps the
# compile jobs); pip caches the built wheels, so another environment installs them in seconds.
set -euo pipefail
cd "$(dirname "$0")"
ACCEL=0
for arg in "$@"; do
  case "$arg" in
    --accel) ACCEL=1 ;;
    -h|--help) echo "usage: ./setup.sh [--accel]   (--accel: also build torch-scatter and torch-sparse, ~11 min)"; exit 0 ;;
    *) echo "setup.sh: error: unknown option $arg (usage: ./setup.sh [--accel])" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0" 2>/dev/null || .venv/bin/python -m pip install -q "torch>=2.1"
.venv/bin/python -m pip install -q -e ".[dev]"
if [ "$ACCEL" = 1 ]; then
  if .venv/bin/python -c "import torch_scatter, torch_sparse" 2>/dev/null; then
    echo "torch-scatter and torch-sparse: already installed"
  else
    echo "building torch-scatter and torch-sparse against this torch (about 11 minutes on 2 cores the first time) ..."
    .venv/bin/python -m pip install -q setuptools wheel
    .venv/bin/python -m pip install -q --no-build-isolation "torch-scatter>=2.1" "torch-sparse>=0.6"
  fi
fi
echo "environment ready: .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
