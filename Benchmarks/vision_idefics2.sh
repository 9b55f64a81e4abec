#!/usr/bin/env bash
# Idefics2 vision encoder speed (patches/s) against transformers on the CPU, same threads, one run;
# and i2q's whole-page time and peak anonymous memory at real shapes (i2q-bench).
# Usage: Benchmarks/vision_idefics2.sh [MODEL (default /work/bench/idefics2-8b-synthetic-bf16)]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-/work/bench/idefics2-8b-synthetic-bf16}
PY=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}
swift build -c release --product i2q-bench >/dev/null
echo "== transformers vision tower, one 980x557 image (2,730 patches), $THREADS threads" >&2
PEER=$(OMP_NUM_THREADS=$THREADS "$PY" Benchmarks/transformers_vision.py --threads "$THREADS" 2>/dev/null | tail -1)
echo "$PEER" >&2
echo "== i2q, the same image alone (vision + connector)" >&2
ONE=$(.build/release/i2q-bench idefics2 "$MODEL" --crops 0 --original 980x557 --new-tokens 1)
echo "$ONE" >&2
echo "== i2q, a whole page with splitting (4 crops 490x378 + original 980x557), prefill + 8 tokens" >&2
PAGE=$(/usr/bin/time -f "maxrss_kb %M" .build/release/i2q-bench idefics2 "$MODEL" 2>&1)
echo "$PAGE" >&2
python3 - "$PEER" "$ONE" <<'PYEOF'
import json, re, sys
peer = json.loads(sys.argv[1]); one = sys.argv[2]
m = re.search(r"vision \+ connector: ([0-9.]+) s \(([0-9.]+) patches/s\)", one)
s, pps = float(m.group(1)), float(m.group(2))
print("| | patches | seconds | patches/s |")
print("|---|---:|---:|---:|")
print("| %s (vision tower only) | %d | %.1f | %.1f |" % (peer["peer"], peer["patches"], peer["seconds"], peer["patches_per_s"]))
print("| i2q (vision tower + connector) | %d | %.1f | %.1f |" % (peer["patches"], s, pps))
print("| ratio i2q / transformers | | | %.2fx |" % (pps / peer["patches_per_s"]))
PYEOF
