#!/usr/bin/env bash
# Regenerate the README pictures (docs/*.png, docs/evolution.gif) from the default run, and copy
# that run's metrics.jsonl beside them (docs/wiring_metrics.jsonl).
#
#   docs/figures.sh                 # train the default run and its --mode fixed twin if missing, then draw
#   FORCE=1 docs/figures.sh         # retrain both (--overwrite) first
#   docs/figures.sh RUN_DIR FIXED   # draw from these two run folders instead
#
# The runs are the README's default command, `python -m wiring.train --graph random_k --edges 12000`
# (runs/digits-tiny-random_k-dnw-12000-s0), and the same budget with `--mode fixed` (its random
# wiring never changes) for viz.compare. Training both takes 2-15 minutes each on a laptop CPU.
# The explorer screenshot needs Chromium (Debian: apt-get install chromium; or $CHROMIUM).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
export MPLBACKEND=Agg OMP_WAIT_POLICY=PASSIVE
RUN=${1:-runs/digits-tiny-random_k-dnw-12000-s0}
FIXED=${2:-runs/digits-tiny-random_k-fixed-12000-s0}

train() {  # train RUN_DIR MODE: the default run of that mode, unless it is there already
  if [ -n "${FORCE:-}" ] || [ ! -f "$1/wiring.graphml" ]; then
    "$PY" -m wiring.train --graph random_k --edges 12000 --mode "$2" --out "$1" --progress lines \
      ${FORCE:+--overwrite}
  fi
}
if [ $# -eq 0 ]; then
  train "$RUN" dnw
fi
if [ $# -lt 2 ]; then   # viz.compare needs the fixed twin: the default one, trained if missing
  train "$FIXED" fixed
fi

"$PY" -m viz.render "$RUN" -o docs/wiring.png --palette
"$PY" -m viz.render "$RUN" --view flow -o docs/wiring_flow.png --palette
"$PY" -m viz.render "$RUN" --view adjacency -o docs/wiring_adjacency.png --palette
"$PY" -m viz.animate "$RUN" -o docs/evolution.gif --max-frames 13 --quiet   # 1280 x 720, ~3 MB
"$PY" -m viz.plots "$RUN" -o docs/plots.png
"$PY" -m viz.compare "$RUN" "$FIXED" -o docs/compare.png
cp "$RUN/metrics.jsonl" docs/wiring_metrics.jsonl   # the drawn run's epochs, beside its pictures

if [ -z "$CHROMIUM" ]; then
  echo "docs/figures.sh: no chromium found: docs/explorer.png left as it is (set CHROMIUM=...)" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m viz.explore "$RUN" -o "$tmp/explorer.html"
# #frame=11 (frame 11 of 37, step 100; frames count from 1): about a hundred swaps highlighted; --virtual-time-budget
# lets the page draw first
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars \
  --user-data-dir="$tmp/profile" --window-size=1280,800 --virtual-time-budget=10000 \
  --screenshot="$tmp/explorer.png" "file://$(cd "$tmp" && pwd)/explorer.html#frame=11" 2>/dev/null
"$PY" - "$tmp/explorer.png" docs/explorer.png <<'EOF'
import sys
from PIL import Image
with Image.open(sys.argv[1]) as im:  # 256 colours: a few hundred kB instead of 1.3 MB
    im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        sys.argv[2], format="PNG", optimize=True)
EOF
echo "wrote docs/explorer.png" >&2
