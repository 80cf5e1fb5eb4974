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
# Each step says what it installs, then what pip installed ("  installed: NAME-VERSION ...")
# or "  already installed"; pip's errors and warnings (stderr) show as they come.
install() {
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip install --progress-bar off "$@" >"$log"; then
    rm -f "$log"; return 1               # pip said why on stderr
  fi
  grep '^Successfully installed' "$log" | sed 's/^Successfully installed/  installed:/' || echo "  already installed"
  rm -f "$log"
}
PY=${PYTHON:-python3}
STEPS=$((3 + ACCEL))
if [ ! -x .venv/bin/python ]; then
  echo "setup.sh: making the virtual environment .venv ($PY -m venv)"
  "$PY" -m venv .venv
fi
echo "setup.sh: [1/$STEPS] pip (upgrade)"
install --upgrade pip
echo "setup.sh: [2/$STEPS] PyTorch 2.13 (the CPU build; about 200 MB to download the first time)"
install "torch==2.13.0" 2>/dev/null || install "torch>=2.1"
echo "setup.sh: [3/$STEPS] wiring, editable (pip install -e \".[dev]\"): its dependencies and test tools (pyproject.toml)"
install -e ".[dev]"
if [ "$ACCEL" = 1 ]; then
  if .venv/bin/python -c "import torch_scatter, torch_sparse" 2>/dev/null; then
    echo "setup.sh: [4/$STEPS] torch-scatter and torch-sparse: already installed"
  else
    echo "setup.sh: [4/$STEPS] building torch-scatter and torch-sparse against this torch (about 11 minutes on 2 cores the first time) ..."
    install setuptools wheel
    install --no-build-isolation "torch-scatter>=2.1" "torch-sparse>=0.6"
  fi
fi
echo "environment ready: .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
