#!/usr/bin/env bash
# bench/gpu_check.sh: run and measure every CUDA path of the engine on one GPU (issue 20).
#
#   OUT=/some/dir bash bench/gpu_check.sh              # on the CUDA machine, from the project root
#   OUT=/tmp/gc PYTHON=.venv/bin/python bash bench/gpu_check.sh --dry-run
#                                                      # anywhere: every part on the CPU, sizes cut
#
# Runs the copied tree with the machine's own python3 ($PYTHON overrides) and PYTHONPATH=.: no
# install, no registry. Everything it writes goes under $OUT (default ./gpu_check_out):
# <part>.log for each part, summary.txt (rc and seconds of each part), env.txt, bench.json,
# profile.txt / profile.json, syncs.json, backends.md (the backend table), the training run folder
# train/ (metrics.jsonl), tests-cuda.xml and tests.xml (JUnit: passed / failed / skipped).
#
# Parts, most valuable first; each runs under its own time limit, cut to what is left of
# BUDGET_S (default 480 s = 8 minutes), and a part that fails or times out does not stop the next:
#   env         python, torch, the GPU, the installed product backends, nvidia-smi
#   measure     bench/gpu_check.py: engine vs dense-masked reference img/s and peak memory
#               (torch.cuda.max_memory_allocated) at the paper's size (900 nodes, 12,000 and
#               16,288 edges, batch 128 and 512) and at 4,000 and 8,000 nodes (200,000 edges);
#               torch.profiler top 10 kernels of the tiny classifier; host syncs per step
#   backends    python -m wiring.bench --device cuda --backend all: every installed product
#               backend side by side (900 and 4,000 nodes x 1%, 5%, 20%): the CUDA auto order
#   train       python -m wiring.train --device cuda --data digits --epochs 2 (default network)
#   cuda-tests  pytest -k cuda over the whole suite: every CUDA test
#   tests       the whole suite, CUDA tests included, in whatever budget is left (>= 60 s)
#
# Budget. CPU dry run (--dry-run, cut sizes, the shared 2-core development VM at load ~10,
# 2026-12-01): env 54 s (imports torch_geometric), measure 70 s, backends 26 s, train 41 s,
# cuda-tests 90 s (collecting 1,291 tests), tests (test_backends.py only) 87 s: 314 s in all.
# On the H200 with the full sizes, expected: python + CUDA start ~10 s per part (6 parts);
# measure ~90 s (6 sizes x ~10 s: the 8,000-node graph and its dense 8,000 x 8,000 reference
# are built on the CPU, steps are milliseconds), backends ~60 s, train ~40 s (digits, 2 epochs),
# cuda-tests ~40 s (collection + the CUDA tests), so ~4.5 minutes before the whole suite, which
# then gets the rest of the 8 minutes (its limit is what is left; a timeout there loses no
# measurement).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: error: unknown option $arg (usage: bench/gpu_check.sh [--dry-run])" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
OUT=${OUT:-gpu_check_out}
BUDGET_S=${BUDGET_S:-$([ "$DRY" = 1 ] && echo 1800 || echo 480)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export WIRING_CACHE_DIR=${WIRING_CACHE_DIR:-/tmp/wiring-cache}
export MPLBACKEND=Agg
START=$(date +%s)
: > "$OUT/summary.txt"
FAILED=0
if [ "$DRY" = 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi

# part NAME LIMIT_S COMMAND...: run COMMAND with its output in $OUT/NAME.log, under
# min(LIMIT_S, what is left of the budget), and note its rc and seconds in summary.txt.
part() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "$name: skipped (budget spent)" | tee -a "$OUT/summary.txt"; return
  fi
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s): $(echo "$*" | tr "\n" " " | cut -c1-160)" >&2
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
  echo "$name: rc=$rc $(( $(date +%s) - t0 ))s$( [ $rc = 124 ] && echo ' (timed out)')" | tee -a "$OUT/summary.txt"
}

ENV_PY=$(cat <<'PY'
import platform, shutil, subprocess, torch
from wiring import backends
from wiring.backends import kernels
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "capability", f"{p.major}.{p.minor}")
print("cpu threads", torch.get_num_threads(), "|", kernels.status())
for name in backends.NAMES:
    print(f"backend {name}: {backends.missing(name) or 'installed'}")
print("auto on cuda:", backends.resolved("cuda"), "| auto on cpu:", backends.resolved("cpu"))
for mod in ("torch_geometric", "torchdiffeq", "networkx", "matplotlib", "sklearn", "hypothesis", "pytest"):
    try:
        print(mod, __import__(mod).__version__)
    except Exception as err:
        print(mod, "missing:", type(err).__name__)
if shutil.which("nvidia-smi"):
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
PY
)
part env 60 "$PY" -c "$ENV_PY"
cp "$OUT/env.log" "$OUT/env.txt" 2>/dev/null

if [ "$DRY" = 1 ]; then
  part measure 600 "$PY" bench/gpu_check.py --device cpu --quick --out "$OUT"
  part backends 300 "$PY" -m wiring.bench --device cpu --backend all --backend-nodes 200 --densities 0.05 \
    --batch-size 8 --repeats 2 --warmup 1 --table "$OUT/backends.md"
  part train 300 "$PY" -m wiring.train --device cpu --data digits --epochs 1 --train-subset 256 --test-subset 128 \
    --progress lines --out "$OUT/train" --overwrite
  part cuda-tests 300 "$PY" -m pytest -q -rs -p no:cacheprovider -k cuda --junitxml="$OUT/tests-cuda.xml" tests
  part tests 300 "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT/tests.xml" tests/backends/test_backends.py
else
  part measure 240 "$PY" bench/gpu_check.py --device cuda --out "$OUT"
  part backends 150 "$PY" -m wiring.bench --device cuda --backend all --table "$OUT/backends.md"
  part train 150 "$PY" -m wiring.train --device cuda --data digits --epochs 2 --progress lines \
    --out "$OUT/train" --overwrite
  part cuda-tests 120 "$PY" -m pytest -q -rs -p no:cacheprovider -k cuda --junitxml="$OUT/tests-cuda.xml" tests
  part tests 600 "$PY" -m pytest -q -rs -p no:cacheprovider --durations=15 --junitxml="$OUT/tests.xml" tests
fi
rm -f "$OUT/train/"*.pt 2>/dev/null          # checkpoints are not needed back, the metrics are
echo "total: $(( $(date +%s) - START ))s of a ${BUDGET_S}s budget" | tee -a "$OUT/summary.txt"
for f in cuda-tests tests; do
  [ -f "$OUT/$f.log" ] && echo "$f: $(grep -E '(passed|failed|error)' "$OUT/$f.log" | tail -n 1)" | tee -a "$OUT/summary.txt"
done
[ "$FAILED" = 0 ] || echo "$FAILED part(s) failed: see $OUT/<part>.log" | tee -a "$OUT/summary.txt"
exit $(( FAILED > 0 ))
